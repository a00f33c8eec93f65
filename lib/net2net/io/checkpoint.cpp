#include "net2net/io/checkpoint.h"

#include <cmath>
#include <filesystem>

#include "net2net/core/atomic_file.h"
#include "net2net/core/error.h"
#include "net2net/kernels/fused_adam.h"

namespace net2net::io {
namespace fs = std::filesystem;

namespace {
std::string dtype_name(torch::Dtype d) {
  if (d == torch::kFloat64) return "float64";
  if (d == torch::kFloat32) return "float32";
  throw InputError("unsupported model dtype");
}
}  // namespace

namespace {
void write_model(torch::serialize::OutputArchive& archive, const nlohmann::json& config, inn::ConditionalFlow& model);
void save_archive(const std::string& path, torch::serialize::OutputArchive& archive) {
  write_atomically(path, [&](const std::string& tmp) {
    try {
      archive.save_to(tmp);
    } catch (const c10::Error& e) {
      throw IoError("cannot write checkpoint '" + tmp + "': " + e.what_without_backtrace());
    }
  });
}
}  // namespace

void save_flow_checkpoint(const std::string& path, const nlohmann::json& config, inn::ConditionalFlow& model) {
  torch::serialize::OutputArchive archive;
  write_model(archive, config, model);
  save_archive(path, archive);
}

void save_training_checkpoint(const std::string& path, const nlohmann::json& config, inn::ConditionalFlow& model,
                              torch::optim::Optimizer& optimizer, const TrainingState& state) {
  torch::serialize::OutputArchive archive;
  write_model(archive, config, model);
  torch::serialize::OutputArchive opt_archive;
  optimizer.save(opt_archive);
  archive.write("optimizer", opt_archive);
  archive.write("step", c10::IValue(state.step));
  archive.write("best_val", c10::IValue(state.has_best ? state.best_val : std::nan("")));
  if (state.rng_state.defined()) archive.write("rng_cpu", state.rng_state);
  archive.write("train_state", c10::IValue(state.extra.dump()));
  save_archive(path, archive);
}

TrainingState load_training_state(const std::string& path, torch::optim::Optimizer& optimizer) {
  torch::serialize::InputArchive archive;
  try {
    archive.load_from(path, torch::Device(torch::kCPU));  // wherever it was written (a GPU run too)
  } catch (const c10::Error& e) {
    throw InputError("checkpoint '" + path + "' is not a readable torch archive (corrupt or truncated?)");
  }
  TrainingState st;
  c10::IValue step, best, extra;
  torch::serialize::InputArchive opt_archive;
  if (!archive.try_read("step", step) || !step.isInt() || !archive.try_read("optimizer", opt_archive))
    throw InputError("checkpoint '" + path + "' holds no training state (a model-only checkpoint cannot be resumed)");
  st.step = step.toInt();
  if (archive.try_read("best_val", best) && best.isDouble() && !std::isnan(best.toDouble()))
    st.best_val = best.toDouble(), st.has_best = true;
  torch::Tensor rng;
  if (archive.try_read("rng_cpu", rng)) st.rng_state = rng;
  if (archive.try_read("train_state", extra) && extra.isString())
    st.extra = nlohmann::json::parse(extra.toStringRef(), nullptr, false);
  try {
    optimizer.load(opt_archive);
  } catch (const c10::Error& e) {
    throw InputError("checkpoint '" + path + "': optimizer state does not fit the model: " + e.what_without_backtrace());
  }
  // Adam moments must have their parameter's shape (a checkpoint from another parameter layout
  // would otherwise fail, or worse, broadcast, at the first step).
  for (auto& group : optimizer.param_groups())
    for (auto& p : group.params()) {
      auto* adam = kernels::adam_state(optimizer, p);
      if (!adam) continue;
      if (adam->exp_avg().defined() && adam->exp_avg().sizes() != p.sizes())
        throw InputError("checkpoint '" + path + "': its optimizer state was written for another parameter layout " +
                         "(an older net2net?); its model still loads for translate and eval, but training cannot resume from it");
      // The moments were read onto the CPU; they live where their parameter lives (a GPU run).
      auto to_param = [&](const torch::Tensor& t) { return t.defined() ? t.to(p.device()) : t; };
      adam->exp_avg(to_param(adam->exp_avg()));
      adam->exp_avg_sq(to_param(adam->exp_avg_sq()));
      adam->max_exp_avg_sq(to_param(adam->max_exp_avg_sq()));
    }
  return st;
}

namespace {
void write_model(torch::serialize::OutputArchive& archive, const nlohmann::json& config, inn::ConditionalFlow& model) {
  archive.write("format", c10::IValue(std::string(kCheckpointFormat)));
  archive.write("version", c10::IValue(kCheckpointVersion));
  archive.write("config", c10::IValue(config.dump()));
  archive.write("dtype", c10::IValue(dtype_name(model->embedder->parameters().front().scalar_type())));
  torch::serialize::OutputArchive model_archive;
  model->save(model_archive);
  archive.write("model", model_archive);
}
}  // namespace

std::string resolve_checkpoint_path(const std::string& p) {
  std::error_code ec;
  if (fs::is_directory(p, ec)) {
    for (const char* name : {"checkpoints/best.pt", "checkpoints/last.pt"}) {
      auto candidate = fs::path(p) / name;
      if (fs::exists(candidate, ec)) return candidate.string();
    }
    throw IoError("run directory '" + p + "' has no checkpoints/best.pt or checkpoints/last.pt");
  }
  if (!fs::exists(p, ec)) throw IoError("checkpoint '" + p + "' does not exist");
  return p;
}

LoadedFlow load_flow_checkpoint(const std::string& path_or_run_dir) {
  LoadedFlow out;
  out.path = resolve_checkpoint_path(path_or_run_dir);
  const std::string& path = out.path;
  torch::serialize::InputArchive archive;
  try {
    archive.load_from(path, torch::Device(torch::kCPU));  // wherever it was written (a GPU run too)
  } catch (const c10::Error& e) {
    throw InputError("checkpoint '" + path + "' is not a readable torch archive (corrupt or truncated?): " +
                     e.what_without_backtrace());
  }
  c10::IValue format, version, config, dtype;
  if (!archive.try_read("format", format) || !format.isString() || format.toStringRef() != kCheckpointFormat)
    throw InputError("checkpoint '" + path + "' is not a net2net checkpoint (no format = " + kCheckpointFormat + ")");
  if (!archive.try_read("version", version) || !version.isInt() || version.toInt() > kCheckpointVersion)
    throw InputError("checkpoint '" + path + "' has an unsupported version (this tool reads up to " +
                     std::to_string(kCheckpointVersion) + ")");
  if (!archive.try_read("config", config) || !config.isString())
    throw InputError("checkpoint '" + path + "' has no config");
  out.config = nlohmann::json::parse(config.toStringRef(), nullptr, false);
  if (out.config.is_discarded()) throw InputError("checkpoint '" + path + "': its config is not valid JSON");
  torch::Dtype dt = torch::kFloat32;
  if (archive.try_read("dtype", dtype) && dtype.isString() && dtype.toStringRef() == "float64") dt = torch::kFloat64;

  config::FlowConfig cfg;
  try {
    cfg = config::flow_config_from_json(out.config);
  } catch (const std::exception& e) {
    throw InputError("checkpoint '" + path + "': cannot rebuild the model from its config: " + e.what());
  }
  out.model = inn::ConditionalFlow(cfg);
  inn::convert_floating(*out.model, dt);
  try {
    torch::serialize::InputArchive model_archive;
    archive.read("model", model_archive);
    out.model->load(model_archive);
  } catch (const c10::Error& e) {
    throw InputError("checkpoint '" + path + "': model state does not match its config: " + e.what_without_backtrace());
  }
  out.model->eval();
  return out;
}

}  // namespace net2net::io
