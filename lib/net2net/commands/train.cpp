// net2net-train: trains a cINN on cached pairs (lib/net2net/train); --dry-run validates a config
// and builds the model; --list-keys prints the config key table.
#include <spdlog/spdlog.h>
#include <torch/torch.h>

#include <filesystem>
#include <iostream>

#include "net2net/commands/commands.h"
#include "net2net/config/cinn_config.h"
#include "net2net/core/error.h"
#include "net2net/inn/flow.h"
#include "net2net/train/expert_trainer.h"
#include "net2net/train/precision.h"
#include "net2net/train/trainer.h"
#include "net2net/train/warm_start.h"

namespace net2net::commands {
namespace fs = std::filesystem;
using nlohmann::json;

namespace {

class TrainTool : public cli::Tool {
 public:
  std::string name() const override { return "net2net-train"; }
  std::string description() const override {
    return "Train a conditional INN that translates one expert's representation (the condition,\n"
           "data.condition) into another's (the target, data.target) on cached pairs.\n\n"
           "Examples:\n"
           "  net2net-train --config configs/text2biggan.json --dry-run\n"
           "  net2net-train --config configs/fmnist_label2ae.json --set train.steps=2000 --run-dir runs/l2ae\n"
           "  net2net-train --list-keys          # every config key, its type and default\n"
           "  net2net-train --run-dir runs/l2ae --resume     # after an interruption (exit code 4)\n"
           "  net2net-train --config configs/fmnist_sbert2ae.json --init-from runs/text2ae --init-ignore embedder\n"
           "  torchrun-style: RANK=0 WORLD_SIZE=2 MASTER_ADDR=host MASTER_PORT=29500 net2net-train ...\n\n"
           "Writes RUN_DIR/config.json, checkpoints/last.pt and best.pt, metrics.jsonl, energy.json.\n"
           "SIGINT, SIGTERM and SIGUSR1 write last.pt and exit with code 4.";
  }
  void add_options(CLI::App& app) override {
    app.add_option("--config", config_, "cINN config (JSON); see --list-keys and docs/configs.md")
        ->check(CLI::ExistingFile);
    app.add_option("--set", sets_, "Override a config key: key.path=value (JSON value, else string); repeatable")
        ->type_name("KEY=VALUE");
    app.add_option("--run-dir", run_dir_, "Run directory (config.json, checkpoints/, metrics.jsonl)");
    app.add_flag("--resume", resume_, "Continue from RUN_DIR/checkpoints/last.pt (the checkpoint holds the config)");
    app.add_flag("--force", force_, "Start over in a run directory that already has checkpoints");
    app.add_flag("--deterministic", deterministic_,
                 "Deterministic algorithms; a run killed and resumed ends bit-identical (same --threads)");
    app.add_option("--init-from", init_from_,
                   "Warm start: take the cINN's tensors by name from this checkpoint (file or run directory); "
                   "optimizer, RNG and step start afresh (train.init_from)")
        ->type_name("CKPT");
    app.add_option("--init-ignore", init_ignore_,
                   "With --init-from: tensors to keep initialised, a name prefix (embedder) or glob (block1*); "
                   "repeatable (train.init_ignore)")
        ->type_name("PATTERN");
    app.add_option("--write-model", write_model_,
                   "With --config and --init-from: write the model with those tensors as a checkpoint FILE, no training "
                   "(the import of the original's cINNs: scripts/import_original.py)")
        ->type_name("FILE");
    app.add_flag("--dry-run", dry_run_, "Validate the config and data, build the model, print a JSON summary");
    app.add_flag("--list-keys", list_keys_, "Print every config key (markdown table) and exit");
  }
  int run(const cli::GlobalOptions& g) override {
    if (list_keys_) {
      std::cout << "## Kind `cinn`\n\n" << config::cinn_schema().markdown() << "\n## Kind `autoencoder`\n\n"
                << config::autoencoder_schema().markdown() << "\n## Kind `classifier`\n\n"
                << config::classifier_schema().markdown();
      return 0;
    }
    // --init-from / --init-ignore are the config keys train.init_from / train.init_ignore.
    if (!init_from_.empty()) {
      if (resume_) throw UsageError("--init-from starts a new run from another's weights; --resume continues this one");
      sets_.push_back("train.init_from=" + json(init_from_).dump());
    }
    if (!init_ignore_.empty()) sets_.push_back("train.init_ignore=" + json(init_ignore_).dump());
    // The example's experts (kinds autoencoder and classifier) train on images.
    if (!config_.empty()) {
      std::vector<std::string> all = sets_;
      if (g.seed_given) all.push_back("train.seed=" + std::to_string(g.seed));
      json cfg = config::load_config(config_, all);
      if (cfg["kind"] != "cinn") {
        if (dry_run_) {
          std::cout << json{{"dry_run", true}, {"config", cfg}, {"parameters", {{"total", train::expert_parameter_count(cfg)}}}}.dump(2)
                    << std::endl;
          return 0;
        }
        std::string dir = run_dir_.empty() ? "runs/" + cfg["name"].get<std::string>() : run_dir_;
        json summary = train::train_expert(cfg, dir, force_, g.device);
        if (g.json) std::cout << summary.dump() << std::endl;
        return 0;
      }
    }
    if (!write_model_.empty()) {
      if (config_.empty()) throw UsageError("--write-model needs --config");
      json summary = train::write_model(config_, sets_, g.seed_given, g.seed, write_model_);
      std::cout << summary.dump(g.json ? -1 : 2) << std::endl;
      return 0;
    }
    if (dry_run_) {
      if (config_.empty()) throw UsageError("--config is required (see net2net-train --help)");
      std::cout << train_dry_run(config_, sets_, g).dump(2) << std::endl;
      return 0;
    }
    train::TrainOptions o;
    o.config_path = config_;
    o.overrides = sets_;
    o.run_dir = run_dir_;
    o.resume = resume_;
    o.force = force_;
    o.deterministic = deterministic_;
    o.seed_given = g.seed_given;
    o.seed = g.seed;
    o.device = g.device;
    o.threads = g.threads;
    json summary = train::run_training(o);
    if (g.json) std::cout << summary.dump() << std::endl;
    return 0;
  }

 private:
  std::string config_, run_dir_, init_from_, write_model_;
  std::vector<std::string> sets_, init_ignore_;
  bool resume_ = false, force_ = false, deterministic_ = false, dry_run_ = false, list_keys_ = false;
};

}  // namespace

json train_dry_run(const std::string& config_path, const std::vector<std::string>& overrides,
                   const cli::GlobalOptions& g) {
  json data;
  json config = train::prepare_config(config_path, overrides, g.seed_given, g.seed, &data, /*require_data=*/false);
  for (const auto& [role, info] : data.items())
    if (!info["exists"].get<bool>())
      spdlog::warn("data.{} '{}' does not exist yet (create it with net2net-extract)", role, info["path"].get<std::string>());

  // The precision must suit the device (bf16 on a CPU is refused here, not after the data loads).
  train::check_precision(train::parse_precision(config["train"]["precision"].get<std::string>()), torch::Device(g.device));
  auto flow_cfg = config::flow_config_from_json(config);
  auto model = inn::build_flow(flow_cfg, config["train"]["seed"].get<uint64_t>());
  int64_t embedder = model->embedder ? inn::count_parameters(*model->embedder) : 0;
  int64_t blocks = 0;
  for (const auto& b : model->blocks()) blocks += inn::count_parameters(*b);
  int64_t total = inn::count_parameters(*model);

  return json{{"dry_run", true},
              {"config", config},
              {"parameters", {{"total", total}, {"flow_blocks", blocks}, {"embedder", embedder},
                              {"conditioning_maps", total - blocks - embedder}}},
              {"learning_rate", {{"devices", 1}, {"lr", config::effective_learning_rate(config, 1)}}},
              {"data", data}};
}

std::unique_ptr<cli::Tool> make_train_tool() { return std::make_unique<TrainTool>(); }

}  // namespace net2net::commands
