// Training of the example's experts (config kinds "autoencoder" and "classifier") on image
// sources; the result is a TorchScript expert, RUN_DIR/expert.pt, used as ts:RUN_DIR/expert.pt.
#pragma once
#include <nlohmann/json.hpp>
#include <string>

namespace net2net::train {

// Trains the expert of a resolved config into run_dir (config.json, metrics.jsonl, expert.pt);
// returns the summary (test L1 / MSE of the autoencoder, test accuracy of the classifier).
// An existing expert.pt is an error unless force.
nlohmann::json train_expert(const nlohmann::json& config, const std::string& run_dir, bool force,
                            const std::string& device = "cpu");

// Number of parameters of the config's expert (for --dry-run).
int64_t expert_parameter_count(const nlohmann::json& config);

}  // namespace net2net::train
