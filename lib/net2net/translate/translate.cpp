#include "net2net/translate/translate.h"

#include <spdlog/spdlog.h>
#include <torch/torch.h>

#include <algorithm>
#include <filesystem>

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

std::string class_caption(int64_t label, int64_t classes) {
  const auto& names = data::fashion_mnist_classes();
  if (classes == 10 && label >= 0 && label < 10) return names[label];
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
    return labelled ? c + " " + class_caption(labels[k], source->num_classes()) : c;
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
  int given = !r.cond.empty() + !r.labels.empty() + !r.texts.empty() + !r.data.empty();
  if (given != 1) throw UsageError("give the conditions one way: --cond h5:FILE:DATASET, --labels, --text, or --data with --cond-expert");
  Conditions out;
  if (!r.labels.empty()) {
    if (!cond_expert.empty() && cond_expert.rfind("label", 0) != 0)
      throw UsageError("--labels: this model's condition is '" + cond_expert + "', not one-hot labels");
    for (int64_t l : r.labels)
      if (l < 0 || l >= cond_dim) throw UsageError("--labels: " + std::to_string(l) + " is outside 0.." + std::to_string(cond_dim - 1));
    out.all = torch::one_hot(torch::tensor(r.labels, torch::kLong), cond_dim).to(torch::kFloat32);
    for (int64_t l : r.labels) out.captions.push_back(class_caption(l, cond_dim)), out.labels.push_back(l);
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

json run_translate(const TranslateRequest& r) {
  if (r.out.empty()) throw UsageError("--out is required");
  if (fs::exists(r.out) && !r.force) throw UsageError("'" + r.out + "' exists; use --force to overwrite it");
  if (r.samples < 1) throw UsageError("--samples must be >= 1");
  if (r.mode != "sample" && r.mode != "transfer") throw UsageError("--mode must be sample or transfer");
  auto loaded = io::load_flow_checkpoint(r.checkpoint);
  auto& model = loaded.model;
  const json& config = loaded.config;
  torch::Device device(r.device);
  model->to(device);
  model->eval();
  torch::NoGradGuard no_grad;
  const auto& fc = model->config();
  Conditions cond = make_conditions(r, config, fc.cond_dim);
  const int64_t cond_cols = cond.rows(0, 1).size(1);
  if (cond_cols != fc.cond_dim)
    throw InputError("the conditions have " + std::to_string(cond_cols) + " dimensions, the model expects " +
                     std::to_string(fc.cond_dim));
  const int64_t m = cond.count;

  // Exemplars (transfer): their residuals v = T(z_theta | z_phi).
  Tensor exemplar_v, exemplar_z;
  int64_t per_cond = r.samples;
  if (r.mode == "transfer") {
    if (r.exemplar.empty()) throw UsageError("--mode transfer needs --exemplar FILE.h5 (a cache with the model's datasets)");
    std::string file = r.exemplar.rfind("h5:", 0) == 0 ? r.exemplar.substr(3) : r.exemplar;
    io::EmbeddingReader reader(file);
    const std::string cname = config["data"]["condition"], tname = config["data"]["target"];
    int64_t e = std::min<int64_t>(reader.rows(), r.exemplar_limit);
    if (e < 1) throw InputError("exemplar cache '" + file + "' has no rows");
    auto ci = reader.info(cname), ti = reader.info(tname);
    auto cv = reader.read_rows(cname, 0, e), tv = reader.read_rows(tname, 0, e);
    auto ec = torch::from_blob(cv.data(), {e, ci.cols}).clone().to(device);
    exemplar_z = torch::from_blob(tv.data(), {e, ti.cols}).clone().to(device);
    exemplar_v = model->forward(exemplar_z, ec).v;
    per_cond = e;
  }

  // Decoder: --decoder, else the model's target expert when it decodes.
  std::unique_ptr<experts::Expert> decoder;
  std::string decoder_spec = r.decoder;
  // A TorchScript target expert decodes through its decode method, whatever method encoded.
  if (decoder_spec.empty() && !r.png.empty() && config["data"].value("target_expert", json()).is_string() &&
      config["data"]["target_expert"].get<std::string>().rfind("ts:", 0) == 0)
    decoder_spec = config["data"]["target_expert"].get<std::string>();
  if (!decoder_spec.empty()) {
    experts::ExpertContext ctx;
    ctx.device = device;
    try {
      decoder = experts::make_expert(decoder_spec, ctx);
    } catch (const Error& e) {
      if (!r.decoder.empty()) throw;
      // The path was recorded by net2net-train, relative to where it ran: say where it came from.
      throw Error(std::string(e.what()) + " (the model's target expert, recorded in " + r.checkpoint +
                      "; run from where it was trained or pass --decoder ts:PATH)",
                  e.exit_code());
    }
    if (!decoder->can_decode()) throw UsageError("--decoder '" + decoder_spec + "' has no decode method");
  }
  if (!r.png.empty() && !decoder) throw UsageError("--png needs a decoder: --decoder EXPERT (the model records none)");

  // Rows: condition-major, per_cond per condition.
  auto gen = at::detail::createCPUGenerator(r.seed);
  const int64_t rows = m * per_cond;
  std::vector<Tensor> img_all;  // the grid's cells, condition-major
  Diversity diversity_z, diversity_pixels;
  const bool diversity = r.mode == "sample" && r.samples > 1;
  std::vector<int64_t> img_shape;
  json summary;
  // Batches: whole conditions while a condition's samples fit in --batch-size (then the RNG
  // draws, and so the rows, are those of earlier versions), else slices of one condition's
  // samples of --batch-size rows, at least kDiversitySamples so that a condition's first slice
  // holds the samples its diversity is measured on.
  const bool whole = per_cond <= r.batch_size;
  const int64_t grid_cols = std::min(per_cond, r.max_cols_in_png);
  const int64_t batch_rows =
      whole ? std::max<int64_t>(1, r.batch_size / per_cond) * per_cond : std::max(r.batch_size, kDiversitySamples);
  // SIGINT / SIGTERM / SIGUSR1 stop between batches: the temporary output is removed and nothing
  // is left behind (a killed process would leave its temporary file; a rerun with the same seed
  // gives the same rows, so there is nothing to resume).
  StopSignals signals;
  Progress progress("translate", rows, "rows");
  io::write_store(r.out, {}, [&](io::EmbeddingWriter& w) {
    w.create_float("z", fc.in_dim);
    w.create_int64("cond_index");
    if (r.mode == "transfer") w.create_int64("exemplar_index");
    if (cond.labelled) w.create_int64("label");
    bool image_created = false;
    for (int64_t row0 = 0; row0 < rows;) {
      if (stop_requested())
        throw Error("translation stopped by signal " + std::to_string(stop_signal()) + " after " +
                        std::to_string(row0) + " of " + std::to_string(rows) + " rows; nothing was written to '" + r.out +
                        "' (the same seed gives the same rows again)",
                    kExitFailure);
      const int64_t n = whole ? std::min(batch_rows, rows - row0) : std::min(batch_rows, per_cond - row0 % per_cond);
      const auto row_index = torch::arange(row0, row0 + n, torch::kLong);
      const auto cond_of_row = torch::div(row_index, per_cond, "floor"), sample_of_row = row_index.remainder(per_cond);
      const int64_t first_cond = row0 / per_cond, last_cond = (row0 + n - 1) / per_cond;
      auto c = cond.rows(first_cond, last_cond + 1).index_select(0, cond_of_row - first_cond).to(device);
      Tensor v;
      if (r.mode == "transfer") {
        v = exemplar_v.index_select(0, sample_of_row.to(device));
      } else {
        v = at::randn({n, fc.in_dim}, gen, torch::kFloat32).to(device) * r.temperature;
      }
      auto z = model->inverse(v, c).to(torch::kCPU).contiguous();
      w.append_float("z", z.data_ptr<float>(), z.size(0));
      std::vector<int64_t> ci(cond_of_row.data_ptr<int64_t>(), cond_of_row.data_ptr<int64_t>() + n),
          ei(sample_of_row.data_ptr<int64_t>(), sample_of_row.data_ptr<int64_t>() + n), lab;
      if (cond.labelled)
        for (int64_t k : ci) lab.push_back(cond.labels[k]);
      w.append_int64("cond_index", ci.data(), ci.size());
      if (r.mode == "transfer") w.append_int64("exemplar_index", ei.data(), ei.size());
      if (cond.labelled) w.append_int64("label", lab.data(), lab.size());
      // Diversity: every condition of a whole batch, or a condition's first slice.
      const bool measure = diversity && (whole || row0 % per_cond == 0);
      const int64_t measured_conds = whole ? n / per_cond : 1, measured_k = whole ? per_cond : n;
      if (measure) diversity_z.add(z, measured_conds, measured_k);
      if (decoder) {
        auto img = decoder->decode(z).to(torch::kCPU, torch::kFloat32).contiguous();
        if (!image_created) {
          img_shape.assign(img.sizes().begin() + 1, img.sizes().end());
          w.create_float("image", img[0].numel(), img_shape);
          image_created = true;
        }
        auto flat = img.reshape({img.size(0), -1}).contiguous();
        w.append_float("image", flat.data_ptr<float>(), flat.size(0));
        if (measure) diversity_pixels.add(img, measured_conds, measured_k);
        if (!r.png.empty()) {  // the grid's cells: the first grid_cols samples of the first grid rows
          auto drawn = ((sample_of_row < grid_cols) & (cond_of_row < r.max_rows_in_png)).nonzero().squeeze(1);
          if (drawn.numel() > 0) img_all.push_back(img.index_select(0, drawn));
        }
      }
      row0 += n;
      progress.update(row0);
    }
    progress.finish();
    w.set_attribute("checkpoint", loaded.path);
    w.set_attribute("mode", r.mode);
    w.set_attribute("samples", per_cond);
    w.set_attribute("temperature", r.temperature);
    w.set_attribute("seed", static_cast<int64_t>(r.seed));
    if (!decoder_spec.empty()) w.set_attribute("decoder", decoder_spec);
  });
  summary = {{"out", r.out}, {"rows", rows}, {"conditions", m}, {"per_condition", per_cond}, {"mode", r.mode},
             {"temperature", r.temperature}, {"seed", r.seed}};
  if (diversity) {
    summary["diversity_z"] = diversity_z.mean();
    if (decoder) summary["diversity_pixels"] = diversity_pixels.mean();
  }
  if (!r.png.empty()) {
    auto images = torch::cat(img_all);
    int64_t grid_rows = std::min<int64_t>(images.size(0) / grid_cols, r.max_rows_in_png);
    std::vector<std::string> labels;
    for (int64_t k = 0; k < grid_rows; ++k) labels.push_back(cond.caption(k));
    Tensor grid_images = images.narrow(0, 0, grid_rows * grid_cols);
    int64_t grid_total_rows = grid_rows;
    if (r.mode == "transfer") {
      // First row: the exemplars themselves (decoded), then one row per target condition.
      auto ex = decoder->decode(exemplar_z.narrow(0, 0, grid_cols)).to(torch::kCPU, torch::kFloat32);
      grid_images = torch::cat({ex, grid_images});
      labels.insert(labels.begin(), "exemplars");
      grid_total_rows += 1;
    }
    data::write_png(r.png, data::make_grid(grid_images, grid_total_rows, grid_cols, labels));
    summary["png"] = r.png;
  }
  spdlog::info("wrote '{}': {} rows ({} conditions x {})", r.out, rows, m, per_cond);
  return summary;
}

}  // namespace net2net::translate
