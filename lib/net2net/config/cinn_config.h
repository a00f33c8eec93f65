// The cINN config kind: its key table, the typed model description built from it, and the
// loader used by net2net-train (file -> --set overrides -> validation -> derived values).
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "net2net/config/schema.h"

namespace net2net::config {

// The key table of config kind "cinn" (declared once; see docs/configs.md).
const Schema& cinn_schema();

// Key tables of the example's expert kinds (config/expert_config.cpp).
const Schema& autoencoder_schema();
const Schema& classifier_schema();

// Schema of a config kind, or ConfigError naming key 'kind' (with a suggestion).
const Schema& schema_for_kind(const std::string& kind, const std::string& origin);

// Typed views of a resolved config's model section; the defaults live in the key table only
// (default_flow_config gives them).
struct EmbedderConfig {
  int64_t hidden_dim = 0;
  int64_t depth = 0;
  std::string norm;  // none | batchnorm | actnorm
};

// Architecture of the conditional flow (the reference's ConditionalFlatCouplingFlow).
struct FlowConfig {
  int64_t in_dim = 0;
  int64_t cond_dim = 0;
  int64_t embedding_dim = 0;
  int64_t n_flows = 0;
  int64_t hidden_dim = 0;
  int64_t hidden_depth = 0;
  std::string activation;    // none | lrelu
  double leaky_relu_alpha = 0;
  std::string conditioning;  // none | parallel | sequential
  EmbedderConfig embedder;
  uint64_t permutation_seed = 0;
};

// Typed view of a resolved config's "model" section. in_dim / cond_dim must be set.
FlowConfig flow_config_from_json(const json& resolved);
// data.condition of a resolved config, or "" where it is null (an unconditional flow).
std::string condition_dataset(const json& resolved);
// The key table's defaults for a flow from in_dim to cond_dim (tests, benchmarks).
FlowConfig default_flow_config(int64_t in_dim, int64_t cond_dim);

// Reads the file, applies --set overrides in order, validates against the kind's schema and
// fills derived values (model.permutation_seed from train.seed). in_dim / cond_dim may remain
// null here: they come from the data (see the train command).
json load_config(const std::string& path, const std::vector<std::string>& overrides);

// Same, from a JSON value already in memory (`origin` names it in errors).
json resolve_config(json user, const std::vector<std::string>& overrides, const std::string& origin);

// lr = devices * batch_size * base_lr unless train.lr is given (the reference's rule).
double effective_learning_rate(const json& resolved, int devices);

}  // namespace net2net::config
