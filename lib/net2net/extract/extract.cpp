#include "net2net/extract/extract.h"

#include <spdlog/spdlog.h>
#include <torch/torch.h>

#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <ctime>
#include <deque>
#include <tuple>
#include <filesystem>
#include <optional>
#include <map>
#include <mutex>
#include <regex>
#include <set>
#include <thread>

#include "net2net/core/atomic_file.h"
#include "net2net/core/error.h"
#include "net2net/core/progress.h"
#include "net2net/core/signals.h"
#include "net2net/data/source.h"
#include "net2net/experts/expert.h"
#include "net2net/io/embedding_store.h"
#include "net2net/version.h"

namespace net2net::extract {
namespace fs = std::filesystem;
using nlohmann::json;

ShardSpec parse_shard(const std::string& text) {
  static const std::regex re("^([0-9]+)/([0-9]+)$");
  std::smatch m;
  if (!std::regex_match(text, m, re)) throw UsageError("--shard must be I/N (e.g. 0/4), got '" + text + "'");
  ShardSpec s{std::stoll(m[1]), std::stoll(m[2])};
  if (s.count < 1 || s.index >= s.count)
    throw UsageError("--shard " + text + ": needs 0 <= I < N (shards of N are numbered 0 to N-1)");
  return s;
}

std::vector<ExpertSpec> parse_expert_args(const std::vector<std::string>& args) {
  static const std::regex name_re("^[A-Za-z_][A-Za-z0-9_.-]*$");
  std::vector<ExpertSpec> out;
  std::set<std::string> seen;
  for (const auto& a : args) {
    auto eq = a.find('=');
    if (eq == std::string::npos) throw UsageError("--expert must be NAME=EXPERT (e.g. ae=ts:ae.pt), got '" + a + "'");
    ExpertSpec e{a.substr(0, eq), a.substr(eq + 1)};
    if (!std::regex_match(e.name, name_re))
      throw UsageError("--expert " + a + ": '" + e.name + "' is not a valid dataset name (letters, digits, _ . -)");
    if (e.name == "label" || e.name == "index")
      throw UsageError("--expert " + a + ": '" + e.name + "' is reserved for the cache's /" + e.name + " dataset");
    if (!seen.insert(e.name).second) throw UsageError("--expert: the name '" + e.name + "' is given twice");
    if (e.spec.empty()) throw UsageError("--expert " + a + ": empty expert");
    out.push_back(e);
  }
  if (out.empty()) throw UsageError("give at least one --expert NAME=EXPERT");
  return out;
}

namespace {

std::string utc_now() {
  std::time_t t = std::time(nullptr);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", std::gmtime(&t));
  return buf;
}

// Rows travel from the experts to the journal files on a writer thread, so that the next batch
// runs through the experts while the previous one is written.
struct Rows {
  std::vector<std::vector<float>> values;  // per expert, [B * cols]
  std::vector<int64_t> index, labels;
};

class JournalWriter {
 public:
  JournalWriter(const fs::path& dir, const std::vector<ExpertSpec>& experts, bool labels) {
    for (const auto& e : experts) files_.push_back(open(dir / (e.name + ".f32")));
    index_ = open(dir / "index.i64");
    if (labels) labels_ = open(dir / "label.i64");
    thread_ = std::thread([this] { loop(); });
  }
  ~JournalWriter() {
    try {
      close();
    } catch (...) {
    }
  }
  void push(Rows rows) {
    std::unique_lock<std::mutex> lock(mu_);
    cv_.wait(lock, [&] { return queue_.size() < 2 || error_; });
    if (error_) std::rethrow_exception(error_);
    queue_.push_back(std::move(rows));
    cv_.notify_all();
  }
  // Waits for every queued batch, stops the thread, closes the files; rethrows a write error.
  void close() {
    {
      std::unique_lock<std::mutex> lock(mu_);
      done_ = true;
      cv_.notify_all();
    }
    if (thread_.joinable()) thread_.join();
    for (auto* f : files_) std::fclose(f);
    if (index_) std::fclose(index_);
    if (labels_) std::fclose(labels_);
    files_.clear();
    index_ = labels_ = nullptr;
    if (error_) std::rethrow_exception(error_);
  }

 private:
  static std::FILE* open(const fs::path& p) {
    std::FILE* f = std::fopen(p.c_str(), "ab");
    if (!f) throw IoError("cannot open journal file '" + p.string() + "' for appending");
    return f;
  }
  static void write(std::FILE* f, const void* data, size_t bytes) {
    if (bytes && std::fwrite(data, 1, bytes, f) != bytes) throw IoError("cannot write the extraction journal (disk full?)");
  }
  void loop() {
    while (true) {
      Rows rows;
      {
        std::unique_lock<std::mutex> lock(mu_);
        cv_.wait(lock, [&] { return !queue_.empty() || done_; });
        if (queue_.empty()) return;
        rows = std::move(queue_.front());
        queue_.pop_front();
        cv_.notify_all();
      }
      try {
        for (size_t i = 0; i < files_.size(); ++i) write(files_[i], rows.values[i].data(), rows.values[i].size() * 4);
        if (labels_) write(labels_, rows.labels.data(), rows.labels.size() * 8);
        write(index_, rows.index.data(), rows.index.size() * 8);  // last: a row counts once all files have it
        for (auto* f : files_) std::fflush(f);
        if (labels_) std::fflush(labels_);
        std::fflush(index_);
      } catch (...) {
        std::unique_lock<std::mutex> lock(mu_);
        error_ = std::current_exception();
        cv_.notify_all();
        return;
      }
    }
  }
  std::vector<std::FILE*> files_;
  std::FILE* index_ = nullptr;
  std::FILE* labels_ = nullptr;
  std::thread thread_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<Rows> queue_;
  bool done_ = false;
  std::exception_ptr error_;
};

int64_t file_rows(const fs::path& p, int64_t row_bytes) {
  std::error_code ec;
  auto size = fs::file_size(p, ec);
  return ec ? 0 : static_cast<int64_t>(size / row_bytes);
}

void copy_journal_into(io::EmbeddingWriter& w, const fs::path& file, const std::string& name, int64_t cols, int64_t rows) {
  std::FILE* f = std::fopen(file.c_str(), "rb");
  if (!f) throw IoError("cannot read journal file '" + file.string() + "'");
  const int64_t block = std::max<int64_t>(1, (8 << 20) / (cols * 4));
  std::vector<float> buf;
  for (int64_t done = 0; done < rows; done += block) {
    int64_t n = std::min(block, rows - done);
    buf.resize(n * cols);
    if (std::fread(buf.data(), 4, buf.size(), f) != buf.size()) {
      std::fclose(f);
      throw IoError("journal file '" + file.string() + "' is shorter than expected");
    }
    w.append_float(name, buf.data(), n);
  }
  std::fclose(f);
}

std::vector<int64_t> read_i64_file(const fs::path& file, int64_t rows) {
  std::vector<int64_t> v(rows);
  std::FILE* f = std::fopen(file.c_str(), "rb");
  if (!f || std::fread(v.data(), 8, v.size(), f) != v.size()) {
    if (f) std::fclose(f);
    throw IoError("cannot read journal file '" + file.string() + "'");
  }
  std::fclose(f);
  return v;
}

json dataset_summary(const json& datasets, int64_t rows) {
  json out = json::object();
  for (const auto& [name, d] : datasets.items()) out[name] = {{"rows", rows}, {"cols", d["cols"]}, {"shape", d["shape"]}};
  return out;
}

}  // namespace

namespace {

// One extraction: run() calls the phases in order (check the output, open the inputs, open or
// check the journal, recover its rows, encode batch by batch, write the cache). Rows go through
// a journal (OUT.partial/) so that an interrupted run resumes from its last whole batch.
class Extraction {
 public:
  explicit Extraction(const ExtractRequest& req) : req_(req), journal_(req.out + ".partial"), meta_path_(journal_ / "meta.json") {}

  json run() {
    if (auto complete = check_output()) return *complete;
    open_inputs();
    open_journal();
    recover_rows();
    StopSignals signals;
    encode_all();
    return write_cache();
  }

 private:
  // ---- the output: refuse to overwrite, report an already complete one, clear a forced journal
  std::optional<json> check_output() {
    if (req_.batch_size < 1) throw UsageError("--batch-size must be >= 1");
    if (req_.out.empty()) throw UsageError("--out is required");
    std::error_code ec;
    const bool out_exists = fs::exists(fs::path(req_.out), ec), journal_exists = fs::exists(journal_, ec);
    if (out_exists && !req_.force) {
      if (req_.resume && !journal_exists) {
        io::EmbeddingReader done(req_.out);
        spdlog::info("'{}' is already complete ({} rows); nothing to resume", req_.out, done.rows());
        return json{{"out", req_.out}, {"rows", done.rows()}, {"already_complete", true}};
      }
      if (!req_.resume) throw UsageError("'" + req_.out + "' exists; use --force to overwrite it (or --resume to finish it)");
    }
    if (journal_exists && !req_.resume && !req_.force)
      throw UsageError("an interrupted extraction into '" + req_.out + "' exists (" + journal_.string() +
                       "); use --resume to continue it or --force to start over");
    if (journal_exists && req_.force) fs::remove_all(journal_);
    return std::nullopt;
  }

  // ---- the source (this shard's items) and the experts
  void open_inputs() {
    data::SourceOptions sopts;
    sopts.data_dir = req_.data_dir;
    sopts.seed = req_.seed;
    sopts.image_size = req_.image_size, sopts.image_mode = req_.image_mode, sopts.skip_bad = req_.skip_bad;
    source_ = data::open_source(req_.source, sopts);
    int64_t n = source_->size();
    if (req_.limit > 0) n = std::min(n, req_.limit);
    for (int64_t i = req_.shard.index; i < n; i += req_.shard.count) items_.push_back(i);
    total_ = items_.size();
    experts::ExpertContext ctx;
    ctx.num_classes = source_->num_classes();
    ctx.device = torch::Device(req_.device);
    for (const auto& e : req_.experts) {
      experts_.push_back(experts::make_expert(e.spec, ctx));
      expert_list_.push_back({{"name", e.name}, {"spec", e.spec}});
      fingerprints_[e.name] = experts_.back()->fingerprint();
    }
    labels_ = source_->has_labels();
  }

  // How images were read (part of the cache's identity: another size is another cache).
  json source_options() const {
    return json{{"image_size", req_.image_size}, {"image_mode", req_.image_mode}, {"skip_bad", req_.skip_bad}};
  }

  // ---- the journal: a new one, or an interrupted one whose request must be this one
  void open_journal() {
    json identity = {{"source", source_->spec()}, {"experts", expert_list_}, {"fingerprints", fingerprints_},
                     {"shard", req_.shard.str()}, {"limit", req_.limit}, {"seed", req_.seed}, {"items", total_},
                     {"batch_size", req_.batch_size}, {"source_options", source_options()}};
    std::error_code ec;
    if (fs::exists(journal_, ec)) {
      meta_ = json::parse(read_text_file(meta_path_.string()), nullptr, false);
      if (meta_.is_discarded() || !meta_.contains("identity"))
        throw InputError("'" + meta_path_.string() + "' is unreadable; use --force to start over");
      std::string diff;
      for (const auto& [key, value] : identity.items()) {
        // A journal of an earlier version lacks source_options: it read images as the defaults do.
        if (key == "source_options" && !meta_["identity"].contains(key) && value == json{{"image_size", 0}, {"image_mode", ""}, {"skip_bad", false}})
          continue;
        if (meta_["identity"][key] != value)
          diff += "\n  " + key + ": interrupted run " + meta_["identity"][key].dump() + ", this run " + value.dump();
      }
      if (!diff.empty())
        throw UsageError("--resume: this request differs from the interrupted run in '" + journal_.string() + "':" + diff +
                         "\nuse the same arguments, or --force to start over");
    } else {
      fs::create_directories(journal_);
      meta_ = {{"identity", identity}, {"datasets", nullptr}};
      write_text_atomically(meta_path_.string(), meta_.dump(2));
    }
  }

  // ---- rows every journal file holds, cut back to that and to a batch boundary: the resumed
  // run then feeds the experts exactly the batches an uninterrupted run would, so its rows are
  // bit-identical (experts need not be batch-invariant)
  void recover_rows() {
    if (meta_["datasets"].is_null()) return;
    int64_t done = file_rows(journal_ / "index.i64", 8);
    for (const auto& e : req_.experts)
      done = std::min(done, file_rows(journal_ / (e.name + ".f32"), 4 * cols_of(e.name)));
    if (labels_) done = std::min(done, file_rows(journal_ / "label.i64", 8));
    done = std::min(done, total_);
    if (done < total_) done -= done % req_.batch_size;
    for (const auto& e : req_.experts) fs::resize_file(journal_ / (e.name + ".f32"), done * 4 * cols_of(e.name));
    fs::resize_file(journal_ / "index.i64", done * 8);
    if (labels_) fs::resize_file(journal_ / "label.i64", done * 8);
    if (done > 0) spdlog::info("resuming '{}' at row {} of {}", req_.out, done, total_);
    done_ = resumed_from_ = done;
  }
  int64_t cols_of(const std::string& name) const { return meta_["datasets"][name]["cols"].get<int64_t>(); }

  // ---- every remaining batch through the experts into the journal (a writer thread), until a
  // stop signal
  void encode_all() {
    JournalWriter writer(journal_, req_.experts, labels_);
    Progress progress("extract " + source_->spec(), total_, "rows", done_);
    while (done_ < total_ && !stop_requested()) {
      const int64_t b = std::min(req_.batch_size, total_ - done_);
      writer.push(encode_batch(std::vector<int64_t>(items_.begin() + done_, items_.begin() + done_ + b)));
      done_ += b;
      progress.update(done_);
    }
    writer.close();
    if (done_ < total_) {
      throw Interrupted("extraction stopped by signal " + std::to_string(stop_signal()) + " after " + std::to_string(done_) +
                        " of " + std::to_string(total_) + " rows; rerun with --resume to continue");
    }
    progress.finish();
  }

  // One batch: every expert's rows, checked (row count, finite, width); the first batch records
  // the widths in meta.json before any row is written, so that a resume can count rows.
  Rows encode_batch(const std::vector<int64_t>& idx) {
    const int64_t b = static_cast<int64_t>(idx.size());
    data::Batch batch = source_->get(idx);
    Rows rows;
    rows.index = idx;
    if (labels_) rows.labels.assign(batch.labels.data_ptr<int64_t>(), batch.labels.data_ptr<int64_t>() + b);
    const bool first = meta_["datasets"].is_null();
    json dims = first ? json::object() : meta_["datasets"];
    for (size_t e = 0; e < experts_.size(); ++e) {
      const auto& name = req_.experts[e].name;
      torch::Tensor y = experts_[e]->encode(batch);
      if (y.dim() < 1 || y.size(0) != b)
        throw InputError("expert '" + name + "' (" + req_.experts[e].spec + ") returned " + std::to_string(y.dim() ? y.size(0) : 0) +
                         " rows for a batch of " + std::to_string(b));
      auto finite = torch::isfinite(y.reshape({b, -1})).all(1);
      if (!finite.all().item<bool>()) {
        int64_t r = (~finite).nonzero()[0][0].item<int64_t>();
        throw InputError("expert '" + name + "' (" + req_.experts[e].spec + ") produced NaN or Inf for item " +
                         std::to_string(idx[r]) + " of source '" + source_->spec() + "'");
      }
      std::vector<int64_t> shape(y.sizes().begin() + 1, y.sizes().end());
      if (shape.empty()) shape.push_back(1);
      int64_t cols = 1;
      for (auto s : shape) cols *= s;
      if (first) {
        dims[name] = {{"cols", cols}, {"shape", shape}};
      } else if (dims[name]["cols"].get<int64_t>() != cols) {
        throw InputError("expert '" + name + "' returned " + std::to_string(cols) + " values per item, earlier " +
                         dims[name]["cols"].dump());
      }
      auto flat = y.reshape({b, cols}).contiguous();
      rows.values.emplace_back(flat.data_ptr<float>(), flat.data_ptr<float>() + b * cols);
    }
    if (first) {
      meta_["datasets"] = dims;
      write_text_atomically(meta_path_.string(), meta_.dump(2));
    }
    return rows;
  }

  // ---- every row is in the journal: the cache, atomically, completion recorded last
  json write_cache() {
    auto t0 = std::chrono::steady_clock::now();
    const json datasets = meta_["datasets"].is_null() ? json::object() : meta_["datasets"];
    io::WriterOptions wopts;
    wopts.compression = req_.compression;
    io::write_store(req_.out, wopts, [&](io::EmbeddingWriter& w) {
      for (const auto& e : req_.experts) {
        int64_t cols = datasets.contains(e.name) ? datasets[e.name]["cols"].get<int64_t>() : 1;
        w.create_float(e.name, cols,
                       datasets.contains(e.name) ? datasets[e.name]["shape"].get<std::vector<int64_t>>() : std::vector<int64_t>{});
        if (total_ > 0) copy_journal_into(w, journal_ / (e.name + ".f32"), e.name, cols, total_);
      }
      w.create_int64("index");
      auto index = total_ > 0 ? read_i64_file(journal_ / "index.i64", total_) : std::vector<int64_t>{};
      w.append_int64("index", index.data(), total_);
      if (labels_) {
        w.create_int64("label");
        auto lab = total_ > 0 ? read_i64_file(journal_ / "label.i64", total_) : std::vector<int64_t>{};
        w.append_int64("label", lab.data(), total_);
      }
      w.set_attribute("source", source_->spec());
      w.set_attribute("source_options", source_options());
      w.set_attribute("experts", expert_list_);
      if (const auto names = source_->class_names(); !names.empty()) w.set_attribute("class_names", json(names));
      w.set_attribute("expert_fingerprints", fingerprints_);
      w.set_attribute("shard", req_.shard.str());
      w.set_attribute("limit", req_.limit);
      w.set_attribute("seed", static_cast<int64_t>(req_.seed));
      w.set_attribute("items_in_source", source_->size());
      w.set_attribute("rows", total_);
      w.set_attribute("tool_version", std::string("net2net ") + kVersion);
      w.set_attribute("created", utc_now());
    });
    fs::remove_all(journal_);
    const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    spdlog::info("wrote '{}': {} rows, datasets {}", req_.out, total_, datasets.dump());
    return json{{"out", req_.out}, {"source", source_->spec()}, {"shard", req_.shard.str()}, {"rows", total_},
                {"resumed_from", resumed_from_}, {"datasets", dataset_summary(datasets, total_)},
                {"labels", labels_}, {"write_seconds", seconds}};
  }

  const ExtractRequest& req_;
  const fs::path journal_, meta_path_;
  std::unique_ptr<data::Source> source_;
  std::vector<int64_t> items_;
  int64_t total_ = 0, done_ = 0, resumed_from_ = 0;
  std::vector<std::unique_ptr<experts::Expert>> experts_;
  json expert_list_ = json::array(), fingerprints_ = json::object(), meta_;
  bool labels_ = false;
};

}  // namespace

json run_extraction(const ExtractRequest& req) { return Extraction(req).run(); }

namespace {
// The N of a shard file's "shard" attribute ("I/N", as net2net-extract --shard writes it); InputError
// naming the file for anything else (a number, text, digits beyond int64).
int64_t shard_count_of(const json& attributes, const std::string& file) {
  const json& a = attributes["shard"];
  static const std::regex re("^([0-9]{1,18})/([0-9]{1,18})$");  // at most 18 digits: fits int64
  std::smatch m;
  const std::string text = a.is_string() ? a.get<std::string>() : std::string();
  if (!a.is_string() || !std::regex_match(text, m, re) || std::stoll(m[2]) < 1 || std::stoll(m[1]) >= std::stoll(m[2]))
    throw InputError("'" + file + "': attribute 'shard' is " + a.dump(-1, ' ', false, json::error_handler_t::replace) +
                     "; it must be \"I/N\" with 0 <= I < N");
  return std::stoll(m[2]);
}
}  // namespace

json merge_caches(const std::vector<std::string>& inputs, const std::string& out, bool force, int compression) {
  if (inputs.empty()) throw UsageError("--merge needs the shard files to merge");
  std::error_code ec;
  if (fs::exists(out, ec) && !force) throw UsageError("'" + out + "' exists; use --force to overwrite it");
  std::vector<io::EmbeddingReader> readers;
  for (const auto& p : inputs) readers.emplace_back(p);
  std::vector<json> attrs;  // each file's root attributes, read once
  for (auto& r : readers) attrs.push_back(r.attributes());
  const json& first = attrs[0];
  // Caches of different sources (two domains, as the unpaired experiments need) merge domain by
  // domain, each row labelled with its domain in /domain (the order of first appearance); the
  // experts must be the same.
  std::vector<std::string> domains;
  std::vector<int64_t> domain_of(readers.size());
  for (size_t i = 0; i < readers.size(); ++i) {
    const json& a = attrs[i];
    if (!a.contains("source") || !a["source"].is_string())
      throw InputError("'" + inputs[i] + "' has no 'source' attribute: cannot check it belongs with the others");
    // How the images were read belongs to the domain: other --image-size, other data.
    std::string source = a["source"].get<std::string>();
    if (a.contains("source_options") && a["source_options"] != first.value("source_options", json()))
      source += " " + a["source_options"].dump(-1, ' ', false, json::error_handler_t::replace);
    auto it = std::find(domains.begin(), domains.end(), source);
    domain_of[i] = it - domains.begin();
    if (it == domains.end()) {
      domains.push_back(source);
      if (domains.size() > 1)  // recorded as JSON (attribute "domains"): each must be UTF-8 text
        for (size_t d : {size_t(0), domains.size() - 1})
          try {
            (void)json(domains[d]).dump();
          } catch (const json::type_error&) {
            throw InputError("'" + inputs[i] + "' and '" + inputs[0] + "' differ in source, and a source is not UTF-8 text: " +
                             "it cannot be recorded as a domain of the merge");
          }
    }
    if (readers[i].has("domain"))
      throw InputError("'" + inputs[i] + "' already has /domain (a merge of several sources): merge the caches it came from");
  }
  const bool several = domains.size() > 1;
  for (size_t i = 1; i < readers.size(); ++i)
    if (attrs[i].value("class_names", json()) != first.value("class_names", json()))
      spdlog::warn("'{}' names its classes otherwise than '{}': the merge keeps the names of the first", inputs[i], inputs[0]);
  if (several)
    spdlog::info("merging {} sources as domains 0..{} (/domain): {}", domains.size(), domains.size() - 1,
                 json(domains).dump(-1, ' ', false, json::error_handler_t::replace));
  for (const char* key : {"experts", "expert_fingerprints"}) {
    for (size_t i = 0; i < readers.size(); ++i) {
      const json& a = attrs[i];
      if (!a.contains(key)) throw InputError("'" + inputs[i] + "' has no '" + key + "' attribute: cannot check it belongs with the others");
      if (a[key] != first[key])
        // Attributes need not be UTF-8: dump() would throw for them.
        throw InputError("'" + inputs[i] + "' differs from '" + inputs[0] + "' in " + key + ": " +
                         a[key].dump(-1, ' ', false, json::error_handler_t::replace) + " vs " +
                         first[key].dump(-1, ' ', false, json::error_handler_t::replace));
    }
  }
  // Datasets and their widths must agree; /index gives every row's place.
  std::map<std::string, io::DatasetInfo> sets;
  for (const auto& name : readers[0].datasets()) sets[name] = readers[0].info(name);
  if (!sets.count("index")) throw InputError("'" + inputs[0] + "' has no /index dataset: cannot restore source order");
  for (size_t i = 0; i < readers.size(); ++i) {
    auto names = readers[i].datasets();
    if (std::set<std::string>(names.begin(), names.end()).size() != sets.size())
      throw InputError("'" + inputs[i] + "' has other datasets than '" + inputs[0] + "'");
    for (const auto& [name, info] : sets) {
      const auto mine = readers[i].info(name);
      if (mine.cols != info.cols)
        throw InputError("'" + inputs[i] + "': /" + name + " is " + std::to_string(mine.cols) + " wide, in '" +
                         inputs[0] + "' " + std::to_string(info.cols));
      // Integer datasets are merged as one value per row (rows of /index are places), so a wider
      // one would be read past its end; /index and /label must be integers.
      if ((info.is_integer && mine.cols != 1) || ((name == "index" || name == "label") && !mine.is_integer))
        throw InputError("'" + inputs[i] + "': /" + name + " must be a 1-column integer dataset ([rows] of integers); it is " +
                         (mine.is_integer ? "integer" : "not integer") + " with " + std::to_string(mine.cols) + " columns");
    }
  }
  struct Place {
    int64_t domain;
    int64_t index;
    size_t file;
    int64_t row;
  };
  std::vector<Place> places;
  std::set<std::string> shards;
  int64_t count = 0;  // shards in all, by the largest N of the "I/N" attributes
  for (size_t i = 0; i < readers.size(); ++i) {
    auto idx = readers[i].read_int64("index");
    for (int64_t r = 0; r < int64_t(idx.size()); ++r) places.push_back({domain_of[i], idx[r], i, r});
    const json& a = attrs[i];
    if (a.contains("shard")) {
      count = std::max(count, shard_count_of(a, inputs[i]));
      shards.insert(a["shard"].get<std::string>());
    }
  }
  std::sort(places.begin(), places.end(),
            [](const Place& a, const Place& b) { return std::tie(a.domain, a.index) < std::tie(b.domain, b.index); });
  for (size_t k = 1; k < places.size(); ++k)
    if (places[k].domain == places[k - 1].domain && places[k].index == places[k - 1].index)
      throw InputError("item " + std::to_string(places[k].index) + " is in both '" + inputs[places[k - 1].file] + "' and '" +
                       inputs[places[k].file] + "'");
  // Missing shards are worth a warning, not an error (a partial merge can be intended).
  if (!several && count > 0 && static_cast<int64_t>(shards.size()) < count)
    spdlog::warn("merging {} of {} shards; the result misses the items of the others", shards.size(), count);

  const int64_t rows = places.size();
  io::WriterOptions wopts;
  wopts.compression = compression;
  io::write_store(out, wopts, [&](io::EmbeddingWriter& w) {
    const int64_t block = 4096;
    for (const auto& [name, info] : sets) {
      const bool ints = info.is_integer;
      if (ints) w.create_int64(name);
      else w.create_float(name, info.cols, info.item_shape);
      std::vector<std::vector<int64_t>> per_file(readers.size()), all_ints(readers.size());
      if (ints)
        for (size_t f = 0; f < readers.size(); ++f) all_ints[f] = readers[f].read_int64(name);
      for (int64_t s = 0; s < rows; s += block) {
        int64_t b = std::min(block, rows - s);
        // Gather this block's rows file by file, then put them in order.
        for (auto& v : per_file) v.clear();
        std::vector<std::pair<size_t, size_t>> where(b);  // (file, position in that file's list)
        for (int64_t k = 0; k < b; ++k) {
          const auto& p = places[s + k];
          where[k] = {p.file, per_file[p.file].size()};
          per_file[p.file].push_back(p.row);
        }
        if (ints) {
          std::vector<std::vector<int64_t>> got(readers.size());
          for (size_t f = 0; f < readers.size(); ++f)
            for (auto r : per_file[f]) got[f].push_back(all_ints[f][r * info.cols]);
          std::vector<int64_t> outv(b);
          for (int64_t k = 0; k < b; ++k) outv[k] = got[where[k].first][where[k].second];
          w.append_int64(name, outv.data(), b);
        } else {
          std::vector<std::vector<float>> got(readers.size());
          for (size_t f = 0; f < readers.size(); ++f)
            if (!per_file[f].empty()) got[f] = readers[f].read_rows(name, per_file[f]);
          std::vector<float> outv(b * info.cols);
          for (int64_t k = 0; k < b; ++k)
            std::copy_n(got[where[k].first].begin() + where[k].second * info.cols, info.cols, outv.begin() + k * info.cols);
          w.append_float(name, outv.data(), b);
        }
      }
    }
    if (several) {
      std::vector<int64_t> domain(rows);
      for (int64_t k = 0; k < rows; ++k) domain[k] = places[k].domain;
      w.create_int64("domain");
      w.append_int64("domain", domain.data(), rows);
    }
    for (const auto& [key, value] : first.items())
      if (key != "shard" && key != "rows" && key != "created" && key != "complete" && key != "format" && key != "version")
        w.set_attribute(key, value);
    if (several) {
      std::string joined;
      for (const auto& d : domains) joined += (joined.empty() ? "" : " + ") + d;
      w.set_attribute("source", joined);
      w.set_attribute("domains", domains);
    }
    w.set_attribute("merged_from", inputs);
    w.set_attribute("rows", rows);
    w.set_attribute("created", utc_now());
  });
  spdlog::info("merged {} files into '{}': {} rows", inputs.size(), out, rows);
  json summary = {{"out", out}, {"rows", rows}, {"merged_from", inputs}, {"shards", std::vector<std::string>(shards.begin(), shards.end())}};
  if (several) summary["domains"] = domains;
  return summary;
}

}  // namespace net2net::extract
