#include "net2net/extract/extract.h"

#include <spdlog/spdlog.h>
#include <torch/torch.h>

#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <ctime>
#include <deque>
#include <filesystem>
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

json run_extraction(const ExtractRequest& req) {
  if (req.batch_size < 1) throw UsageError("--batch-size must be >= 1");
  if (req.out.empty()) throw UsageError("--out is required");
  const fs::path out(req.out);
  const fs::path journal = req.out + ".partial";
  std::error_code ec;
  const bool out_exists = fs::exists(out, ec), journal_exists = fs::exists(journal, ec);
  if (out_exists && !req.force) {
    if (req.resume && !journal_exists) {
      io::EmbeddingReader done(req.out);
      spdlog::info("'{}' is already complete ({} rows); nothing to resume", req.out, done.rows());
      return json{{"out", req.out}, {"rows", done.rows()}, {"already_complete", true}};
    }
    if (!req.resume) throw UsageError("'" + req.out + "' exists; use --force to overwrite it (or --resume to finish it)");
  }
  if (journal_exists && !req.resume && !req.force)
    throw UsageError("an interrupted extraction into '" + req.out + "' exists (" + journal.string() +
                     "); use --resume to continue it or --force to start over");
  if (journal_exists && req.force) fs::remove_all(journal);

  data::SourceOptions sopts;
  sopts.data_dir = req.data_dir;
  sopts.seed = req.seed;
  auto source = data::open_source(req.source, sopts);
  int64_t n = source->size();
  if (req.limit > 0) n = std::min(n, req.limit);
  std::vector<int64_t> items;
  for (int64_t i = req.shard.index; i < n; i += req.shard.count) items.push_back(i);
  const int64_t total = items.size();

  experts::ExpertContext ctx;
  ctx.num_classes = source->num_classes();
  ctx.device = torch::Device(req.device);
  std::vector<std::unique_ptr<experts::Expert>> experts;
  json expert_list = json::array(), fingerprints = json::object();
  for (const auto& e : req.experts) {
    experts.push_back(experts::make_expert(e.spec, ctx));
    expert_list.push_back({{"name", e.name}, {"spec", e.spec}});
    fingerprints[e.name] = experts.back()->fingerprint();
  }
  const bool labels = source->has_labels();

  // What a resumed run must agree with.
  json identity = {{"source", source->spec()}, {"experts", expert_list}, {"fingerprints", fingerprints},
                   {"shard", req.shard.str()}, {"limit", req.limit}, {"seed", req.seed}, {"items", total},
                   {"batch_size", req.batch_size}};
  json meta;
  const fs::path meta_path = journal / "meta.json";
  if (fs::exists(journal, ec)) {
    meta = json::parse(read_text_file(meta_path.string()), nullptr, false);
    if (meta.is_discarded() || !meta.contains("identity"))
      throw InputError("'" + meta_path.string() + "' is unreadable; use --force to start over");
    std::string diff;
    for (const auto& [key, value] : identity.items())
      if (meta["identity"][key] != value)
        diff += "\n  " + key + ": interrupted run " + meta["identity"][key].dump() + ", this run " + value.dump();
    if (!diff.empty())
      throw UsageError("--resume: this request differs from the interrupted run in '" + journal.string() + "':" + diff +
                       "\nuse the same arguments, or --force to start over");
  } else {
    fs::create_directories(journal);
    meta = {{"identity", identity}, {"datasets", nullptr}};
    write_text_atomically(meta_path.string(), meta.dump(2));
  }

  // Rows every journal file holds; cut the files back to that.
  int64_t done = 0;
  if (!meta["datasets"].is_null()) {
    done = file_rows(journal / "index.i64", 8);
    for (const auto& e : req.experts) done = std::min(done, file_rows(journal / (e.name + ".f32"), 4 * meta["datasets"][e.name]["cols"].get<int64_t>()));
    if (labels) done = std::min(done, file_rows(journal / "label.i64", 8));
    // Back to a batch boundary: the resumed run then feeds the experts exactly the batches an
    // uninterrupted run would, so its rows are bit-identical (experts need not be batch-invariant).
    done = std::min(done, total);
    if (done < total) done -= done % req.batch_size;
    for (const auto& e : req.experts)
      fs::resize_file(journal / (e.name + ".f32"), done * 4 * meta["datasets"][e.name]["cols"].get<int64_t>());
    fs::resize_file(journal / "index.i64", done * 8);
    if (labels) fs::resize_file(journal / "label.i64", done * 8);
    if (done > 0) spdlog::info("resuming '{}' at row {} of {}", req.out, done, total);
  }
  const int64_t resumed_from = done;

  StopSignals signals;
  {
    JournalWriter writer(journal, req.experts, labels);
    Progress progress("extract " + source->spec(), total, "rows", done);
    while (done < total && !stop_requested()) {
      int64_t b = std::min(req.batch_size, total - done);
      std::vector<int64_t> idx(items.begin() + done, items.begin() + done + b);
      data::Batch batch = source->get(idx);
      Rows rows;
      rows.index = idx;
      if (labels) rows.labels.assign(batch.labels.data_ptr<int64_t>(), batch.labels.data_ptr<int64_t>() + b);
      bool first = meta["datasets"].is_null();
      json dims = first ? json::object() : meta["datasets"];
      for (size_t e = 0; e < experts.size(); ++e) {
        const auto& name = req.experts[e].name;
        torch::Tensor y = experts[e]->encode(batch);
        if (y.dim() < 1 || y.size(0) != b)
          throw InputError("expert '" + name + "' (" + req.experts[e].spec + ") returned " + std::to_string(y.dim() ? y.size(0) : 0) +
                           " rows for a batch of " + std::to_string(b));
        auto finite = torch::isfinite(y.reshape({b, -1})).all(1);
        if (!finite.all().item<bool>()) {
          int64_t r = (~finite).nonzero()[0][0].item<int64_t>();
          throw InputError("expert '" + name + "' (" + req.experts[e].spec + ") produced NaN or Inf for item " +
                           std::to_string(idx[r]) + " of source '" + source->spec() + "'");
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
      if (first) {  // dims are known before any row is written, so a resume can count rows
        meta["datasets"] = dims;
        write_text_atomically(meta_path.string(), meta.dump(2));
      }
      writer.push(std::move(rows));
      done += b;
      progress.update(done);
    }
    writer.close();
    if (done < total) {
      throw Interrupted("extraction stopped by signal " + std::to_string(stop_signal()) + " after " + std::to_string(done) +
                        " of " + std::to_string(total) + " rows; rerun with --resume to continue");
    }
    progress.finish();
  }
  double seconds = 0;
  // Every row is in the journal: write the cache, atomically, completion recorded last.
  auto t0 = std::chrono::steady_clock::now();
  const json datasets = meta["datasets"].is_null() ? json::object() : meta["datasets"];
  io::WriterOptions wopts;
  wopts.compression = req.compression;
  io::write_store(req.out, wopts, [&](io::EmbeddingWriter& w) {
    for (const auto& e : req.experts) {
      int64_t cols = datasets.contains(e.name) ? datasets[e.name]["cols"].get<int64_t>() : 1;
      w.create_float(e.name, cols, datasets.contains(e.name) ? datasets[e.name]["shape"].get<std::vector<int64_t>>() : std::vector<int64_t>{});
      if (total > 0) copy_journal_into(w, journal / (e.name + ".f32"), e.name, cols, total);
    }
    w.create_int64("index");
    auto index = total > 0 ? read_i64_file(journal / "index.i64", total) : std::vector<int64_t>{};
    w.append_int64("index", index.data(), total);
    if (labels) {
      w.create_int64("label");
      auto lab = total > 0 ? read_i64_file(journal / "label.i64", total) : std::vector<int64_t>{};
      w.append_int64("label", lab.data(), total);
    }
    w.set_attribute("source", source->spec());
    w.set_attribute("experts", expert_list);
    w.set_attribute("expert_fingerprints", fingerprints);
    w.set_attribute("shard", req.shard.str());
    w.set_attribute("limit", req.limit);
    w.set_attribute("seed", static_cast<int64_t>(req.seed));
    w.set_attribute("items_in_source", source->size());
    w.set_attribute("rows", total);
    w.set_attribute("tool_version", std::string("net2net ") + kVersion);
    w.set_attribute("created", utc_now());
  });
  fs::remove_all(journal);
  seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  spdlog::info("wrote '{}': {} rows, datasets {}", req.out, total, datasets.dump());
  return json{{"out", req.out}, {"source", source->spec()}, {"shard", req.shard.str()}, {"rows", total},
              {"resumed_from", resumed_from}, {"datasets", dataset_summary(datasets, total)},
              {"labels", labels}, {"write_seconds", seconds}};
}

json merge_caches(const std::vector<std::string>& inputs, const std::string& out, bool force, int compression) {
  if (inputs.empty()) throw UsageError("--merge needs the shard files to merge");
  std::error_code ec;
  if (fs::exists(out, ec) && !force) throw UsageError("'" + out + "' exists; use --force to overwrite it");
  std::vector<io::EmbeddingReader> readers;
  for (const auto& p : inputs) readers.emplace_back(p);
  const json first = readers[0].attributes();
  for (const char* key : {"source", "experts", "expert_fingerprints"}) {
    for (size_t i = 0; i < readers.size(); ++i) {
      json a = readers[i].attributes();
      if (!a.contains(key)) throw InputError("'" + inputs[i] + "' has no '" + key + "' attribute: cannot check it belongs with the others");
      if (a[key] != first[key])
        throw InputError("'" + inputs[i] + "' differs from '" + inputs[0] + "' in " + key + ": " + a[key].dump() + " vs " + first[key].dump());
    }
  }
  // Datasets and their widths must agree; /index gives every row's place.
  std::map<std::string, io::DatasetInfo> sets;
  for (const auto& name : readers[0].datasets()) sets[name] = readers[0].info(name);
  if (!sets.count("index")) throw InputError("'" + inputs[0] + "' has no /index dataset: cannot restore source order");
  for (size_t i = 1; i < readers.size(); ++i) {
    auto names = readers[i].datasets();
    if (std::set<std::string>(names.begin(), names.end()).size() != sets.size())
      throw InputError("'" + inputs[i] + "' has other datasets than '" + inputs[0] + "'");
    for (const auto& [name, info] : sets)
      if (readers[i].info(name).cols != info.cols)
        throw InputError("'" + inputs[i] + "': /" + name + " is " + std::to_string(readers[i].info(name).cols) + " wide, in '" +
                         inputs[0] + "' " + std::to_string(info.cols));
  }
  struct Place {
    int64_t index;
    size_t file;
    int64_t row;
  };
  std::vector<Place> places;
  std::set<std::string> shards;
  for (size_t i = 0; i < readers.size(); ++i) {
    auto idx = readers[i].read_int64("index");
    for (int64_t r = 0; r < int64_t(idx.size()); ++r) places.push_back({idx[r], i, r});
    json a = readers[i].attributes();
    if (a.contains("shard")) shards.insert(a["shard"].get<std::string>());
  }
  std::sort(places.begin(), places.end(), [](const Place& a, const Place& b) { return a.index < b.index; });
  for (size_t k = 1; k < places.size(); ++k)
    if (places[k].index == places[k - 1].index)
      throw InputError("item " + std::to_string(places[k].index) + " is in both '" + inputs[places[k - 1].file] + "' and '" +
                       inputs[places[k].file] + "'");
  // Missing shards are worth a warning, not an error (a partial merge can be intended).
  int64_t count = 0;
  for (const auto& s : shards) count = std::max<int64_t>(count, std::stoll(s.substr(s.find('/') + 1)));
  if (count > 0 && static_cast<int64_t>(shards.size()) < count)
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
    for (const auto& [key, value] : first.items())
      if (key != "shard" && key != "rows" && key != "created" && key != "complete" && key != "format" && key != "version")
        w.set_attribute(key, value);
    w.set_attribute("merged_from", inputs);
    w.set_attribute("rows", rows);
    w.set_attribute("created", utc_now());
  });
  spdlog::info("merged {} files into '{}': {} rows", inputs.size(), out, rows);
  return json{{"out", out}, {"rows", rows}, {"merged_from", inputs}, {"shards", std::vector<std::string>(shards.begin(), shards.end())}};
}

}  // namespace net2net::extract
