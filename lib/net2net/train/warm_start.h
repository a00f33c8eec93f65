// Warm start (train.init_from, net2net-train --init-from): a new run's cINN takes the tensors of
// another run's checkpoint by name, the original's `ckpt_path` + `ignore_keys`. Unlike --resume,
// the optimizer state, the RNG and the step start afresh, and the config may differ (a new
// embedder, more blocks, another condition): what is ignored or absent keeps its initialisation.
#pragma once
#include <string>
#include <vector>

#include "net2net/inn/flow.h"

namespace net2net::train {

struct WarmStart {
  std::string path;                    // the checkpoint file read
  std::vector<std::string> loaded;     // taken from the checkpoint
  std::vector<std::string> ignored;    // in both, matched by a pattern: kept as initialised
  std::vector<std::string> fresh;      // in the model only: kept as initialised
  std::vector<std::string> unused;     // in the checkpoint only
};

// Whether `name` matches a train.init_ignore pattern: a prefix of the name (the original's
// ignore_keys: "embedder" ignores "embedder.0.weight"), or a glob over the whole name
// (fnmatch, e.g. "block*.actnorm.*").
bool ignored_by(const std::string& name, const std::vector<std::string>& patterns);

// Copies every parameter and buffer of `checkpoint` (a file or a run directory, as
// load_flow_checkpoint) into the same-named tensor of `model` (converted to its type and device),
// except those `ignore` matches. Loaded ActNorm flags keep those layers from being initialised
// again from data; loaded permutations replace the model's (its weights go with them). A tensor of
// another shape is a ConfigError naming it and both shapes (ignore it to keep it initialised).
WarmStart warm_start(inn::ConditionalFlow& model, const std::string& checkpoint, const std::vector<std::string>& ignore);

}  // namespace net2net::train
