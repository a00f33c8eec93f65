// net2net-train: trains a cINN on cached pairs. This stage: --dry-run (validate the config,
// build the model, report it) and --list-keys; the training loop lands with issue 4.
#include <spdlog/spdlog.h>
#include <torch/torch.h>

#include <filesystem>
#include <iostream>

#include "net2net/commands/commands.h"
#include "net2net/config/cinn_config.h"
#include "net2net/core/error.h"
#include "net2net/inn/flow.h"
#include "net2net/io/h5_shape.h"

namespace net2net::commands {
namespace fs = std::filesystem;
using nlohmann::json;

namespace {

// Reads the condition/target shapes of one cache; fills or checks the model dims.
json inspect_cache(const std::string& role, const std::string& file, json& config) {
  json info = {{"path", file}, {"exists", fs::exists(file)}};
  if (!info["exists"].get<bool>()) return info;
  for (const auto& [dataset, key] : {std::pair{"condition", "cond_dim"}, std::pair{"target", "in_dim"}}) {
    const std::string name = config["data"][dataset].get<std::string>();
    auto shape = io::h5_dataset_shape(file, name);
    if (shape.size() != 2)
      throw InputError("data." + role + " '" + file + "': dataset '" + name + "' (data." + dataset +
                       ") must be 2-D [N, D], has " + std::to_string(shape.size()) + " dimensions");
    json& dim = config["model"][key];
    if (dim.is_null()) {
      dim = shape[1];
    } else if (dim.get<int64_t>() != shape[1]) {
      throw ConfigError("key 'model." + std::string(key) + "' is " + dim.dump() + " but dataset '" + name +
                        "' in '" + file + "' has " + std::to_string(shape[1]) + " columns");
    }
    info[dataset] = {{"dataset", name}, {"rows", shape[0]}, {"dim", shape[1]}};
  }
  return info;
}

class TrainTool : public cli::Tool {
 public:
  std::string name() const override { return "net2net-train"; }
  std::string description() const override {
    return "Train a conditional INN that translates one expert's representation (the condition,\n"
           "data.condition) into another's (the target, data.target) on cached pairs.\n\n"
           "Examples:\n"
           "  net2net-train --config configs/text2biggan.json --dry-run\n"
           "  net2net-train --config configs/fmnist_label2ae.json --set train.steps=2000 --run-dir runs/l2ae\n"
           "  net2net-train --list-keys          # every config key, its type and default";
  }
  void add_options(CLI::App& app) override {
    app.add_option("--config", config_, "cINN config (JSON); see --list-keys and docs/configs.md")
        ->check(CLI::ExistingFile);
    app.add_option("--set", sets_, "Override a config key: key.path=value (JSON value, else string); repeatable")
        ->type_name("KEY=VALUE");
    app.add_option("--run-dir", run_dir_, "Run directory (config.json, checkpoints/, metrics.jsonl)");
    app.add_flag("--resume", resume_, "Continue from RUN_DIR/checkpoints/last.pt");
    app.add_flag("--dry-run", dry_run_, "Validate the config and data, build the model, print a JSON summary");
    app.add_flag("--list-keys", list_keys_, "Print every config key (markdown table) and exit");
  }
  int run(const cli::GlobalOptions& g) override {
    if (list_keys_) {
      std::cout << config::cinn_schema().markdown();
      return 0;
    }
    if (config_.empty()) throw UsageError("--config is required (see net2net-train --help)");
    json summary = train_dry_run(config_, sets_, g);
    if (dry_run_) {
      std::cout << summary.dump(2) << std::endl;
      return 0;
    }
    throw NotImplemented("training is not built yet (issue 4); use --dry-run to validate a config");
  }

 private:
  std::string config_, run_dir_;
  std::vector<std::string> sets_;
  bool resume_ = false, dry_run_ = false, list_keys_ = false;
};

}  // namespace

json train_dry_run(const std::string& config_path, const std::vector<std::string>& overrides,
                   const cli::GlobalOptions& g) {
  std::vector<std::string> all = overrides;
  if (g.seed_given) all.push_back("train.seed=" + std::to_string(g.seed));
  json config = config::load_config(config_path, all);

  json data = json::object();
  data["train"] = inspect_cache("train", config["data"]["train"].get<std::string>(), config);
  if (!config["data"]["val"].is_null())
    data["val"] = inspect_cache("val", config["data"]["val"].get<std::string>(), config);
  for (const auto& [role, info] : data.items())
    if (!info["exists"].get<bool>())
      spdlog::warn("data.{} '{}' does not exist yet (create it with net2net-extract)", role, info["path"].get<std::string>());
  for (const char* key : {"in_dim", "cond_dim"})
    if (config["model"][key].is_null())
      throw ConfigError("config '" + config_path + "': key 'model." + key +
                        "': not given, and data.train does not exist to take it from");

  auto flow_cfg = config::flow_config_from_json(config);
  auto model = inn::build_flow(flow_cfg, config["train"]["seed"].get<uint64_t>());
  int64_t embedder = inn::count_parameters(*model->embedder);
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
