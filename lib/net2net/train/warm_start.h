// Warm start (train.init_from, net2net-train --init-from): a new run's cINN takes the tensors of
// another run's checkpoint by name, the original's `ckpt_path` + `ignore_keys`. Unlike --resume,
// the optimizer state, the RNG and the step start afresh, and the config may differ (a new
// embedder, more blocks, another condition): what is ignored or absent keeps its initialisation.
#pragma once
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "net2net/inn/flow.h"

namespace net2net::train {

struct WarmStart {
  std::string path;                    // the checkpoint file read
  std::vector<std::string> loaded;     // taken from the checkpoint
  std::vector<std::string> ignored;    // matched by a pattern: kept as initialised
  std::vector<std::string> fresh;      // in the model only: kept as initialised
  std::vector<std::string> unused;     // in the checkpoint only
};

// Whether `name` matches a train.init_ignore pattern: a prefix of the name (the original's
// ignore_keys: "embedder" ignores "embedder.0.weight"), or a glob over the whole name
// (fnmatch, e.g. "block*.actnorm.*").
bool ignored_by(const std::string& name, const std::vector<std::string>& patterns);

// The format of scripts/import_original.py's HDF5 file of named tensors (/weights/NAME, root
// attributes format and model: the original's flow as a net2net model section, JSON).
inline constexpr const char* kImportedWeightsFormat = "net2net.imported-weights";
// That model section where `path` is such a file (*.h5, *.hdf5), else null.
nlohmann::json imported_model_section(const std::string& path);

// Copies every parameter and buffer of `checkpoint` (a file or a run directory, as
// load_flow_checkpoint, or an imported-weights *.h5) into the same-named tensor of `model`
// (converted to its type and device), except those `ignore` matches. Names are those of
// docs/formats.md: couplings per subnet (block3.coupling.s0.linear1.weight), as the original's. Loaded ActNorm flags keep those layers from being initialised
// again from data; loaded permutations replace the model's (its weights go with them). A tensor of
// another shape is a ConfigError naming it and both shapes (ignore it to keep it initialised).
WarmStart warm_start(inn::ConditionalFlow& model, const std::string& checkpoint, const std::vector<std::string>& ignore);

// net2net-train --config C --init-from W --write-model OUT: the model of C (dimensions the config
// leaves null taken from an imported-weights file's model section, which must otherwise agree),
// every tensor from W (none missing, none left over, except train.init_ignore), written as a
// model checkpoint OUT without training: how scripts/import_original.py's output becomes a
// net2net checkpoint. Returns the summary.
nlohmann::json write_model(const std::string& config_path, std::vector<std::string> overrides, bool seed_given,
                           uint64_t seed, const std::string& out);

}  // namespace net2net::train
