#include "net2net/train/trainer.h"

#include <spdlog/spdlog.h>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <optional>
#include <sstream>

#include "net2net/config/cinn_config.h"
#include "net2net/core/atomic_file.h"
#include "net2net/core/error.h"
#include "net2net/core/progress.h"
#include "net2net/core/runtime.h"
#include "net2net/core/signals.h"
#include "net2net/inn/flow.h"
#include "net2net/io/checkpoint.h"
#include "net2net/kernels/fused_adam.h"
#include "net2net/io/embedding_store.h"
#include "net2net/train/distributed.h"
#include "net2net/train/lr_schedule.h"
#include "net2net/train/precision.h"
#include "net2net/train/energy.h"
#include "net2net/version.h"

namespace net2net::train {
namespace fs = std::filesystem;
using nlohmann::json;
using torch::Tensor;

// ---------------------------------------------------------------- config and data
namespace {
json inspect_cache(const std::string& role, const std::string& file, json& config, bool require) {
  json info = {{"path", file}, {"exists", fs::exists(file)}};
  if (!info["exists"].get<bool>()) {
    if (require) throw IoError("data." + role + " '" + file + "' does not exist (make it with net2net-extract)");
    return info;
  }
  io::EmbeddingReader reader(file);
  for (const auto& [dataset, key] : {std::pair{"condition", "cond_dim"}, std::pair{"target", "in_dim"}}) {
    const std::string name = config["data"][dataset].get<std::string>();
    if (!reader.has(name))
      throw InputError("data." + role + " '" + file + "' has no dataset '/" + name + "' (named by data." + dataset + ")");
    auto d = reader.info(name);
    json& dim = config["model"][key];
    if (dim.is_null()) {
      dim = d.cols;
    } else if (dim.get<int64_t>() != d.cols) {
      throw ConfigError("key 'model." + std::string(key) + "' is " + dim.dump() + " but dataset '/" + name + "' in '" +
                        file + "' has " + std::to_string(d.cols) + " columns");
    }
    info[dataset] = {{"dataset", name}, {"rows", d.rows}, {"dim", d.cols}};
  }
  // Which experts made the datasets (provenance of net2net-extract), for net2net-translate.
  if (role == "train") {
    json experts = json::parse(reader.attributes().value("experts", std::string("[]")), nullptr, false);
    for (const auto& [dataset, key] : {std::pair{"condition", "condition_expert"}, std::pair{"target", "target_expert"}})
      if (config["data"][key].is_null() && experts.is_array())
        for (const auto& e : experts)
          if (e.is_object() && e.value("name", std::string()) == config["data"][dataset].get<std::string>())
            config["data"][key] = e.value("spec", std::string());
  }
  return info;
}
}  // namespace

json prepare_config(const std::string& config_path, const std::vector<std::string>& overrides, bool seed_given,
                    uint64_t seed, json* data_info, bool require_data) {
  std::vector<std::string> all = overrides;
  if (seed_given) all.push_back("train.seed=" + std::to_string(seed));
  json config = config::load_config(config_path, all);
  json data = json::object();
  data["train"] = inspect_cache("train", config["data"]["train"].get<std::string>(), config, require_data);
  if (!config["data"]["val"].is_null())
    data["val"] = inspect_cache("val", config["data"]["val"].get<std::string>(), config, require_data);
  for (const char* key : {"in_dim", "cond_dim"})
    if (config["model"][key].is_null())
      throw ConfigError("config '" + config_path + "': key 'model." + key +
                        "': not given, and data.train does not exist to take it from");
  if (data_info) *data_info = data;
  return config;
}

Pairs load_pairs(const std::string& file, const std::string& condition, const std::string& target) {
  io::EmbeddingReader reader(file);
  Pairs p;
  for (auto [name, out] : {std::pair{&condition, &p.cond}, std::pair{&target, &p.target}}) {
    auto info = reader.info(*name);
    auto rows = reader.read_rows(*name, 0, info.rows);
    *out = torch::from_blob(rows.data(), {info.rows, info.cols}, torch::kFloat32).clone();
  }
  return p;
}

// ---------------------------------------------------------------- helpers
namespace {

struct Split {
  Pairs train, val;
};

Split make_split(const json& config) {
  const json& d = config["data"];
  Split s;
  Pairs all = load_pairs(d["train"], d["condition"], d["target"]);
  if (!d["val"].is_null()) {
    s.train = all;
    s.val = load_pairs(d["val"], d["condition"], d["target"]);
    return s;
  }
  const int64_t n = all.size();
  int64_t n_val = static_cast<int64_t>(std::llround(n * d["val_fraction"].get<double>()));
  if (n_val >= n) n_val = n - 1;
  auto gen = at::detail::createCPUGenerator(config["train"]["seed"].get<uint64_t>() ^ 0x5EEDULL);
  auto perm = torch::randperm(n, gen, torch::kLong);
  auto val_idx = perm.narrow(0, 0, n_val), train_idx = perm.narrow(0, n_val, n - n_val);
  s.train = {all.cond.index_select(0, train_idx), all.target.index_select(0, train_idx)};
  if (n_val > 0) s.val = {all.cond.index_select(0, val_idx), all.target.index_select(0, val_idx)};
  return s;
}

// The items of step s: a pure function of (seed, step), so that a resumed run sees the same data.
class BatchOrder {
 public:
  BatchOrder(int64_t n, int64_t batch, uint64_t seed) : n_(n), batch_(std::min(batch, n)), seed_(seed) {
    per_epoch_ = std::max<int64_t>(1, n_ / batch_);
  }
  Tensor indices(int64_t step) {
    int64_t epoch = step / per_epoch_, within = step % per_epoch_;
    if (epoch != epoch_) {
      auto gen = at::detail::createCPUGenerator(seed_ * 1000003ULL + static_cast<uint64_t>(epoch));
      perm_ = torch::randperm(n_, gen, torch::kLong);
      epoch_ = epoch;
    }
    return perm_.narrow(0, within * batch_, batch_);
  }
  int64_t batch() const { return batch_; }
  int64_t epoch_of(int64_t step) const { return step / per_epoch_; }

 private:
  int64_t n_, batch_, per_epoch_;
  uint64_t seed_;
  int64_t epoch_ = -1;
  Tensor perm_;
};

struct ValResult {
  double loss = 0, nll = 0, nlogdet = 0, bpd = 0;
};

ValResult evaluate(inn::ConditionalFlow& model, const Pairs& data, torch::Device device, int64_t batch = 4096) {
  torch::NoGradGuard no_grad;
  bool was_training = model->is_training();
  model->eval();
  double nll = 0, nlogdet = 0, bpd = 0;
  const int64_t n = data.size();
  for (int64_t s = 0; s < n; s += batch) {
    int64_t b = std::min(batch, n - s);
    auto out = model->forward(data.target.narrow(0, s, b).to(device), data.cond.narrow(0, s, b).to(device));
    nll += (0.5 * out.v.pow(2).sum(1)).sum().item<double>();
    nlogdet += (-out.logdet).sum().item<double>();
    bpd += inn::bits_per_dim(out).sum().item<double>();
  }
  model->train(was_training);
  ValResult r;
  r.nll = nll / n, r.nlogdet = nlogdet / n, r.bpd = bpd / n;
  r.loss = r.nll + r.nlogdet;
  return r;
}

bool all_finite(const inn::ConditionalFlow& model) {
  for (const auto& p : model->parameters())
    if (!torch::isfinite(p).all().item<bool>()) return false;
  return true;
}

class MetricsLog {
 public:
  // Opens metrics.jsonl for appending; on resume drops lines past `keep_until_step`.
  MetricsLog(const fs::path& path, int64_t keep_until_step, bool fresh) : path_(path) {
    if (fresh) {
      std::error_code ec;
      fs::remove(path, ec);
    } else if (fs::exists(path)) {
      std::ifstream in(path);
      std::string line, kept;
      while (std::getline(in, line)) {
        json j = json::parse(line, nullptr, false);
        if (!j.is_discarded() && j.value("step", int64_t(0)) <= keep_until_step) kept += line + "\n";
      }
      write_text_atomically(path.string(), kept);
    }
    f_ = std::fopen(path.c_str(), "a");
    if (!f_) throw IoError("cannot open '" + path.string() + "' for appending");
  }
  ~MetricsLog() {
    if (f_) std::fclose(f_);
  }
  void write(const json& j) {
    std::string line = j.dump() + "\n";
    std::fwrite(line.data(), 1, line.size(), f_);
    std::fflush(f_);
  }

 private:
  fs::path path_;
  std::FILE* f_ = nullptr;
};

// Keys that may change when a run is resumed: how long it runs and how often it reports.
bool resumable_key(const std::string& section, const std::string& key) {
  return section == "train" && (key == "steps" || key == "log_every" || key == "val_every" || key == "checkpoint_every");
}

void check_same_run(const json& saved, const json& requested) {
  std::string diff;
  for (const auto& [section, values] : requested.items()) {
    if (!values.is_object()) continue;
    for (const auto& [key, value] : values.items())
      if (!resumable_key(section, key) && saved[section][key] != value)
        diff += "\n  " + section + "." + key + ": run " + saved[section][key].dump() + ", now " + value.dump();
  }
  if (!diff.empty())
    throw ConfigError("--resume: the config differs from the run's (only train.steps and the *_every keys may change):" + diff);
}

}  // namespace

// ---------------------------------------------------------------- training
json run_training(const TrainOptions& opt) {
  const DistEnv env = detect_distributed();
  const bool lead = env.rank == 0;
  torch::Device device(opt.device == "cuda" && env.world_size > 1 ? "cuda:" + std::to_string(env.local_rank) : opt.device);
  if (opt.deterministic) at::globalContext().setDeterministicAlgorithms(true, false);

  // Run directory and config.
  std::string run_dir = opt.run_dir;
  json config;
  io::LoadedFlow resumed;
  fs::path last_path;
  if (opt.resume) {
    if (run_dir.empty()) throw UsageError("--resume needs --run-dir");
    last_path = fs::path(run_dir) / "checkpoints" / "last.pt";
    if (!fs::exists(last_path)) throw IoError("--resume: '" + last_path.string() + "' does not exist");
    resumed = io::load_flow_checkpoint(last_path.string());
    config = resumed.config;
    if (!opt.config_path.empty()) {
      json requested = prepare_config(opt.config_path, opt.overrides, opt.seed_given, opt.seed);
      check_same_run(config, requested);
      for (const char* k : {"steps", "log_every", "val_every", "checkpoint_every"}) config["train"][k] = requested["train"][k];
    } else {
      for (const auto& o : opt.overrides) config::apply_override(config, o);
      config = config::resolve_config(config, {}, last_path.string());
      check_same_run(resumed.config, config);
    }
  } else {
    if (opt.config_path.empty()) throw UsageError("--config is required (or --resume --run-dir DIR)");
    config = prepare_config(opt.config_path, opt.overrides, opt.seed_given, opt.seed);
    if (run_dir.empty()) {
      std::string name = config["name"].get<std::string>();
      run_dir = "runs/" + (name.empty() ? fs::path(opt.config_path).stem().string() : name);
    }
    last_path = fs::path(run_dir) / "checkpoints" / "last.pt";
    if (fs::exists(last_path) && !opt.force)
      throw UsageError("run directory '" + run_dir + "' already has a checkpoint; use --resume to continue it or --force to start over");
  }
  const fs::path dir(run_dir), best_path = dir / "checkpoints" / "best.pt";
  const json& t = config["train"];
  const int64_t steps = t["steps"], batch = t["batch_size"], log_every = t["log_every"], val_every = t["val_every"],
                ckpt_every = t["checkpoint_every"];
  const uint64_t seed = t["seed"];
  const std::string lr_schedule = t["lr_schedule"];
  const Precision precision = parse_precision(t["precision"].get<std::string>());
  check_precision(precision, device);
  if (lead) {
    fs::create_directories(dir / "checkpoints");
    if (!opt.resume && opt.force) fs::remove(best_path);
    write_text_atomically((dir / "config.json").string(), config.dump(2) + "\n");
  }

  // Data (every rank holds all of it; each takes its share of every batch).
  Split data = make_split(config);
  if (data.train.size() == 0) throw InputError("data.train '" + config["data"]["train"].get<std::string>() + "' has no rows");
  data.train.cond = data.train.cond.to(device), data.train.target = data.train.target.to(device);
  BatchOrder order(data.train.size(), batch, seed);
  const int64_t global_batch = order.batch();
  if (lead && global_batch < batch)
    spdlog::warn("train.batch_size {} is larger than the {} training rows: every step takes all of them", batch,
                 data.train.size());
  if (global_batch < env.world_size)
    throw ConfigError("train.batch_size " + std::to_string(global_batch) + " is smaller than the world size " +
                      std::to_string(env.world_size));
  const int64_t share_begin = global_batch * env.rank / env.world_size,
                share_end = global_batch * (env.rank + 1) / env.world_size;

  // Model and optimizer.
  auto flow_cfg = config::flow_config_from_json(config);
  inn::ConditionalFlow model = opt.resume ? resumed.model : inn::build_flow(flow_cfg, seed);
  model->to(device);
  model->train();
  const double lr = config::effective_learning_rate(config, env.world_size);
  auto betas = t["betas"].get<std::vector<double>>();
  kernels::FusedAdam adam(model->parameters(), torch::optim::AdamOptions(lr)
                                                   .betas({betas[0], betas[1]})
                                                   .amsgrad(t["amsgrad"].get<bool>())
                                                   .weight_decay(t["weight_decay"].get<double>()));
  io::TrainingState state;
  json previous_energy = nullptr;
  if (opt.resume) {
    state = io::load_training_state(last_path.string(), adam);
    if (state.rng_state.defined()) {
      auto gen = at::detail::getDefaultCPUGenerator();
      std::lock_guard<std::mutex> lock(gen.mutex());
      gen.set_state(state.rng_state);
    }
    if (state.extra.is_object() && state.extra.contains("energy")) previous_energy = state.extra["energy"];
    if (opt.deterministic && state.extra.value("threads", 0) != 0 && state.extra.value("threads", 0) != at::get_num_threads())
      spdlog::warn("--deterministic: the run used {} threads, this part {}; results may differ in the last bits",
                   state.extra.value("threads", 0), at::get_num_threads());
    spdlog::info("resuming '{}' at step {}", run_dir, state.step);
  } else {
    // ActNorm's data-dependent init on the first global batch, the same on every rank.
    torch::NoGradGuard g;
    auto idx = order.indices(0).to(device);
    model->forward(data.train.target.index_select(0, idx), data.train.cond.index_select(0, idx));
  }
  auto comm = make_communicator(env, device.str());
  {
    torch::NoGradGuard g;
    comm->broadcast(model->parameters());
  }

  EnergyMeter energy;
  std::unique_ptr<MetricsLog> metrics;  // rank 0 alone writes
  if (lead) metrics = std::make_unique<MetricsLog>(dir / "metrics.jsonl", state.step, !opt.resume);
  auto training_state_extra = [&]() {
    return json{{"energy", energy.record(previous_energy)},
                {"threads", at::get_num_threads()},
                {"world_size", env.world_size},
                {"tool_version", std::string("net2net ") + kVersion},
                {"device", device.str()}};
  };
  auto save_last = [&]() {
    if (!lead) return;
    if (!all_finite(model)) throw Error("model parameters are not finite; last good checkpoint kept at '" + last_path.string() + "'", kExitFailure);
    {
      auto gen = at::detail::getDefaultCPUGenerator();
      std::lock_guard<std::mutex> lock(gen.mutex());
      state.rng_state = gen.get_state();
    }
    state.extra = training_state_extra();
    io::save_training_checkpoint(last_path.string(), config, model, adam, state);
    write_text_atomically((dir / "energy.json").string(), state.extra["energy"].dump(2) + "\n");
  };
  auto validate = [&](int64_t step) {
    if (!lead || data.val.size() == 0) return;
    auto r = evaluate(model, data.val, device);
    metrics->write({{"step", step}, {"split", "val"}, {"loss", r.loss}, {"nll", r.nll}, {"nlogdet", r.nlogdet},
                   {"bits_per_dim", r.bpd}});
    spdlog::info("step {} val loss {:.4f} (nll {:.4f}, -logdet {:.4f}, {:.4f} bits/dim)", step, r.loss, r.nll, r.nlogdet, r.bpd);
    if (!state.has_best || r.loss < state.best_val) {
      state.best_val = r.loss, state.has_best = true;
      if (all_finite(model)) {
        auto extra_state = state;
        extra_state.extra = training_state_extra();
        io::save_training_checkpoint(best_path.string(), config, model, adam, extra_state);
      }
    }
  };

  StopSignals signals;
  const auto params = model->parameters();
  int consecutive_bad = 0;
  Progress progress("train", steps, "steps", state.step);
  auto t_log = std::chrono::steady_clock::now();
  int64_t items_since_log = 0;
  json last_train = nullptr;
  spdlog::info("training {} steps of {} items ({} per rank, {} rank(s), {}, {}, {}), lr {:.3g}, {} parameters",
               steps - state.step, global_batch, share_end - share_begin, env.world_size, comm->backend(), device.str(),
               to_string(precision), lr, inn::count_parameters(*model));
  while (state.step < steps) {
    const int64_t step = state.step;
    auto idx = order.indices(step).narrow(0, share_begin, share_end - share_begin).to(device);
    auto x = data.train.target.index_select(0, idx), c = data.train.cond.index_select(0, idx);
    std::optional<MatmulPrecisionScope> tf32;  // TF32 through the step (tf32 only), not validation
    tf32.emplace(precision, device);
    adam.clear_grads();
    inn::FlowOutput out;
    {
      AutocastScope autocast(precision, device);  // bfloat16 forward (bf16 only)
      out = model->forward(x, c);
    }
    auto nll_i = 0.5 * out.v.pow(2).sum(1);
    // Sums over this rank's share, scaled so that the all-reduced mean is the global batch mean.
    const double scale = static_cast<double>(env.world_size) / global_batch;
    auto loss = (nll_i.sum() - out.logdet.sum()) * scale;
    kernels::GradientSquares squares;  // this step's weight gradients' sums of squares, for grad_norm
    loss.backward();
    Tensor stats;
    {
      torch::NoGradGuard g;
      auto ref = 0.5 * torch::randn_like(out.v).pow(2).sum(1);
      stats = torch::stack({nll_i.sum(), -out.logdet.sum(), ref.sum()}).detach() * scale;
    }
    std::vector<Tensor> bucket;
    for (const auto& p : params)
      if (p.grad().defined()) bucket.push_back(p.grad());
    bucket.push_back(stats);
    comm->allreduce_mean(bucket);
    double grad_norm;
    if (!t["grad_clip"].is_null()) {
      grad_norm = torch::nn::utils::clip_grad_norm_(params, t["grad_clip"].get<double>());
    } else {
      grad_norm = kernels::gradient_norm(params, &squares);
    }
    const double nll = stats[0].item<double>(), nlogdet = stats[1].item<double>(), total = nll + nlogdet;
    const bool finite = std::isfinite(total) && std::isfinite(grad_norm);
    const double step_lr = scheduled_lr(lr, lr_schedule, step, steps);
    if (finite) {
      set_learning_rate(adam, step_lr);
      adam.step();
      consecutive_bad = 0;
    } else {
      ++consecutive_bad;
      spdlog::warn("step {}: non-finite {} ({}); update skipped", step, std::isfinite(total) ? "gradient norm" : "loss",
                   std::isfinite(total) ? grad_norm : total);
      if (lead) metrics->write({{"step", step + 1}, {"split", "train"}, {"skipped", true}, {"loss", finite ? total : 0.0}});
      if (consecutive_bad >= 10)
        throw Error("training diverged: 10 non-finite steps in a row at step " + std::to_string(step) +
                        "; the last good checkpoint is '" + last_path.string() + "' (try a smaller lr or train.grad_clip)",
                    kExitFailure);
    }
    tf32.reset();
    state.step = step + 1;
    items_since_log += global_batch;
    if (lead && (state.step % log_every == 0 || state.step == steps)) {
      double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t_log).count();
      t_log = std::chrono::steady_clock::now();
      last_train = {{"step", state.step}, {"split", "train"}, {"epoch", order.epoch_of(step)}, {"loss", total}, {"nll", nll},
                    {"nlogdet", nlogdet}, {"reference_nll", stats[2].item<double>()}, {"lr", step_lr}, {"grad_norm", grad_norm},
                    {"items_per_s", secs > 0 ? items_since_log / secs : 0.0}};
      items_since_log = 0;
      metrics->write(last_train);
      double eta = progress.rate() > 0 ? (steps - state.step) / progress.rate() : NAN;
      spdlog::info("step {}/{} loss {:.4f} (nll {:.4f}, -logdet {:.4f}, ref {:.4f}) |g| {:.3g} {:.0f} items/s ETA {}",
                   state.step, steps, total, nll, nlogdet, stats[2].item<double>(), grad_norm,
                   last_train["items_per_s"].get<double>(), format_duration(eta));
    }
    progress.update(state.step);
    if (state.step % val_every == 0 && state.step < steps) validate(state.step);
    if (state.step % ckpt_every == 0 && state.step < steps) save_last();
    if (comm->any(stop_requested())) {
      save_last();
      throw Interrupted("training stopped by a signal at step " + std::to_string(state.step) + "; checkpoint '" +
                        last_path.string() + "' written; rerun with --resume --run-dir " + run_dir);
    }
  }
  validate(state.step);
  save_last();
  if (lead && !fs::exists(best_path)) fs::copy_file(last_path, best_path, fs::copy_options::overwrite_existing);
  json summary = {{"run_dir", run_dir}, {"steps", state.step}, {"world_size", env.world_size}, {"backend", comm->backend()},
                  {"lr", lr}, {"parameters", inn::count_parameters(*model)}, {"train", last_train},
                  {"best_val_loss", state.has_best ? json(state.best_val) : json(nullptr)},
                  {"checkpoint", last_path.string()}, {"energy", lead ? state.extra["energy"] : json(nullptr)}};
  return summary;
}

json evaluate_nll(const std::string& checkpoint, const std::string& data_file, const std::string& device, int64_t batch) {
  auto loaded = io::load_flow_checkpoint(checkpoint);
  const json& d = loaded.config["data"];
  Pairs pairs = load_pairs(data_file, d["condition"], d["target"]);
  if (pairs.cond.size(1) != loaded.model->config().cond_dim || pairs.target.size(1) != loaded.model->config().in_dim)
    throw InputError("'" + data_file + "': datasets are " + std::to_string(pairs.cond.size(1)) + " / " +
                     std::to_string(pairs.target.size(1)) + " wide, the model expects " +
                     std::to_string(loaded.model->config().cond_dim) + " / " + std::to_string(loaded.model->config().in_dim));
  torch::Device dev(device);
  loaded.model->to(dev);
  auto r = evaluate(loaded.model, pairs, dev, batch);
  return json{{"checkpoint", loaded.path}, {"data", data_file}, {"items", pairs.size()}, {"nll", r.loss},
              {"nll_term", r.nll}, {"nlogdet", r.nlogdet}, {"bits_per_dim", r.bpd}};
}

}  // namespace net2net::train
