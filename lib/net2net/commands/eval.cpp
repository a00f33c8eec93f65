// net2net-eval: fid, nll and energy subcommands.
// This stage declares the contract's options; the metrics land with issues 4 and 5.
#include "net2net/commands/commands.h"
#include "net2net/core/error.h"
#include "net2net/train/trainer.h"

#include <iostream>

namespace net2net::commands {
namespace {

class EvalTool : public cli::Tool {
 public:
  std::string name() const override { return "net2net-eval"; }
  std::string description() const override {
    return "Score generated content and report a run's cost.\n\n"
           "Examples:\n"
           "  net2net-eval fid --real h5:real.h5:feat --fake h5:fake.h5:feat --features identity\n"
           "  net2net-eval nll --checkpoint runs/l2ae --data cache/test.h5\n"
           "  net2net-eval energy --run runs/l2ae --power-profile titanx --format md";
  }
  void add_options(CLI::App& app) override {
    app.require_subcommand(1);
    auto* fid = app.add_subcommand("fid", "Frechet distance between real and generated features");
    fid->add_option("--real", real_, "h5:FILE:DATASET, images:DIR or stats:FILE")->required();
    fid->add_option("--fake", fake_, "h5:FILE:DATASET, images:DIR or stats:FILE")->required();
    fid->add_option("--features", features_, "Feature EXPERT (ts:FILE for Inception pool3; identity)");
    fid->add_option("--save-stats", save_stats_, "Save the statistics of --fake for reuse");
    auto* nll = app.add_subcommand("nll", "Negative log-likelihood of a trained cINN on a cache; prints JSON:\n"
                                          "nll (mean 0.5|v|^2 - log|det J|, no constant), nll_term, nlogdet, bits_per_dim");
    nll->add_option("--checkpoint", checkpoint_, "Run directory or checkpoint file")->required();
    nll->add_option("--data", data_, "Embedding cache (.h5)")->required();
    auto* energy = app.add_subcommand("energy", "Energy, cost and CO2 of a training run (paper-table style)");
    energy->add_option("--run", run_, "Run directory")->required();
    energy->add_option("--power-profile", profile_, "Named hardware power profile");
    energy->add_option("--power-watts", watts_, "Nominal power in watts")->check(CLI::PositiveNumber);
    energy->add_option("--price-per-kwh", price_, "Price per kWh (default 0.216 EUR)")->check(CLI::NonNegativeNumber);
    energy->add_option("--co2-per-kwh", co2_, "kg CO2 per kWh (default 0.296)")->check(CLI::NonNegativeNumber);
    energy->add_option("--pue", pue_, "Power usage effectiveness multiplier")->check(CLI::Range(1.0, 10.0));
    energy->add_option("--format", format_, "md, json or csv")->check(CLI::IsMember({"md", "json", "csv"}));
    subcommands_ = {fid, nll, energy};
  }
  int run(const cli::GlobalOptions& g) override {
    if (subcommands_[1]->parsed()) {
      auto r = train::evaluate_nll(checkpoint_, data_, g.device);
      std::cout << r.dump() << std::endl;
      return 0;
    }
    for (auto* sub : subcommands_)
      if (sub->parsed())
        throw NotImplemented("net2net-eval " + sub->get_name() + " is not built yet (issue " +
                             (sub->get_name() == "nll" ? "4" : "5") + ")");
    throw UsageError("net2net-eval needs a subcommand: fid, nll or energy");
  }

 private:
  std::vector<CLI::App*> subcommands_;
  std::string real_, fake_, features_ = "default", save_stats_, checkpoint_, data_, run_, profile_, format_ = "md";
  double watts_ = 0, price_ = 0.216, co2_ = 0.296, pue_ = 1.0;
};

}  // namespace

std::unique_ptr<cli::Tool> make_eval_tool() { return std::make_unique<EvalTool>(); }

}  // namespace net2net::commands
