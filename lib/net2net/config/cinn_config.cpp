#include "net2net/config/cinn_config.h"

#include "net2net/core/defaults.h"
#include "net2net/core/error.h"

namespace net2net::config {

namespace {
using namespace keys;

Schema make_cinn_schema() {
  const std::string default_seed = std::to_string(kDefaultSeed);
  return Schema("cinn", {
    str("kind", "cinn", "Config kind.", {"cinn"}),
    str("name", "", "Free-form name of the experiment (shown in logs and reports)."),
    str("description", "", "Free-form description."),
    required(str("data.train", nullptr, "Embedding cache (HDF5) with the training pairs.")),
    nullable(str("data.val", nullptr, "Embedding cache for validation; null: split data.train by data.val_fraction.")),
    number("data.val_fraction", 0.1, "Share of data.train held out for validation when data.val is null (seeded by train.seed).", 0.0, 0.9),
    nullable(str("data.condition", nullptr, "Dataset name of the condition z_phi (expert f) in the caches; null: an unconditional flow on data.target alone (model.cond_dim 0, the original's UnconditionalFlatCouplingFlow).")),
    required(str("data.target", nullptr, "Dataset name of the target z_theta (expert g) in the caches.")),
    nullable(str("data.condition_expert", nullptr, "Expert spec that made data.condition; null: taken from the cache's provenance. net2net-translate uses it for --labels, --text and --data.")),
    nullable(str("data.target_expert", nullptr, "Expert spec that made data.target; null: taken from the cache's provenance. Its decode is net2net-translate's default --decoder.")),
    resumable(nullable(string_list("data.class_names", nullptr, "Names of the label classes, index by index; null: taken from the training cache (its source's names, e.g. Fashion-MNIST's). net2net-translate names the rows of its grids with them."))),
    nullable(integer("model.in_dim", nullptr, "Dimension of z_theta; null: taken from the data (checked against it when given).", 1)),
    nullable(integer("model.cond_dim", nullptr, "Dimension of z_phi; null: taken from the data (checked against it when given); 0: unconditional (data.condition null; no embedder, the couplings see their half of the input alone).", 0)),
    integer("model.embedding_dim", 128, "Output size of the condition embedder, fed to every coupling.", 1),
    integer("model.n_flows", 20, "Number of flow blocks (ActNorm, activation, double coupling, permutation).", 1),
    integer("model.hidden_dim", 1024, "Width of the s and t subnets of each coupling.", 1),
    integer("model.hidden_depth", 2, "Hidden layers of the s and t subnets after the first one.", 0),
    str("model.activation", "lrelu", "Invertible activation after ActNorm in each block.", {"none", "lrelu"}),
    number("model.leaky_relu_alpha", 0.9, "Negative slope of the invertible leaky ReLU.", 1e-3, 1.0),
    str("model.conditioning", "none", "none: one embedding for every block; parallel / sequential: a linear map per block applied to the embedding / the previous block's condition.", {"none", "parallel", "sequential"}),
    integer("model.embedder.hidden_dim", 256, "Width of the condition embedder MLP.", 1),
    integer("model.embedder.depth", 2, "Hidden layers of the embedder MLP after the first one.", 0),
    str("model.embedder.norm", "none", "Normalisation after each hidden layer of the embedder MLP (batchnorm: the original's conditioner_use_bn; the original's conditioner_use_an has ActNorm after the first layer only, unlike actnorm here).", {"none", "batchnorm", "actnorm"}),
    nullable(integer("model.permutation_seed", nullptr, "Seed of the fixed per-block permutations; null: train.seed.", 0)),
    integer("train.batch_size", 16, "Pairs per forward/backward pass (over all devices); an optimizer step takes train.accumulate of them.", 1),
    integer("train.accumulate", 1, "Gradient accumulation: batches whose gradients are summed before each optimizer step (effective batch = accumulate * batch_size; batch statistics, e.g. a BatchNorm embedder, stay per batch).", 1),
    resumable(integer("train.steps", 100000, "Optimizer steps.", 0)),
    number("train.base_lr", 4.5e-6, "Base learning rate; lr = accumulate * devices * batch_size * base_lr unless train.lr is set.", 0.0),
    nullable(number("train.lr", nullptr, "Learning rate that overrides the scaling rule.", 0.0)),
    str("train.lr_schedule", "constant", "constant: the learning rate throughout (the reference); cosine: decays from it to 0 at train.steps.", {"constant", "cosine"}),
    number_list("train.betas", json::array({0.5, 0.9}), "Adam betas (the reference's (0.5, 0.9)).", 2, 0.0, 0.999999),
    boolean("train.amsgrad", true, "Use the AMSGrad variant of Adam."),
    number("train.weight_decay", 0.0, "L2 weight decay of Adam.", 0.0),
    nullable(number("train.grad_clip", nullptr, "Clip the global gradient norm to this value; null: no clipping.", 0.0)),
    str("train.precision", "fp32", "Numeric precision of training steps: fp32; tf32 (TF32 matmuls); bf16 (bfloat16 autocast; log-dets, loss and optimizer state stay float32); fp64 (float64 throughout: exact checks, ~2-4x slower). tf32 and bf16 need --device cuda (compute capability 8.0+).", {"fp32", "tf32", "bf16", "fp64"}),
    nullable(str("train.init_from", nullptr, "Warm start (net2net-train --init-from): a cINN checkpoint (file or run directory) whose parameters and buffers initialise this model by name; the optimizer, RNG and step start afresh (unlike --resume); null: none.")),
    string_list("train.init_ignore", json::array(), "Warm start: tensors not taken from train.init_from (they keep their initialisation): a name prefix, as the original's ignore_keys (\"embedder\"), or a glob (\"block1*\"). Repeatable --init-ignore."),
    seed("train.seed", kDefaultSeed, "Seed of initialisation, shuffling and splits (the reference's default " + default_seed + ")."),
    resumable(integer("train.log_every", 50, "Steps between train metrics lines.", 1)),
    resumable(integer("train.val_every", 1000, "Steps between validations.", 1)),
    resumable(integer("train.checkpoint_every", 1000, "Steps between checkpoints.", 1)),
    resumable(str("train.keep_previous", "auto", "Keep the last checkpoint before last.pt as checkpoints/last.prev.pt, which --resume falls back to when last.pt is damaged: always, never, or auto (while a checkpoint is under 1 GiB; a text->BigGAN one is 4 GiB, and last.pt is written atomically with a verified checksum).", {"auto", "always", "never"})),
    resumable(integer("train.image_every", 1000, "Image grids in RUN_DIR/images (where the target expert decodes) at steps 1, 2, 4, ... then every this many steps, and a loss plot (images/loss.png) at each validation; 0: none.", 0)),
    resumable(integer("train.image_items", 8, "Validation items in each image grid (a column each).", 1)),
    resumable(integer("train.image_samples", 4, "Samples (T=1) of each item in each image grid.", 1)),
  });
}
}  // namespace

const Schema& cinn_schema() {
  static const Schema schema = make_cinn_schema();
  return schema;
}

const Schema& schema_for_kind(const std::string& kind, const std::string& origin) {
  if (kind == "cinn") return cinn_schema();
  if (kind == "autoencoder") return autoencoder_schema();
  if (kind == "classifier") return classifier_schema();
  std::string hint;
  for (const char* known : {"cinn", "autoencoder", "classifier"})
    if (edit_distance(kind, known) <= 2) hint = std::string(" (did you mean '") + known + "'?)";
  throw ConfigError("config '" + origin + "': key 'kind': unknown config kind \"" + kind + "\"" + hint +
                    "; known kinds: cinn, autoencoder, classifier");
}

json resolve_config(json user, const std::vector<std::string>& overrides, const std::string& origin) {
  for (const auto& o : overrides) apply_override(user, o);
  std::string kind = "cinn";
  if (user.is_object() && user.contains("kind")) {
    if (!user["kind"].is_string())
      throw ConfigError("config '" + origin + "': key 'kind': expected a string");
    kind = user["kind"].get<std::string>();
  }
  json resolved = schema_for_kind(kind, origin).resolve(user, origin);
  if (kind == "cinn" && resolved["model"]["permutation_seed"].is_null())
    resolved["model"]["permutation_seed"] = resolved["train"]["seed"];
  return resolved;
}

json load_config(const std::string& path, const std::vector<std::string>& overrides) {
  return resolve_config(load_json_file(path), overrides, path);
}

FlowConfig flow_config_from_json(const json& resolved) {
  const json& m = resolved.at("model");
  FlowConfig c;
  if (m.at("in_dim").is_null() || m.at("cond_dim").is_null())
    throw ConfigError("model.in_dim and model.cond_dim must be known to build the model");
  c.in_dim = m.at("in_dim").get<int64_t>();
  c.cond_dim = m.at("cond_dim").get<int64_t>();
  c.embedding_dim = m.at("embedding_dim").get<int64_t>();
  c.n_flows = m.at("n_flows").get<int64_t>();
  c.hidden_dim = m.at("hidden_dim").get<int64_t>();
  c.hidden_depth = m.at("hidden_depth").get<int64_t>();
  c.activation = m.at("activation").get<std::string>();
  c.leaky_relu_alpha = m.at("leaky_relu_alpha").get<double>();
  c.conditioning = m.at("conditioning").get<std::string>();
  c.embedder.hidden_dim = m.at("embedder").at("hidden_dim").get<int64_t>();
  c.embedder.depth = m.at("embedder").at("depth").get<int64_t>();
  c.embedder.norm = m.at("embedder").at("norm").get<std::string>();
  c.permutation_seed = m.at("permutation_seed").is_null() ? kDefaultSeed : m.at("permutation_seed").get<uint64_t>();
  if (c.cond_dim == 0) {  // unconditional: nothing to embed, and the couplings take no condition
    if (c.conditioning != "none")
      throw ConfigError("key 'model.conditioning': \"" + c.conditioning + "\" needs a condition; an unconditional flow "
                        "(model.cond_dim 0) takes \"none\"");
    c.embedding_dim = 0;
  }
  return c;
}

std::string condition_dataset(const json& resolved) {
  const json& c = resolved.at("data").at("condition");
  return c.is_null() ? std::string() : c.get<std::string>();
}

FlowConfig default_flow_config(int64_t in_dim, int64_t cond_dim) {
  json user = {{"data", {{"train", ""}, {"condition", cond_dim ? json("") : json(nullptr)}, {"target", ""}}},
               {"model", {{"in_dim", in_dim}, {"cond_dim", cond_dim}}}};
  return flow_config_from_json(resolve_config(user, {}, "the key table's defaults"));
}

double effective_learning_rate(const json& resolved, int devices) {
  const json& t = resolved.at("train");
  if (!t.at("lr").is_null()) return t.at("lr").get<double>();
  return t.at("accumulate").get<double>() * devices * t.at("batch_size").get<double>() * t.at("base_lr").get<double>();
}

}  // namespace net2net::config
