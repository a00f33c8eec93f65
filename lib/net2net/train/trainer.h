// Training of the cINN on cached pairs (net2net-train), and its evaluation (net2net-eval nll).
// A run directory holds config.json (resolved), checkpoints/last.pt and best.pt (atomic),
// metrics.jsonl and energy.json. Resumable: --resume continues from last.pt; with
// --deterministic a run killed at any point and resumed ends bit-identical to an uninterrupted
// one (data order is a pure function of seed and step; optimizer, RNG and step are saved).
#pragma once
#include <torch/torch.h>

#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "net2net/core/defaults.h"

namespace net2net::train {

struct TrainOptions {
  std::string config_path;             // may be empty with resume (the checkpoint has the config)
  std::vector<std::string> overrides;  // --set key=value
  std::string run_dir;                 // default: runs/<config name>
  bool resume = false;
  bool force = false;
  bool deterministic = false;
  bool seed_given = false;
  uint64_t seed = kDefaultSeed;
  std::string device = "cpu";
  int threads = 0;
};

// Resolves the config (file, --set, --seed) and fills or checks model.in_dim / model.cond_dim
// against the caches. `data_info` (optional) receives what was found of each cache.
nlohmann::json prepare_config(const std::string& config_path, const std::vector<std::string>& overrides,
                              bool seed_given, uint64_t seed, nlohmann::json* data_info = nullptr,
                              bool require_data = true);

// Trains; returns the JSON summary. Throws Interrupted (exit 4) after SIGINT/SIGTERM/SIGUSR1
// with last.pt written.
nlohmann::json run_training(const TrainOptions& options);

struct Pairs {
  torch::Tensor cond, target;  // float32 [N, Dc], [N, Dt]
  int64_t size() const { return cond.defined() ? cond.size(0) : 0; }
};
// Reads two datasets of a cache; InputError naming the file and a missing dataset. An empty
// `condition` (an unconditional flow) gives conditions of width 0.
Pairs load_pairs(const std::string& file, const std::string& condition, const std::string& target);

// net2net-eval nll: the model of a checkpoint (or run dir) on the pairs of a cache.
// nll: mean over items of 0.5 ||v||^2 - log|det J| (no constant: the reference's total loss);
// nll_term and nlogdet: its two parts; bits_per_dim: under the full Gaussian density.
nlohmann::json evaluate_nll(const std::string& checkpoint, const std::string& data_file, const std::string& device,
                            int64_t batch_size = 4096);

}  // namespace net2net::train
