#include "net2net/translate/translate.h"

#include <spdlog/spdlog.h>
#include <torch/torch.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <numeric>

#include "net2net/core/error.h"
#include "net2net/core/progress.h"
#include "net2net/core/signals.h"
#include "net2net/data/grid.h"
#include "net2net/data/source.h"
#include "net2net/experts/expert.h"
#include "net2net/io/checkpoint.h"
#include "net2net/io/embedding_store.h"

namespace net2net::translate {
namespace fs = std::filesystem;
using nlohmann::json;
using torch::Tensor;

namespace {

// The name of class `label` (names: see Conditions::class_names), else "class K".
std::string class_caption(int64_t label, const std::vector<std::string>& names) {
  if (label >= 0 && label < static_cast<int64_t>(names.size())) return names[label];
  return "class " + std::to_string(label);
}

// The conditions: given in full (--labels, --text: a few), or read from a source through an
// expert block by block as the rows reach them (--cond, --data: up to millions of rows, of which
// only one block of --batch-size conditions is held at a time).
struct Conditions {
  int64_t count = 0;
  Tensor all;                          // [count, cond_dim] float32, when given in full
  std::vector<std::string> captions;   // given in full: one per condition
  bool labelled = false;               // every condition has a class: labels[k], once rows() reached k
  std::vector<int64_t> labels;
  std::vector<std::string> class_names;  // of the labels: a labelled source's own, else the model's (may be empty)
  Tensor edit_mask, edit_value;        // --edit: [count, cond_dim], 1 where condition k sets a column, and to what
  std::unique_ptr<data::Source> source;  // else: the source, its expert and the block size
  std::unique_ptr<experts::Expert> expert;
  int64_t block = 1024;

  // Condition rows [begin, end) (end - begin <= block), float32 on the CPU.
  Tensor rows(int64_t begin, int64_t end) {
    if (all.defined()) return all.narrow(0, begin, end - begin);
    if (!cached_.defined() || begin < cached_begin_ || end > cached_begin_ + cached_.size(0)) {
      const int64_t stop = std::min(count, std::max(end, begin + block));
      std::vector<int64_t> idx;
      for (int64_t i = begin; i < stop; ++i) idx.push_back(i);
      auto b = source->get(idx);
      auto y = expert->encode(b);
      if (y.dim() < 1 || y.size(0) != b.size())
        throw InputError("condition expert '" + expert->spec() + "' returned " + std::to_string(y.dim() ? y.size(0) : 0) +
                         " rows for " + std::to_string(b.size()) + " items of '" + source->spec() + "'");
      cached_ = y.reshape({y.size(0), -1}).to(torch::kFloat32).contiguous(), cached_begin_ = begin;
      if (labelled) {
        if (!b.labels.defined()) throw InputError("source '" + source->spec() + "' gave items without labels");
        const auto l = b.labels.to(torch::kLong).contiguous();
        std::copy_n(l.data_ptr<int64_t>(), b.size(), labels.begin() + begin);
      }
    }
    return cached_.narrow(0, begin - cached_begin_, end - begin);
  }
  // The grid's caption of condition k (rows() has reached it).
  std::string caption(int64_t k) const {
    if (all.defined()) return captions[k];
    std::string c = "#" + std::to_string(k);
    return labelled ? c + " " + class_caption(labels[k], class_names) : c;
  }

 private:
  Tensor cached_;
  int64_t cached_begin_ = 0;
};

// The part of a condition expert that takes texts: "caption,text-hash:256" -> "text-hash:256".
std::string text_expert_of(const std::string& spec) {
  if (spec.rfind("text-hash", 0) == 0) return spec;
  auto comma = spec.find(',');
  if (spec.rfind("caption", 0) == 0 && comma != std::string::npos) return spec.substr(comma + 1);
  if (spec.rfind("ts:", 0) == 0) return spec;  // a TorchScript text expert takes List[str]
  return "";
}

Conditions make_conditions(const TranslateRequest& r, const json& config, int64_t cond_dim) {
  const std::string cond_expert = config["data"].value("condition_expert", json()).is_string()
                                      ? config["data"]["condition_expert"].get<std::string>()
                                      : std::string();
  int given = !r.cond.empty() + !r.labels.empty() + !r.texts.empty() + !r.data.empty() + !r.edits.empty();
  if (cond_dim == 0) {  // an unconditional flow: one (empty) condition, --samples of it
    if (given != 0) throw UsageError("this model is unconditional (model.cond_dim 0): give no conditions, only --samples");
    Conditions out;
    out.all = torch::zeros({1, 0});
    out.captions = {"unconditional"};
    out.count = 1;
    return out;
  }
  if (given != 1)
    throw UsageError("give the conditions one way: --cond h5:FILE:DATASET, --labels, --text, --data with --cond-expert, "
                     "or (transfer) --edit");
  Conditions out;
  if (!r.edits.empty()) {
    const int64_t k = static_cast<int64_t>(r.edits.size());
    out.all = torch::zeros({k, cond_dim});  // each row's own comes from its exemplar
    out.edit_mask = torch::zeros({k, cond_dim}), out.edit_value = torch::zeros({k, cond_dim});
    for (int64_t e = 0; e < k; ++e) {
      const std::string& edit = r.edits[e];
      auto bad = [&](const std::string& why) {
        return UsageError("--edit '" + edit + "': " + why + " (use COL=VALUE[,COL=VALUE...], COL in 0.." +
                          std::to_string(cond_dim - 1) + ")");
      };
      size_t s = 0;
      while (s <= edit.size()) {
        const size_t comma = std::min(edit.find(',', s), edit.size());
        const std::string part = edit.substr(s, comma - s);
        const size_t eq = part.find('=');
        if (eq == std::string::npos) throw bad("'" + part + "' has no '='");
        int64_t col = -1;
        double value = NAN;
        try {
          size_t used = 0;
          col = std::stoll(part.substr(0, eq), &used);
          if (used != eq) col = -1;
          const std::string v = part.substr(eq + 1);
          value = std::stod(v, &used);
          if (used != v.size()) value = NAN;
        } catch (const std::logic_error&) {
        }
        if (col < 0 || col >= cond_dim) throw bad("column '" + part.substr(0, eq) + "' is not one of the condition's");
        if (!std::isfinite(value)) throw bad("'" + part.substr(eq + 1) + "' is not a finite number");
        out.edit_mask[e][col] = 1.0f, out.edit_value[e][col] = static_cast<float>(value);
        s = comma + 1;
      }
      out.captions.push_back("edit " + edit);
    }
    out.count = k;
    return out;
  }
  if (config["data"].value("class_names", json()).is_array())
    out.class_names = config["data"]["class_names"].get<std::vector<std::string>>();
  if (!r.labels.empty()) {
    if (!cond_expert.empty() && cond_expert.rfind("label", 0) != 0)
      throw UsageError("--labels: this model's condition is '" + cond_expert + "', not one-hot labels");
    for (int64_t l : r.labels)
      if (l < 0 || l >= cond_dim) throw UsageError("--labels: " + std::to_string(l) + " is outside 0.." + std::to_string(cond_dim - 1));
    out.all = torch::one_hot(torch::tensor(r.labels, torch::kLong), cond_dim).to(torch::kFloat32);
    for (int64_t l : r.labels) out.captions.push_back(class_caption(l, out.class_names)), out.labels.push_back(l);
    out.labelled = true;
    out.count = out.all.size(0);
    return out;
  }
  if (!r.texts.empty()) {
    std::string spec = text_expert_of(cond_expert);
    if (spec.empty())
      throw UsageError("--text: this model's condition expert is '" + (cond_expert.empty() ? std::string("unknown") : cond_expert) +
                       "', which does not take texts");
    data::Batch b;
    b.kind = data::ItemKind::Text;
    b.texts = r.texts;
    for (size_t i = 0; i < r.texts.size(); ++i) b.index.push_back(i);
    out.all = experts::make_expert(spec)->encode(b).to(torch::kFloat32);
    out.captions = r.texts;
    out.count = out.all.size(0);
    return out;
  }
  if (!r.cond.empty()) {
    if (r.cond.rfind("h5:", 0) != 0) throw UsageError("--cond must be h5:FILE:DATASET");
    out.source = data::open_source(r.cond);
    out.expert = experts::make_expert("identity");
  } else {
    out.source = data::open_source(r.data);
    std::string spec = r.cond_expert.empty() ? cond_expert : r.cond_expert;
    if (spec.empty()) throw UsageError("--data needs --cond-expert (the model does not record its condition expert)");
    experts::ExpertContext ctx;
    ctx.num_classes = out.source->num_classes();
    out.expert = experts::make_expert(spec, ctx);
  }
  out.count = r.limit > 0 ? std::min(r.limit, out.source->size()) : out.source->size();
  if (out.count == 0) throw InputError("no conditions: the source is empty");
  out.block = r.batch_size;
  out.labelled = out.source->has_labels();
  if (out.labelled) out.labels.assign(static_cast<size_t>(out.count), -1);
  // The source's own names for its labels, else the model's.
  if (auto names = out.source->class_names(); out.labelled && !names.empty()) out.class_names = std::move(names);
  return out;
}

// The mean pairwise distance between the samples of a condition, averaged over conditions, added
// up batch by batch (a batch of whole conditions, or a condition's first slice). At most
// kDiversitySamples samples of each condition enter: their mean estimates the same quantity, and
// cdist's K x K stays small however many samples a condition has (20,000 samples of one
// condition would be a 3 GB matrix).
constexpr int64_t kDiversitySamples = 64;
struct Diversity {
  double sum = 0;
  int64_t conditions = 0;
  void add(const Tensor& x, int64_t conds, int64_t k) {
    if (k < 2) return;
    const int64_t kd = std::min(k, kDiversitySamples);
    auto v = x.reshape({conds, k, -1}).narrow(1, 0, kd).to(torch::kFloat64);
    auto d = torch::cdist(v, v);  // [M, kd, kd]
    sum += (d.sum({1, 2}) / (kd * (kd - 1.0))).sum().item<double>();
    conditions += conds;
  }
  double mean() const { return conditions ? sum / static_cast<double>(conditions) : 0.0; }
};

}  // namespace

namespace {

// One translation: run() calls the phases in order (check the request, load the model, the
// conditions and the exemplars, make the decoder, plan the batches, write the rows batch by
// batch, then the summary and the grid). Rows are condition-major, per_cond_ per condition; the
// RNG draws depend on the batches, so plan_batches decides them once.
class Translation {
 public:
  explicit Translation(const TranslateRequest& r) : r_(r), gen_(at::detail::createCPUGenerator(r.seed)) {}

  json run() {
    check_request();
    load_model();
    torch::NoGradGuard no_grad;
    load_conditions();
    load_exemplars();
    make_decoder();
    plan_batches();
    // SIGINT / SIGTERM / SIGUSR1 stop between batches: the temporary output is removed and
    // nothing is left behind (a killed process would leave its temporary file; a rerun with the
    // same seed gives the same rows, so there is nothing to resume).
    StopSignals signals;
    write_rows();
    return finish();
  }

 private:
  void check_request() {
    if (r_.out.empty()) throw UsageError("--out is required");
    if (fs::exists(r_.out) && !r_.force) throw UsageError("'" + r_.out + "' exists; use --force to overwrite it");
    if (r_.samples < 1) throw UsageError("--samples must be >= 1");
    if (r_.mode != "sample" && r_.mode != "transfer") throw UsageError("--mode must be sample or transfer");
    if (!r_.alphas.empty() && r_.mode != "transfer") throw UsageError("--alpha needs --mode transfer");
    if (r_.png_inputs && (r_.data.empty() || r_.png.empty() || !r_.alphas.empty()))
      throw UsageError("--png-inputs needs --png and --data (a source of images), and no --alpha");
    if (!r_.edits.empty() && r_.mode != "transfer")
      throw UsageError("--edit needs --mode transfer (it edits the condition of each --exemplar)");
    for (double a : r_.alphas)
      if (!std::isfinite(a)) throw UsageError("--alpha: every strength must be a finite number");
    alphas_ = r_.alphas.empty() ? std::vector<double>{1.0} : r_.alphas;
  }

  void load_model() {
    loaded_ = io::load_flow_checkpoint(r_.checkpoint);
    device_ = torch::Device(r_.device);
    loaded_.model->to(device_);
    inn::convert_floating(*loaded_.model, torch::kFloat32);  // a train.precision fp64 run's cINN translates in float32
    loaded_.model->eval();
  }

  void load_conditions() {
    const auto& fc = loaded_.model->config();
    cond_ = make_conditions(r_, loaded_.config, fc.cond_dim);
    const int64_t cond_cols = cond_.rows(0, 1).size(1);
    if (cond_cols != fc.cond_dim)
      throw InputError("the conditions have " + std::to_string(cond_cols) + " dimensions, the model expects " +
                       std::to_string(fc.cond_dim));
    per_cond_ = r_.samples;
  }

  // Transfer: the exemplars' residuals v = T(z_theta | z_phi), one row per exemplar.
  void load_exemplars() {
    if (r_.mode != "transfer") return;
    if (r_.exemplar.empty()) throw UsageError("--mode transfer needs --exemplar FILE.h5 (a cache with the model's datasets)");
    std::string file = r_.exemplar.rfind("h5:", 0) == 0 ? r_.exemplar.substr(3) : r_.exemplar;
    io::EmbeddingReader reader(file);
    const json& config = loaded_.config;
    const std::string cname = config::condition_dataset(config), tname = config["data"]["target"];
    int64_t e = std::min<int64_t>(reader.rows(), r_.exemplar_limit);
    if (e < 1) throw InputError("exemplar cache '" + file + "' has no rows");
    auto ti = reader.info(tname);
    auto tv = reader.read_rows(tname, 0, e);
    Tensor ec = torch::zeros({e, 0});  // an unconditional model's
    if (!cname.empty()) {
      auto ci = reader.info(cname);
      auto cv = reader.read_rows(cname, 0, e);
      ec = torch::from_blob(cv.data(), {e, ci.cols}).clone();
    }
    ec = ec.to(device_);
    exemplar_z_ = torch::from_blob(tv.data(), {e, ti.cols}).clone().to(device_);
    exemplar_v_ = loaded_.model->forward(exemplar_z_, ec).v;
    exemplar_c_ = ec;
    // Edited exemplars keep their class: their labels are the rows' labels.
    if (!r_.edits.empty() && reader.has("label")) {
      exemplar_labels_ = reader.read_int64("label");
      exemplar_labels_.resize(e);
    }
    per_cond_ = e * static_cast<int64_t>(alphas_.size());  // rows: condition, exemplar, strength
  }

  // --decoder, else the model's target expert when it decodes (a TorchScript target expert
  // decodes through its decode method, whatever method encoded).
  void make_decoder() {
    const json& config = loaded_.config;
    decoder_spec_ = r_.decoder;
    if (decoder_spec_.empty() && !r_.png.empty() && config["data"].value("target_expert", json()).is_string() &&
        config["data"]["target_expert"].get<std::string>().rfind("ts:", 0) == 0)
      decoder_spec_ = config["data"]["target_expert"].get<std::string>();
    if (!decoder_spec_.empty()) {
      experts::ExpertContext ctx;
      ctx.device = device_;
      try {
        decoder_ = experts::make_expert(decoder_spec_, ctx);
      } catch (const Error& e) {
        if (!r_.decoder.empty()) throw;
        // The path was recorded by net2net-train, relative to where it ran: say where it came from.
        throw Error(std::string(e.what()) + " (the model's target expert, recorded in " + r_.checkpoint +
                        "; run from where it was trained or pass --decoder ts:PATH)",
                    e.exit_code());
      }
      if (!decoder_->can_decode()) throw UsageError("--decoder '" + decoder_spec_ + "' has no decode method");
    }
    if (!r_.png.empty() && !decoder_) throw UsageError("--png needs a decoder: --decoder EXPERT (the model records none)");
  }

  // Batches: whole conditions while a condition's samples fit in --batch-size (then the RNG
  // draws, and so the rows, are those of earlier versions), else slices of one condition's
  // samples of --batch-size rows, at least kDiversitySamples so that a condition's first slice
  // holds the samples its diversity is measured on.
  void plan_batches() {
    rows_ = cond_.count * per_cond_;
    diversity_ = r_.mode == "sample" && r_.samples > 1;
    whole_ = per_cond_ <= r_.batch_size;
    grid_cols_ = std::min(per_cond_, r_.max_cols_in_png);
    batch_rows_ = whole_ ? std::max<int64_t>(1, r_.batch_size / per_cond_) * per_cond_
                         : std::max(r_.batch_size, kDiversitySamples);
  }

  void write_rows() {
    Progress progress("translate", rows_, "rows");
    io::write_store(r_.out, {}, [&](io::EmbeddingWriter& w) {
      w.create_float("z", loaded_.model->config().in_dim);
      w.create_int64("cond_index");
      if (r_.mode == "transfer") w.create_int64("exemplar_index");
      if (writes_cond()) w.create_float("cond", loaded_.model->config().cond_dim);
      if (!r_.alphas.empty()) w.create_float("alpha", 1);
      if (labelled()) w.create_int64("label");
      for (int64_t row0 = 0; row0 < rows_;) {
        if (stop_requested())
          throw Error("translation stopped by signal " + std::to_string(stop_signal()) + " after " +
                          std::to_string(row0) + " of " + std::to_string(rows_) + " rows; nothing was written to '" +
                          r_.out + "' (the same seed gives the same rows again)",
                      kExitFailure);
        const int64_t n =
            whole_ ? std::min(batch_rows_, rows_ - row0) : std::min(batch_rows_, per_cond_ - row0 % per_cond_);
        translate_batch(w, row0, n);
        row0 += n;
        progress.update(row0);
      }
      progress.finish();
      w.set_attribute("checkpoint", loaded_.path);
      w.set_attribute("mode", r_.mode);
      w.set_attribute("samples", per_cond_);
      w.set_attribute("temperature", r_.temperature);
      w.set_attribute("seed", static_cast<int64_t>(r_.seed));
      if (!decoder_spec_.empty()) w.set_attribute("decoder", decoder_spec_);
    });
  }

  // Rows [row0, row0 + n): their conditions, residuals (drawn or the exemplars'), the inverse,
  // the decoded images, the diversity and the grid's cells.
  void translate_batch(io::EmbeddingWriter& w, int64_t row0, int64_t n) {
    const auto row_index = torch::arange(row0, row0 + n, torch::kLong);
    const auto cond_of_row = torch::div(row_index, per_cond_, "floor"), sample_of_row = row_index.remainder(per_cond_);
    const int64_t first_cond = row0 / per_cond_, last_cond = (row0 + n - 1) / per_cond_;
    auto c = cond_.rows(first_cond, last_cond + 1).index_select(0, cond_of_row - first_cond).to(device_);
    Tensor v, alpha_of_row;
    // Transfer: sample s of a condition is exemplar s / strengths at strength s % strengths.
    const int64_t strengths = static_cast<int64_t>(alphas_.size());
    const auto exemplar_of_row = torch::div(sample_of_row, strengths, "floor");
    if (r_.mode == "transfer") {
      v = exemplar_v_.index_select(0, exemplar_of_row.to(device_));
      if (cond_.edit_mask.defined()) {  // the exemplar's own condition, edited
        const auto k = cond_of_row.to(device_);
        const auto mask = cond_.edit_mask.to(device_).index_select(0, k), value = cond_.edit_value.to(device_).index_select(0, k);
        c = exemplar_c_.index_select(0, exemplar_of_row.to(device_)) * (1 - mask) + value * mask;
      }
      if (!r_.alphas.empty()) {
        alpha_of_row = torch::tensor(alphas_, torch::kFloat64).index_select(0, sample_of_row.remainder(strengths))
                           .to(torch::kFloat32).unsqueeze(1);
        const auto a = alpha_of_row.to(device_);
        c = (1 - a) * exemplar_c_.index_select(0, exemplar_of_row.to(device_)) + a * c;
      }
    } else {
      v = at::randn({n, loaded_.model->config().in_dim}, gen_, torch::kFloat32).to(device_) * r_.temperature;
    }
    auto z = loaded_.model->inverse(v, c).to(torch::kCPU).contiguous();
    w.append_float("z", z.data_ptr<float>(), z.size(0));
    std::vector<int64_t> ci(cond_of_row.data_ptr<int64_t>(), cond_of_row.data_ptr<int64_t>() + n),
        ei(exemplar_of_row.data_ptr<int64_t>(), exemplar_of_row.data_ptr<int64_t>() + n), lab;
    if (cond_.labelled)
      for (int64_t k : ci) lab.push_back(cond_.labels[k]);
    else if (!exemplar_labels_.empty())
      for (int64_t x : ei) lab.push_back(exemplar_labels_[x]);
    w.append_int64("cond_index", ci.data(), ci.size());
    if (r_.mode == "transfer") w.append_int64("exemplar_index", ei.data(), ei.size());
    if (writes_cond()) {
      const auto cc = c.to(torch::kCPU, torch::kFloat32).contiguous();
      w.append_float("cond", cc.data_ptr<float>(), n);
    }
    if (alpha_of_row.defined()) w.append_float("alpha", alpha_of_row.contiguous().data_ptr<float>(), n);
    if (labelled()) w.append_int64("label", lab.data(), lab.size());
    // Diversity: every condition of a whole batch, or a condition's first slice.
    const bool measure = diversity_ && (whole_ || row0 % per_cond_ == 0);
    const int64_t measured_conds = whole_ ? n / per_cond_ : 1, measured_k = whole_ ? per_cond_ : n;
    if (measure) diversity_z_.add(z, measured_conds, measured_k);
    if (!decoder_) return;
    auto img = decoder_->decode(z).to(torch::kCPU, torch::kFloat32).contiguous();
    if (!image_created_) {
      img_shape_.assign(img.sizes().begin() + 1, img.sizes().end());
      w.create_float("image", img[0].numel(), img_shape_);
      image_created_ = true;
    }
    auto flat = img.reshape({img.size(0), -1}).contiguous();
    w.append_float("image", flat.data_ptr<float>(), flat.size(0));
    if (measure) diversity_pixels_.add(img, measured_conds, measured_k);
    if (!r_.png.empty()) {  // the grid's cells: the first grid_cols samples of the first grid rows
      // (with strengths: a row per (condition, exemplar), a column per strength)
      auto drawn = strips()
                       ? (cond_of_row * (per_cond_ / strengths) + exemplar_of_row < r_.max_rows_in_png).nonzero().squeeze(1)
                       : ((sample_of_row < grid_cols_) & (cond_of_row < r_.max_rows_in_png)).nonzero().squeeze(1);
      if (drawn.numel() > 0) img_all_.push_back(img.index_select(0, drawn));
    }
  }

  // The summary (and the diversity), then the PNG grid when asked.
  json finish() {
    json summary = {{"out", r_.out}, {"rows", rows_}, {"conditions", cond_.count}, {"per_condition", per_cond_},
                    {"mode", r_.mode}, {"temperature", r_.temperature}, {"seed", r_.seed}};
    if (diversity_) {
      summary["diversity_z"] = diversity_z_.mean();
      if (decoder_) summary["diversity_pixels"] = diversity_pixels_.mean();
    }
    if (!r_.alphas.empty()) summary["alphas"] = alphas_;
    if (!r_.png.empty() && strips()) {
      write_strips();
      summary["png"] = r_.png;
    } else if (!r_.png.empty()) {
      auto images = torch::cat(img_all_);
      int64_t grid_rows = std::min<int64_t>(images.size(0) / grid_cols_, r_.max_rows_in_png);
      std::vector<std::string> labels;
      for (int64_t k = 0; k < grid_rows; ++k) labels.push_back(cond_.caption(k));
      Tensor grid_images = images.narrow(0, 0, grid_rows * grid_cols_);
      int64_t grid_total_rows = grid_rows;
      if (r_.mode == "transfer") {
        // First row: the exemplars themselves (decoded), then one row per target condition.
        auto ex = decoder_->decode(exemplar_z_.narrow(0, 0, grid_cols_)).to(torch::kCPU, torch::kFloat32);
        grid_images = torch::cat({ex, grid_images});
        labels.insert(labels.begin(), "exemplars");
        grid_total_rows += 1;
      }
      int64_t grid_cols = grid_cols_;
      if (r_.png_inputs) grid_images = with_inputs(grid_images, grid_rows, grid_total_rows - grid_rows), grid_cols += 1;
      data::write_png(r_.png, data::make_grid(grid_images, grid_total_rows, grid_cols, labels));
      summary["png"] = r_.png;
    }
    spdlog::info("wrote '{}': {} rows ({} conditions x {})", r_.out, rows_, cond_.count, per_cond_);
    return summary;
  }

  // --png-inputs: each grid row starts with its condition's input item (a sketch, a mask, ...);
  // the `lead` rows above the conditions' (transfer: the exemplars) start with a blank cell.
  Tensor with_inputs(const Tensor& grid, int64_t rows, int64_t lead) {
    std::vector<int64_t> idx(rows);
    std::iota(idx.begin(), idx.end(), 0);
    auto b = cond_.source->get(idx);
    if (b.kind != data::ItemKind::Image || b.tensor.sizes().slice(1) != grid.sizes().slice(1))
      throw InputError("--png-inputs: the items of '" + cond_.source->spec() + "' are not images of the decoded shape " +
                       c10::str(grid.sizes().slice(1)));
    std::vector<Tensor> cells;
    for (int64_t k = 0; k < lead; ++k) {
      cells.push_back(torch::full_like(grid.narrow(0, 0, 1), -1.0));
      cells.push_back(grid.narrow(0, k * grid_cols_, grid_cols_));
    }
    for (int64_t k = 0; k < rows; ++k) {
      cells.push_back(b.tensor[k].unsqueeze(0).to(torch::kFloat32));
      cells.push_back(grid.narrow(0, (lead + k) * grid_cols_, grid_cols_));
    }
    return torch::cat(cells);
  }

  // Transfer writes the condition each row was rendered under (edits and strengths make it new).
  bool writes_cond() const { return r_.mode == "transfer" && loaded_.model->config().cond_dim > 0; }
  // Rows have classes: the conditions' (labels, a labelled source), or edited exemplars' own.
  bool labelled() const { return cond_.labelled || !exemplar_labels_.empty(); }

  // Edit strengths drawn as strips: per (target condition, exemplar), the exemplar, then its
  // image at each strength.
  bool strips() const { return !r_.alphas.empty(); }
  void write_strips() {
    const int64_t strengths = static_cast<int64_t>(alphas_.size()), exemplars = per_cond_ / strengths;
    auto images = torch::cat(img_all_);
    const int64_t rows = images.size(0) / strengths;
    auto ex = decoder_->decode(exemplar_z_).to(torch::kCPU, torch::kFloat32);
    std::vector<Tensor> cells;
    std::vector<std::string> labels;
    for (int64_t row = 0; row < rows; ++row) {
      cells.push_back(ex[row % exemplars].unsqueeze(0));
      cells.push_back(images.narrow(0, row * strengths, strengths));
      labels.push_back(cond_.caption(row / exemplars) + " / exemplar " + std::to_string(row % exemplars));
    }
    std::string header = "exemplar";
    for (double a : alphas_) header += fmt::format(" | {:g}", a);
    spdlog::info("strips: a row per (target condition, exemplar); columns: {}", header);
    data::write_png(r_.png, data::make_grid(torch::cat(cells), rows, strengths + 1, labels));
  }

  const TranslateRequest& r_;
  at::Generator gen_;
  std::vector<double> alphas_{1.0};
  io::LoadedFlow loaded_;
  torch::Device device_{torch::kCPU};
  Conditions cond_;
  int64_t per_cond_ = 1, rows_ = 0, grid_cols_ = 1, batch_rows_ = 1;
  bool whole_ = true, diversity_ = false;
  Tensor exemplar_v_, exemplar_z_, exemplar_c_;
  std::vector<int64_t> exemplar_labels_;  // --edit: the exemplars' classes (when their cache has /label)
  std::unique_ptr<experts::Expert> decoder_;
  std::string decoder_spec_;
  Diversity diversity_z_, diversity_pixels_;
  std::vector<Tensor> img_all_;         // the grid's cells, condition-major
  std::vector<int64_t> img_shape_;      // of a decoded item
  bool image_created_ = false;
};

}  // namespace

json run_translate(const TranslateRequest& r) { return Translation(r).run(); }

}  // namespace net2net::translate
