// net2net-eval: fid (and KID), nll, and the energy / cost / CO2 report.
#include <spdlog/spdlog.h>
#include <torch/torch.h>

#include <filesystem>
#include <iostream>

#include "net2net/commands/commands.h"
#include "net2net/core/error.h"
#include "net2net/data/source.h"
#include "net2net/experts/expert.h"
#include "net2net/io/embedding_store.h"
#include "net2net/metrics/energy_report.h"

#include <map>
#include "net2net/metrics/fid.h"
#include "net2net/train/trainer.h"

namespace net2net::commands {
namespace fs = std::filesystem;
using nlohmann::json;

namespace {

// Where the Fashion-MNIST example keeps its feature network (issue 6 writes it).
const char* kExampleFeatures = "out/demo/experts/judge/expert.pt:features";

struct FidSide {
  metrics::FeatureStats stats;
  torch::Tensor features;  // undefined for stats:FILE
};

// Features of a SOURCE: vectors as they are (or through --features), images through the feature
// network; stats:FILE as saved.
FidSide load_side(const std::string& spec, const std::string& feature_spec, const std::string& device, int64_t batch) {
  FidSide side;
  if (spec.rfind("stats:", 0) == 0) {
    side.stats = metrics::load_stats(spec.substr(6));
    return side;
  }
  if (spec.rfind("h5:", 0) != 0 && spec.rfind("images:", 0) != 0)
    throw UsageError("FID source '" + spec + "' must be h5:FILE:DATASET, images:DIR or stats:FILE");
  auto source = data::open_source(spec);
  std::string features = feature_spec;
  if (features == "default") {
    if (source->kind() == data::ItemKind::Vector) {
      features = "identity";
    } else {
      std::string path = std::string(kExampleFeatures).substr(0, std::string(kExampleFeatures).rfind(':'));
      if (!fs::exists(path))
        throw UsageError("'" + spec + "' holds images: give a feature network with --features (e.g. ts:inception.pt "
                         "for Inception pool3 features; see docs/metrics.md), or run the example first, whose "
                         "feature network is the default");
      features = std::string("ts:") + kExampleFeatures;
      spdlog::warn("FID features: the example's own feature network ({}), not Inception: not comparable to published FIDs",
                   features);
    }
  }
  experts::ExpertContext ctx;
  ctx.device = torch::Device(device);
  auto expert = experts::make_expert(features, ctx);
  std::vector<torch::Tensor> parts;
  for (int64_t s = 0; s < source->size(); s += batch) {
    std::vector<int64_t> idx;
    for (int64_t i = s; i < std::min(source->size(), s + batch); ++i) idx.push_back(i);
    auto out = expert->encode(source->get(idx));
    parts.push_back(out.reshape({out.size(0), -1}).to(torch::kFloat64));
  }
  if (parts.empty()) throw InputError("FID source '" + spec + "' has no items");
  side.features = torch::cat(parts);
  side.stats = metrics::compute_stats(side.features, features);
  return side;
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
           "  net2net-eval energy --run runs/l2ae --power-profile titanx --format md --reference all";
  }
  void add_options(CLI::App& app) override {
    app.require_subcommand(1);
    auto* fid = app.add_subcommand("fid", "Frechet distance (and KID) between real and generated features; prints JSON");
    fid->add_option("--real", real_, "h5:FILE:DATASET (features or images), images:DIR or stats:FILE")->required();
    fid->add_option("--fake", fake_, "h5:FILE:DATASET (features or images), images:DIR or stats:FILE")->required();
    fid->add_option("--features", features_,
                    "Feature EXPERT: ts:FILE[:METHOD] (e.g. a TorchScript InceptionV3 for pool3 features), identity; "
                    "default: identity for vectors, the example's feature network for images");
    fid->add_option("--save-stats", save_stats_, "Save the statistics of --fake (reuse as stats:FILE)");
    fid->add_option("--save-real-stats", save_real_stats_, "Save the statistics of --real");
    fid->add_option("--kid-subsets", kid_subsets_, "KID subsets (0: no KID)")->check(cli::non_negative_number());
    fid->add_option("--kid-subset-size", kid_size_, "Rows per KID subset")->check(cli::positive_number());
    fid->add_option("--batch-size", batch_, "Images per feature-network call")->check(cli::positive_number());
    fid->add_option("--eps", eps_, "Regularisation added to singular covariances")->check(cli::positive_number());
    auto* nll = app.add_subcommand("nll", "Negative log-likelihood of a trained cINN on a cache; prints JSON:\n"
                                          "nll (mean 0.5|v|^2 - log|det J|, no constant), nll_term, nlogdet, bits_per_dim");
    nll->add_option("--checkpoint", checkpoint_, "Run directory or checkpoint file")->required();
    nll->add_option("--data", data_, "Embedding cache (.h5) with the config's condition and target datasets")->required();
    auto* energy = app.add_subcommand("energy", "Energy, cost and CO2 of training runs, paper-table style");
    energy->add_option("--run", energy_.runs, "Run directory (repeatable)")->required();
    energy->add_option("--power-profile", profile_, "Nominal power of a named profile (data/power_profiles.json: titanx, dgx1, ...)");
    energy->add_option("--power-watts", watts_, "Nominal power in watts")->check(cli::positive_number());
    energy->add_option("--price-per-kwh", energy_.price_per_kwh, "Price per kWh (default 0.216, the paper's EU average)")
        ->check(cli::non_negative_number());
    energy->add_option("--co2-per-kwh", energy_.co2_per_kwh, "kg CO2 per kWh (default 0.296, the paper's EU average)")
        ->check(cli::non_negative_number());
    energy->add_option("--pue", energy_.pue, "Power usage effectiveness of the data centre (default 1.0)")->check(CLI::Range(1.0, 10.0));
    energy->add_option("--currency", energy_.currency, "Currency label of the price (default EUR)");
    energy->add_option("--profiles", energy_.profile_files, "Extra power profiles (JSON {name: {watts, description}})");
    energy->add_option("--reference", energy_.references, "Add published reference entries (model name, or all)");
    energy->add_option("--reference-file", energy_.reference_file, "Reference entries (default data/reference_costs.json)");
    energy->add_option("--format", format_, "md, json or csv (CodeCarbon's columns)")->check(CLI::IsMember({"md", "json", "csv"}));
    auto* acc = app.add_subcommand("accuracy", "Share of images that a classifier assigns to the expected class; prints JSON");
    acc->add_option("--data", acc_data_, "Images: h5:FILE:DATASET or images:DIR")->required();
    acc->add_option("--classifier", acc_classifier_, "Classifier EXPERT returning logits (e.g. ts:judge.pt:forward)")->required();
    acc->add_option("--labels", acc_labels_, "Expected classes: h5:FILE:DATASET (integers, one per image)")->required();
    acc->add_option("--props", acc_props_, "Property codes of the images: h5:FILE:DATASET (e.g. from the caption-props expert)");
    acc->add_option("--expected-props", acc_expected_props_,
                    "Requested property codes, h5:FILE:DATASET: an image counts only if its class is right and every "
                    "requested (non-zero) property matches");
    subcommands_ = {fid, nll, energy, acc};
  }
  int run(const cli::GlobalOptions& g) override {
    if (subcommands_[0]->parsed()) return run_fid(g);
    if (subcommands_[1]->parsed()) {
      std::cout << train::evaluate_nll(checkpoint_, data_, g.device).dump() << std::endl;
      return 0;
    }
    if (subcommands_[2]->parsed()) {
      if (!profile_.empty()) energy_.profile = profile_;
      if (watts_ > 0) energy_.watts = watts_;
      if (energy_.profile && energy_.watts) throw UsageError("give --power-profile or --power-watts, not both");
      auto rows = metrics::energy_report(energy_);
      if (format_ == "json" || g.json) std::cout << metrics::to_json(rows, energy_).dump(2) << std::endl;
      else if (format_ == "csv") std::cout << metrics::to_codecarbon_csv(rows, energy_);
      else std::cout << metrics::to_markdown(rows, energy_);
      return 0;
    }
    if (subcommands_[3]->parsed()) return run_accuracy(g);
    throw UsageError("net2net-eval needs a subcommand: fid, nll, energy or accuracy");
  }

 private:
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

  int run_accuracy(const cli::GlobalOptions& g) {
    auto source = data::open_source(acc_data_);
    if (acc_labels_.rfind("h5:", 0) != 0) throw UsageError("--labels must be h5:FILE:DATASET");
    auto last = acc_labels_.rfind(':');
    io::EmbeddingReader reader(acc_labels_.substr(3, last - 3), /*aligned=*/false);
    const auto info = reader.info(acc_labels_.substr(last + 1));
    if (!info.is_integer || info.cols != 1)
      throw InputError("--labels '" + acc_labels_ + "' must hold one integer class per row; it holds " +
                       (info.is_integer ? "integers" : "floats") + ", " + std::to_string(info.cols) +
                       " per row (a one-hot code? use the integer labels, e.g. the cache's /label)");
    auto expected = reader.read_int64(acc_labels_.substr(last + 1));
    if (static_cast<int64_t>(expected.size()) != source->size())
      throw InputError("--labels has " + std::to_string(expected.size()) + " rows, --data " + std::to_string(source->size()));
    experts::ExpertContext ctx;
    ctx.device = torch::Device(g.device);
    auto clf = experts::make_expert(acc_classifier_, ctx);
    int64_t correct = 0;
    std::map<int64_t, std::pair<int64_t, int64_t>> per_class;  // label -> (correct, total)
    for (int64_t s = 0; s < source->size(); s += batch_) {
      std::vector<int64_t> idx;
      for (int64_t i = s; i < std::min(source->size(), s + batch_); ++i) idx.push_back(i);
      auto pred = clf->encode(source->get(idx)).argmax(1);
      for (size_t k = 0; k < idx.size(); ++k) {
        bool ok = pred[k].item<int64_t>() == expected[idx[k]];
        correct += ok;
        correct_rows_.push_back(ok);
        auto& pc = per_class[expected[idx[k]]];
        pc.first += ok, pc.second += 1;
      }
    }
    json result_props = nullptr;
    if (!acc_props_.empty() || !acc_expected_props_.empty()) {
      if (acc_props_.empty() || acc_expected_props_.empty()) throw UsageError("--props and --expected-props go together");
      auto read = [](const std::string& spec) {
        if (spec.rfind("h5:", 0) != 0) throw UsageError("'" + spec + "' must be h5:FILE:DATASET");
        auto colon = spec.rfind(':');
        io::EmbeddingReader r(spec.substr(3, colon - 3), /*aligned=*/false);
        auto info = r.info(spec.substr(colon + 1));
        return std::make_pair(r.read_rows(spec.substr(colon + 1), 0, info.rows), info);
      };
      auto [got, gi] = read(acc_props_);
      auto [want, wi] = read(acc_expected_props_);
      if (gi.cols != wi.cols || gi.rows < source->size() || wi.rows < source->size())
        throw InputError("--props and --expected-props must have the same width and a row per image");
      int64_t both = 0, asked = 0, matched = 0;
      for (int64_t i = 0; i < source->size(); ++i) {
        bool ok = true;
        for (int64_t j = 0; j < gi.cols; ++j) {
          float w = want[i * wi.cols + j];
          if (w == 0) continue;
          ++asked;
          bool m = got[i * gi.cols + j] == w;
          matched += m;
          ok = ok && m;
        }
        both += ok && correct_rows_[i];
      }
      result_props = {{"accuracy_with_properties", double(both) / source->size()},
                      {"property_agreement", asked ? double(matched) / asked : 1.0}, {"properties_requested", asked}};
    }
    json pcs = json::object();
    for (const auto& [label, pc] : per_class) pcs[std::to_string(label)] = double(pc.first) / pc.second;
    json out = {{"accuracy", source->size() ? double(correct) / source->size() : 0.0}, {"n", source->size()},
                {"per_class", pcs}, {"classifier", acc_classifier_}};
    if (!result_props.is_null()) out.update(result_props);
    std::cout << out.dump() << std::endl;
    return 0;
  }

  std::string acc_data_, acc_classifier_, acc_labels_, acc_props_, acc_expected_props_;
  std::vector<bool> correct_rows_;
  std::vector<CLI::App*> subcommands_;
  std::string real_, fake_, features_ = "default", save_stats_, save_real_stats_, checkpoint_, data_, profile_, format_ = "md";
  int kid_subsets_ = 100;
  int64_t kid_size_ = 1000, batch_ = 250;
  double eps_ = 1e-6, watts_ = 0;
  metrics::EnergyOptions energy_;
};

}  // namespace

std::unique_ptr<cli::Tool> make_eval_tool() { return std::make_unique<EvalTool>(); }

}  // namespace net2net::commands
