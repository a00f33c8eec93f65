// One file per command (samtools style); each builds a cli::Tool.
#pragma once
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "net2net/cli/options.h"

namespace net2net::commands {

std::unique_ptr<cli::Tool> make_extract_tool();
std::unique_ptr<cli::Tool> make_train_tool();
std::unique_ptr<cli::Tool> make_translate_tool();
std::unique_ptr<cli::Tool> make_eval_tool();

// Resolves a config (file, --set overrides, --seed), takes model.in_dim / model.cond_dim from
// the data where the caches exist (and checks given ones against them), builds the model and
// returns the dry-run summary: the resolved config, the exact parameter count (total and by
// part), the effective learning rate and what was found of the data.
nlohmann::json train_dry_run(const std::string& config_path, const std::vector<std::string>& overrides,
                             const cli::GlobalOptions& g);

}  // namespace net2net::commands
