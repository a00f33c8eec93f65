// net2net-eval: fid (and KID), nll, the energy / cost / CO2 report, and accuracy. Each subcommand
// is one entry of a table (name, description, options, run); the metrics live in metrics/.
#include <spdlog/spdlog.h>
#include <torch/torch.h>

#include <filesystem>
#include <iostream>
#include <utility>

#include "net2net/commands/commands.h"
#include "net2net/core/error.h"
#include "net2net/data/h5_spec.h"
#include "net2net/data/source.h"
#include "net2net/example/paths.h"
#include "net2net/experts/expert.h"
#include "net2net/io/embedding_store.h"
#include "net2net/metrics/accuracy.h"
#include "net2net/metrics/energy_report.h"
#include "net2net/metrics/fid.h"
#include "net2net/metrics/masks.h"
#include "net2net/train/trainer.h"

namespace net2net::commands {
namespace fs = std::filesystem;
using nlohmann::json;

namespace {

struct FidSide {
  metrics::FeatureStats stats;
  torch::Tensor features;  // undefined for stats:FILE
};

// --features default for images: the Fashion-MNIST example's feature network, when the example
// has written it (example/paths.h names where).
std::string example_feature_expert(const std::string& spec) {
  const std::string features = example::kJudgeFeatures;
  const std::string path = features.substr(0, features.rfind(':'));
  if (!fs::exists(path))
    throw UsageError("'" + spec + "' holds images: give a feature network with --features (e.g. ts:inception.pt "
                     "for Inception pool3 features; see docs/metrics.md), or run the example first, whose "
                     "feature network is the default");
  std::string expert = "ts:" + features;
  spdlog::warn("FID features: the example's own feature network ({}), not Inception: not comparable to published FIDs",
               expert);
  return expert;
}

// Features of a SOURCE: vectors as they are (or through --features), images through the feature
// network; stats:FILE as saved.
FidSide load_side(const std::string& spec, const std::string& feature_spec, const std::string& device, int64_t batch) {
  FidSide side;
  if (spec.rfind("stats:", 0) == 0) {
    side.stats = metrics::load_stats(spec.substr(6));
    return side;
  }
  if (!data::is_h5_spec(spec) && spec.rfind("images:", 0) != 0)
    throw UsageError("FID source '" + spec + "' must be h5:FILE:DATASET, images:DIR or stats:FILE");
  auto source = data::open_source(spec);
  std::string features = feature_spec;
  if (features == "default")
    features = source->kind() == data::ItemKind::Vector ? "identity" : example_feature_expert(spec);
  experts::ExpertContext ctx;
  ctx.device = torch::Device(device);
  auto expert = experts::make_expert(features, ctx);
  std::vector<torch::Tensor> parts;
  metrics::encode_in_batches(*source, *expert, batch, [&](const data::Batch&, const torch::Tensor& out) {
    parts.push_back(out.reshape({out.size(0), -1}).to(torch::kFloat64));
  });
  if (parts.empty()) throw InputError("FID source '" + spec + "' has no items");
  side.features = torch::cat(parts);
  // Named here, not as LAPACK's "eigh failed to converge" later (an h5 source names its rows itself).
  const auto bad = torch::isfinite(side.features).all(1).logical_not().nonzero().flatten();
  if (bad.numel() > 0)
    throw InputError("FID source '" + spec + "': the features (through " + features + ") of " +
                     std::to_string(bad.numel()) + " item(s) hold NaN or Inf, first item " +
                     std::to_string(bad[0].item<int64_t>()) + " (counting from 0)");
  side.stats = metrics::compute_stats(side.features, features);
  return side;
}

// --labels: one integer class per row of an h5:FILE:DATASET.
std::vector<int64_t> read_labels(const std::string& spec) {
  const auto h5 = data::parse_h5_spec(spec, "--labels");
  io::EmbeddingReader reader(h5.file, /*aligned=*/false);
  const auto info = reader.info(h5.dataset);
  if (!info.is_integer || info.cols != 1)
    throw InputError("--labels '" + spec + "' must hold one integer class per row; it holds " +
                     (info.is_integer ? "integers" : "floats") + ", " + std::to_string(info.cols) +
                     " per row (a one-hot code? use the integer labels, e.g. the cache's /label)");
  return reader.read_int64(h5.dataset);
}

// --props / --expected-props (property codes), iou's --pred / --target (masks): the rows of an
// h5:FILE:DATASET as floats, refused naming the option and file when any is NaN or Inf.
metrics::PropertyCodes read_float_rows(const std::string& spec, const std::string& option) {
  const auto h5 = data::parse_h5_spec(spec, option);
  io::EmbeddingReader reader(h5.file, /*aligned=*/false);
  const auto info = reader.info(h5.dataset);
  metrics::PropertyCodes codes;
  codes.values = reader.read_rows(h5.dataset, 0, info.rows);
  io::require_finite_rows(codes.values.data(), info.rows, info.cols, option + " '" + spec + "'");
  codes.rows = info.rows;
  codes.cols = info.cols;
  return codes;
}

class EvalTool : public cli::Tool {
 public:
  std::string name() const override { return "net2net-eval"; }
  std::string description() const override {
    return "Score generated content and report a run's cost.\n\n"
           "Examples:\n"
           "  net2net-eval fid --real h5:real.h5:feat --fake h5:fake.h5:feat           # features given\n"
           "  net2net-eval fid --real images:real/ --fake images:fake/ --features ts:inception.pt\n"
           "  net2net-eval fid --real stats:real_stats.h5 --fake h5:fake.h5:img --save-stats fake_stats.h5\n"
           "  net2net-eval nll --checkpoint runs/l2ae --data cache/test.h5\n"
           "  net2net-eval energy --run runs/l2ae --power-profile titanx --format md --reference all\n"
           "  net2net-eval accuracy --data h5:s.h5:image --classifier ts:judge.pt:forward --labels h5:s.h5:label\n"
           "  net2net-eval iou --pred h5:gen_masks.h5:m --target h5:given.h5:m     # layout agreement";
  }
  void add_options(CLI::App& app) override {
    app.require_subcommand(1);
    for (const auto& s : subcommands()) {
      auto* sub = app.add_subcommand(s.name, s.description);
      (this->*s.add_options)(*sub);
      sub->callback([this, run = s.run] { chosen_ = run; });
    }
  }
  int run(const cli::GlobalOptions& g) override {
    if (chosen_) return (this->*chosen_)(g);
    std::string names;
    const auto& table = subcommands();
    for (size_t i = 0; i < table.size(); ++i)
      names += (i == 0 ? "" : i + 1 == table.size() ? " or " : ", ") + std::string(table[i].name);
    throw UsageError("net2net-eval needs a subcommand: " + names);
  }

 private:
  using RunFn = int (EvalTool::*)(const cli::GlobalOptions&);
  struct Subcommand {
    const char* name;
    const char* description;
    void (EvalTool::*add_options)(CLI::App&);
    RunFn run;
  };
  // In --help order.
  static const std::vector<Subcommand>& subcommands() {
    static const std::vector<Subcommand> table = {
        {"fid", "Frechet distance (and KID) between real and generated features; prints JSON", &EvalTool::add_fid_options,
         &EvalTool::run_fid},
        {"nll",
         "Negative log-likelihood of a trained cINN on a cache; prints JSON:\n"
         "nll (mean 0.5|v|^2 - log|det J|, no constant), nll_term, nlogdet, bits_per_dim",
         &EvalTool::add_nll_options, &EvalTool::run_nll},
        {"energy", "Energy, cost and CO2 of training runs, paper-table style", &EvalTool::add_energy_options,
         &EvalTool::run_energy},
        {"accuracy", "Share of images that a classifier assigns to the expected class; prints JSON",
         &EvalTool::add_accuracy_options, &EvalTool::run_accuracy},
        {"iou",
         "Agreement of masks with target masks (e.g. the silhouettes of images generated from segmentation masks);\n"
         "prints JSON: iou (mean intersection over union), pixel_agreement",
         &EvalTool::add_iou_options, &EvalTool::run_iou},
    };
    return table;
  }

  // ------------------------------------------------------------------ fid
  void add_fid_options(CLI::App& fid) {
    fid.add_option("--real", real_, "h5:FILE:DATASET (features or images), images:DIR or stats:FILE")->required();
    fid.add_option("--fake", fake_, "h5:FILE:DATASET (features or images), images:DIR or stats:FILE")->required();
    fid.add_option("--features", features_,
                   "Feature EXPERT: ts:FILE[:METHOD] (e.g. a TorchScript InceptionV3 for pool3 features), identity; "
                   "default: identity for vectors, the example's feature network for images");
    fid.add_option("--save-stats", save_stats_, "Save the statistics of --fake (reuse as stats:FILE)");
    fid.add_option("--save-real-stats", save_real_stats_, "Save the statistics of --real");
    fid.add_option("--kid-subsets", kid_subsets_, "KID subsets (0: no KID)")->check(cli::non_negative_number());
    fid.add_option("--kid-subset-size", kid_size_, "Rows per KID subset")->check(cli::positive_number());
    fid.add_option("--batch-size", batch_, "Images per feature-network call")->check(cli::positive_number());
    fid.add_option("--eps", eps_, "Regularisation added to singular covariances")->check(cli::positive_number());
  }
  int run_fid(const cli::GlobalOptions& g) {
    auto real = load_side(real_, features_, g.device, batch_);
    auto fake = load_side(fake_, features_, g.device, batch_);
    if (!save_stats_.empty()) metrics::save_stats(save_stats_, fake.stats);
    if (!save_real_stats_.empty()) metrics::save_stats(save_real_stats_, real.stats);
    auto r = metrics::frechet_distance(real.stats, fake.stats, eps_);
    json out = {{"fid", r.fid},
                {"mean_term", r.mean_term},
                {"trace_term", r.trace_term},
                {"clamped_eigenvalues", r.clamped_eigenvalues},
                {"eps", r.eps},
                {"n_real", real.stats.n},
                {"n_fake", fake.stats.n},
                {"dims", real.stats.mu.size(0)},
                {"features", real.stats.features.empty() ? fake.stats.features : real.stats.features}};
    if (kid_subsets_ > 0 && real.features.defined() && fake.features.defined()) {
      auto k = metrics::kernel_inception_distance(real.features, fake.features, kid_subsets_, kid_size_, g.seed);
      out["kid"] = {{"mean", k.mean}, {"std", k.std}, {"subsets", k.subsets}, {"subset_size", k.subset_size}};
    }
    std::cout << out.dump() << std::endl;
    return 0;
  }

  // ------------------------------------------------------------------ nll
  void add_nll_options(CLI::App& nll) {
    nll.add_option("--checkpoint", checkpoint_, "Run directory or checkpoint file")->required();
    nll.add_option("--data", data_, "Embedding cache (.h5) with the config's condition and target datasets")->required();
  }
  int run_nll(const cli::GlobalOptions& g) {
    std::cout << train::evaluate_nll(checkpoint_, data_, g.device).dump() << std::endl;
    return 0;
  }

  // ------------------------------------------------------------------ energy
  void add_energy_options(CLI::App& energy) {
    energy.add_option("--run", energy_.runs, "Run directory (repeatable)")->required();
    energy.add_option("--power-profile", profile_, "Nominal power of a named profile (data/power_profiles.json: titanx, dgx1, ...)");
    energy.add_option("--power-watts", watts_, "Nominal power in watts")->check(cli::positive_number());
    energy.add_option("--price-per-kwh", energy_.price_per_kwh, "Price per kWh (default 0.216, the paper's EU average)")
        ->check(cli::non_negative_number());
    energy.add_option("--co2-per-kwh", energy_.co2_per_kwh, "kg CO2 per kWh (default 0.296, the paper's EU average)")
        ->check(cli::non_negative_number());
    energy.add_option("--pue", energy_.pue, "Power usage effectiveness of the data centre (default 1.0)")->check(CLI::Range(1.0, 10.0));
    energy.add_option("--currency", energy_.currency, "Currency label of the price (default EUR)");
    energy.add_option("--profiles", energy_.profile_files, "Extra power profiles (JSON {name: {watts, description}})");
    energy.add_option("--reference", energy_.references, "Add published reference entries (model name, or all)");
    energy.add_option("--reference-file", energy_.reference_file, "Reference entries (default data/reference_costs.json)");
    energy.add_option("--format", format_, "md, json or csv (CodeCarbon's columns)")->check(CLI::IsMember({"md", "json", "csv"}));
  }
  int run_energy(const cli::GlobalOptions& g) {
    if (!profile_.empty()) energy_.profile = profile_;
    if (watts_ > 0) energy_.watts = watts_;
    if (energy_.profile && energy_.watts) throw UsageError("give --power-profile or --power-watts, not both");
    auto rows = metrics::energy_report(energy_);
    if (format_ == "json" || g.json) std::cout << metrics::to_json(rows, energy_).dump(2) << std::endl;
    else if (format_ == "csv") std::cout << metrics::to_codecarbon_csv(rows, energy_);
    else std::cout << metrics::to_markdown(rows, energy_);
    return 0;
  }

  // ------------------------------------------------------------------ accuracy
  void add_accuracy_options(CLI::App& acc) {
    acc.add_option("--data", acc_data_, "Images: h5:FILE:DATASET or images:DIR")->required();
    acc.add_option("--classifier", acc_classifier_, "Classifier EXPERT returning logits (e.g. ts:judge.pt:forward)")->required();
    acc.add_option("--labels", acc_labels_, "Expected classes: h5:FILE:DATASET (integers, one per image)")->required();
    acc.add_option("--props", acc_props_, "Property codes of the images: h5:FILE:DATASET (e.g. from the caption-props expert)");
    acc.add_option("--expected-props", acc_expected_props_,
                   "Requested property codes, h5:FILE:DATASET: an image counts only if its class is right and every "
                   "requested (non-zero) property matches");
  }
  int run_accuracy(const cli::GlobalOptions& g) {
    auto source = data::open_source(acc_data_);
    const auto expected = read_labels(acc_labels_);
    if (static_cast<int64_t>(expected.size()) != source->size())
      throw InputError("--labels has " + std::to_string(expected.size()) + " rows, --data " + std::to_string(source->size()));
    const bool with_props = !acc_props_.empty() || !acc_expected_props_.empty();
    metrics::PropertyCodes codes, requested;
    if (with_props) {
      if (acc_props_.empty() || acc_expected_props_.empty()) throw UsageError("--props and --expected-props go together");
      codes = read_float_rows(acc_props_, "--props");
      requested = read_float_rows(acc_expected_props_, "--expected-props");
      if (codes.cols != requested.cols || codes.rows < source->size() || requested.rows < source->size())
        throw InputError("--props and --expected-props must have the same width and a row per image");
    }
    experts::ExpertContext ctx;
    ctx.device = torch::Device(g.device);
    auto classifier = experts::make_expert(acc_classifier_, ctx);
    const auto predicted = metrics::predict_classes(*source, *classifier, batch_);
    const auto result = with_props ? metrics::classification_accuracy(predicted, expected, codes, requested)
                                   : metrics::classification_accuracy(predicted, expected);
    std::cout << metrics::to_json(result, acc_classifier_).dump() << std::endl;
    return 0;
  }

  // ------------------------------------------------------------------ iou
  void add_iou_options(CLI::App& iou) {
    iou.add_option("--pred", iou_pred_,
                   "Masks to score, h5:FILE:DATASET (e.g. silhouette:hard of generated images); K rows per target row "
                   "(a condition's K samples) are scored against it")
        ->required();
    iou.add_option("--target", iou_target_, "The requested masks, h5:FILE:DATASET, as wide as --pred")->required();
    iou.add_option("--threshold", iou_threshold_, "A cell is on when its value exceeds this")->capture_default_str();
  }
  int run_iou(const cli::GlobalOptions&) {
    const auto pred = read_float_rows(iou_pred_, "--pred"), target = read_float_rows(iou_target_, "--target");
    if (pred.cols != target.cols)
      throw InputError("--pred '" + iou_pred_ + "' has " + std::to_string(pred.cols) + " cells per row, --target '" +
                       iou_target_ + "' " + std::to_string(target.cols));
    const auto result = metrics::mask_agreement(pred.values, pred.rows, target.values, target.rows, target.cols, iou_threshold_);
    std::cout << metrics::to_json(result).dump() << std::endl;
    return 0;
  }

  RunFn chosen_ = nullptr;  // set by the parsed subcommand's callback
  std::string acc_data_, acc_classifier_, acc_labels_, acc_props_, acc_expected_props_;
  std::string real_, fake_, features_ = "default", save_stats_, save_real_stats_, checkpoint_, data_, profile_, format_ = "md";
  int kid_subsets_ = 100;
  int64_t kid_size_ = 1000, batch_ = 250;  // batch_: fid --batch-size, also accuracy's batches
  std::string iou_pred_, iou_target_;
  double eps_ = 1e-6, watts_ = 0, iou_threshold_ = 0.5;
  metrics::EnergyOptions energy_;
};

}  // namespace

std::unique_ptr<cli::Tool> make_eval_tool() { return std::make_unique<EvalTool>(); }

}  // namespace net2net::commands
