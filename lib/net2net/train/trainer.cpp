#include "net2net/train/trainer.h"

#include <spdlog/spdlog.h>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <optional>
#include <sstream>
#include <utility>

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
#include "net2net/train/training_images.h"
#include "net2net/train/warm_start.h"
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
    if (config["data"][dataset].is_null()) continue;  // an unconditional flow (model.cond_dim 0)
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
    // Attributes and entries of another type than string count as absent (value() would throw
    // nlohmann's type_error for them).
    const json attributes = reader.attributes();
    auto text = [](const json& object, const char* key, const char* fallback) {
      auto it = object.find(key);
      return it != object.end() && it->is_string() ? it->get<std::string>() : std::string(fallback);
    };
    json experts = json::parse(text(attributes, "experts", "[]"), nullptr, false);
    for (const auto& [dataset, key] : {std::pair{"condition", "condition_expert"}, std::pair{"target", "target_expert"}})
      if (config["data"][key].is_null() && config["data"][dataset].is_string() && experts.is_array())
        for (const auto& e : experts)
          if (e.is_object() && text(e, "name", "") == config["data"][dataset].get<std::string>())
            config["data"][key] = text(e, "spec", "");
    // The names of the label classes, where the cache's source had them.
    json names = json::parse(text(attributes, "class_names", "null"), nullptr, false);
    const bool all_strings = names.is_array() && std::all_of(names.begin(), names.end(), [](const json& n) { return n.is_string(); });
    if (config["data"]["class_names"].is_null() && all_strings) config["data"]["class_names"] = names;
  }
  return info;
}
}  // namespace

json prepare_config(const std::string& config_path, const std::vector<std::string>& overrides, bool seed_given,
                    uint64_t seed, json* data_info, bool require_data) {
  std::vector<std::string> all = overrides;
  if (seed_given) all.push_back("train.seed=" + std::to_string(seed));
  json config = config::load_config(config_path, all);
  // Unconditional (the original's UnconditionalFlatCouplingFlow): no condition dataset, cond_dim 0.
  json& cond_dim = config["model"]["cond_dim"];
  if (config["data"]["condition"].is_null()) {
    if (cond_dim.is_null()) cond_dim = 0;
    if (cond_dim != 0)
      throw ConfigError("config '" + config_path + "': key 'model.cond_dim' is " + cond_dim.dump() +
                        " but data.condition is null (an unconditional flow has model.cond_dim 0)");
  } else if (cond_dim == 0) {
    throw ConfigError("config '" + config_path + "': key 'model.cond_dim' is 0 (unconditional) but data.condition names '" +
                      config["data"]["condition"].get<std::string>() + "': set data.condition to null");
  }
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
    if (name->empty()) continue;  // unconditional: [rows, 0] below
    auto info = reader.info(*name);
    auto rows = reader.read_rows(*name, 0, info.rows);
    io::require_finite_rows(rows.data(), info.rows, info.cols, "cache '" + file + "' dataset '" + *name + "'");
    *out = torch::from_blob(rows.data(), {info.rows, info.cols}, torch::kFloat32).clone();
  }
  if (condition.empty()) p.cond = torch::zeros({p.target.size(0), 0});
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
  Pairs all = load_pairs(d["train"], config::condition_dataset(config), d["target"]);
  if (!d["val"].is_null()) {
    s.train = all;
    s.val = load_pairs(d["val"], config::condition_dataset(config), d["target"]);
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
  const auto type = model->parameters().front().scalar_type();  // float64 for train.precision fp64
  for (int64_t s = 0; s < n; s += batch) {
    int64_t b = std::min(batch, n - s);
    auto out = model->forward(data.target.narrow(0, s, b).to(device, type), data.cond.narrow(0, s, b).to(device, type));
    auto terms = inn::nll_loss(out, 1.0);  // sums; divided by n below
    nll += terms.nll.item<double>();
    nlogdet += terms.nlogdet.item<double>();
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

}  // namespace

// ---------------------------------------------------------------- training
namespace {

// One training run: run() calls the phases in order (prepare, resume or initialise, then per
// step: step, log, validate, checkpoint, stop?; finish). The members are what the phases share;
// the order of their work is the order of an uninterrupted run (the RNG draws, the ActNorm init
// and the energy meter's start included), which exact resume depends on.
class TrainingRun {
 public:
  explicit TrainingRun(const TrainOptions& opt) : opt_(opt), env_(detect_distributed()), lead_(env_.rank == 0) {}

  json run() {
    prepare();
    resume_or_initialise();
    open_outputs();
    StopSignals signals;
    timings_.setup = seconds_since(t_start_);
    Progress progress("train", steps_, "steps", state_.step);
    t_log_ = std::chrono::steady_clock::now();
    spdlog::info("training {} steps of {} items ({} per rank, {} rank(s), {}, {}, {}), lr {:.3g}, {} parameters",
                 steps_ - state_.step, global_batch_, share_end_ - share_begin_, env_.world_size, comm_->backend(),
                 device_.str(), to_string(precision_), lr_, inn::count_parameters(*model_));
    while (state_.step < steps_) {
      auto t0 = std::chrono::steady_clock::now();
      const StepStats s = step(state_.step);
      state_.step += 1;
      log(s, progress);
      progress.update(state_.step);
      timings_.steps += seconds_since(t0);
      if (images_ && TrainingImages::due(state_.step, images_->every(), steps_)) {
        t0 = std::chrono::steady_clock::now();
        images_->write_grid(model_, state_.step);
        timings_.images += seconds_since(t0);
      }
      if (state_.step % val_every_ == 0 && state_.step < steps_) validate(state_.step);
      if (state_.step % ckpt_every_ == 0 && state_.step < steps_) checkpoint(false);
      if (consecutive_bad_ >= kMaxSkippedInARow) {
        // The state that diverged goes to diverged.pt for a look; last.pt stays the last good one
        // (the update before the skipped steps may be what broke the model).
        const fs::path diverged = dir_ / "checkpoints" / "diverged.pt";
        if (lead_) {
          wait_for_writes_logging_errors();  // the divergence is the error to report
          io::save_training_checkpoint(diverged.string(), config_, model_, *adam_, state_);
        }
        const bool has_last = fs::exists(last_path_);
        throw Error("training diverged: " + std::to_string(consecutive_bad_) + " non-finite steps in a row (steps " +
                        std::to_string(state_.step - consecutive_bad_ + 1) + "-" + std::to_string(state_.step) +
                        "); its state is in '" + diverged.string() + "'; " +
                        (has_last ? "the last good checkpoint is '" + last_path_.string() +
                                        "' (--resume with a smaller train.lr or a train.grad_clip)"
                                  : std::string("no checkpoint was written before (try a smaller train.lr or a "
                                                "train.grad_clip)")),
                    kExitFailure);
      }
      if (comm_->any(stop_requested())) {
        checkpoint(true);
        throw Interrupted("training stopped by a signal at step " + std::to_string(state_.step) + "; checkpoint '" +
                          last_path_.string() + "' written; rerun with --resume --run-dir " + run_dir_);
      }
    }
    return finish();
  }

 private:
  struct StepStats {
    int64_t step;
    double nll, nlogdet, reference_nll, total, grad_norm, lr;
  };

  // ---- prepare: device, run directory and config, data, model and optimizer
  void prepare() {
    device_ = torch::Device(opt_.device == "cuda" && env_.world_size > 1 ? "cuda:" + std::to_string(env_.local_rank)
                                                                          : opt_.device);
    if (opt_.deterministic) at::globalContext().setDeterministicAlgorithms(true, false);
    prepare_run_config();
    prepare_data();
    prepare_model();
  }

  void prepare_run_config() {
    run_dir_ = opt_.run_dir;
    if (opt_.resume) {
      if (run_dir_.empty()) throw UsageError("--resume needs --run-dir");
      last_path_ = fs::path(run_dir_) / "checkpoints" / "last.pt";
      resumed_ = io::load_resume_checkpoint(run_dir_, lead_);  // last.pt, or the newest good one if it is damaged
      config_ = resumed_.config;
      if (!opt_.config_path.empty()) {
        json requested = prepare_config(opt_.config_path, opt_.overrides, opt_.seed_given, opt_.seed);
        config_ = config::cinn_schema().resumed_config(config_, requested);
      } else {
        for (const auto& o : opt_.overrides) config::apply_override(config_, o);
        config_ = config::cinn_schema().resumed_config(resumed_.config,
                                                       config::resolve_config(config_, {}, resumed_.path));
      }
    } else {
      if (opt_.config_path.empty()) throw UsageError("--config is required (or --resume --run-dir DIR)");
      config_ = prepare_config(opt_.config_path, opt_.overrides, opt_.seed_given, opt_.seed);
      if (run_dir_.empty()) {
        std::string name = config_["name"].get<std::string>();
        run_dir_ = "runs/" + (name.empty() ? fs::path(opt_.config_path).stem().string() : name);
      }
      last_path_ = fs::path(run_dir_) / "checkpoints" / "last.pt";
      if (fs::exists(last_path_) && !opt_.force)
        throw UsageError("run directory '" + run_dir_ +
                         "' already has a checkpoint; use --resume to continue it or --force to start over");
    }
    dir_ = fs::path(run_dir_);
    best_path_ = dir_ / "checkpoints" / "best.pt";
    const json& t = config_["train"];
    steps_ = t["steps"], batch_ = t["batch_size"], log_every_ = t["log_every"], val_every_ = t["val_every"],
    ckpt_every_ = t["checkpoint_every"];
    seed_ = t["seed"];
    accumulate_ = t["accumulate"];
    lr_schedule_ = t["lr_schedule"];
    precision_ = parse_precision(t["precision"].get<std::string>());
    check_precision(precision_, device_);
    if (lead_) {
      fs::create_directories(dir_ / "checkpoints");
      if (!opt_.resume && opt_.force && config_["train"]["init_from"].is_string()) {
        // --force deletes this folder's checkpoints: they cannot be the warm start's source too.
        std::error_code ec;
        const auto from = fs::weakly_canonical(config_["train"]["init_from"].get<std::string>(), ec).string();
        const auto here = fs::weakly_canonical(dir_, ec).string() + "/";
        if (from + "/" == here || from.rfind(here, 0) == 0)
          throw UsageError("--force would delete the checkpoints of '" + run_dir_ + "', which train.init_from ('" +
                           config_["train"]["init_from"].get<std::string>() + "') reads: start the new run in another folder");
      }
      if (!opt_.resume && opt_.force) {  // nothing of the previous run may be resumed later
        for (const fs::path& old : {best_path_, last_path_, dir_ / "checkpoints" / io::kPreviousCheckpoint,
                                    dir_ / "checkpoints" / "diverged.pt"})
          fs::remove(old);
      }
      write_text_atomically((dir_ / "config.json").string(), config_.dump(2) + "\n");
    }
  }

  // Every rank holds all the data; each takes its share of every batch.
  void prepare_data() {
    data_ = make_split(config_);
    if (data_.train.size() == 0) throw InputError("data.train '" + config_["data"]["train"].get<std::string>() + "' has no rows");
    const auto type = parameter_dtype(precision_);
    data_.train.cond = data_.train.cond.to(device_, type), data_.train.target = data_.train.target.to(device_, type);
    order_.emplace(data_.train.size(), batch_, seed_);
    global_batch_ = order_->batch();
    if (lead_ && global_batch_ < batch_)
      spdlog::warn("train.batch_size {} is larger than the {} training rows: every step takes all of them", batch_,
                   data_.train.size());
    if (global_batch_ < env_.world_size)
      throw ConfigError("train.batch_size " + std::to_string(global_batch_) + " is smaller than the world size " +
                        std::to_string(env_.world_size));
    share_begin_ = global_batch_ * env_.rank / env_.world_size;
    share_end_ = global_batch_ * (env_.rank + 1) / env_.world_size;
  }

  void prepare_model() {
    const json& t = config_["train"];
    auto flow_cfg = config::flow_config_from_json(config_);
    model_ = opt_.resume ? resumed_.model : inn::build_flow(flow_cfg, seed_);  // build_flow seeds the RNG
    if (!opt_.resume && !t["init_from"].is_null()) {
      const auto w = warm_start(model_, t["init_from"].get<std::string>(), t["init_ignore"].get<std::vector<std::string>>());
      if (lead_)
        spdlog::info("warm start from '{}': {} tensors taken, {} ignored, {} not in it (kept initialised), {} of it unused",
                     w.path, w.loaded.size(), w.ignored.size(), w.fresh.size(), w.unused.size());
      warm_start_ = {{"from", w.path}, {"loaded", w.loaded.size()}, {"ignored", w.ignored}, {"not_in_checkpoint", w.fresh},
                     {"unused", w.unused}};
    }
    model_->to(device_);
    inn::convert_floating(*model_, parameter_dtype(precision_));  // floating tensors only: permutations stay int64
    model_->train();
    lr_ = config::effective_learning_rate(config_, env_.world_size);
    auto betas = t["betas"].get<std::vector<double>>();
    adam_ = std::make_unique<kernels::FusedAdam>(model_->parameters(), torch::optim::AdamOptions(lr_)
                                                                         .betas({betas[0], betas[1]})
                                                                         .amsgrad(t["amsgrad"].get<bool>())
                                                                         .weight_decay(t["weight_decay"].get<double>()));
    params_ = model_->parameters();
  }

  // ---- resume (optimizer, RNG, step) or initialise (ActNorm's data-dependent init), then the
  // same parameters on every rank
  void resume_or_initialise() {
    if (opt_.resume) {
      state_ = io::load_training_state(resumed_.path, *adam_);
      if (state_.rng_state.defined()) {
        auto gen = at::detail::getDefaultCPUGenerator();
        std::lock_guard<std::mutex> lock(gen.mutex());
        gen.set_state(state_.rng_state);
      }
      if (state_.extra.is_object() && state_.extra.contains("energy")) previous_energy_ = state_.extra["energy"];
      if (opt_.deterministic && state_.extra.value("threads", 0) != 0 &&
          state_.extra.value("threads", 0) != at::get_num_threads())
        spdlog::warn("--deterministic: the run used {} threads, this part {}; results may differ in the last bits",
                     state_.extra.value("threads", 0), at::get_num_threads());
      spdlog::info("resuming '{}' at step {}", run_dir_, state_.step);
    } else {
      // ActNorm's data-dependent init on the first step's items (all its accumulated batches), the
      // same on every rank.
      torch::NoGradGuard g;
      std::vector<Tensor> first;
      for (int64_t k = 0; k < accumulate_; ++k) first.push_back(order_->indices(k));
      auto idx = torch::cat(first).to(device_);
      model_->forward(data_.train.target.index_select(0, idx), data_.train.cond.index_select(0, idx));
    }
    comm_ = make_communicator(env_, device_.str());
    torch::NoGradGuard g;
    comm_->broadcast(model_->parameters());
  }

  // The energy meter counts from here on; rank 0 alone writes metrics.
  void open_outputs() {
    energy_.emplace();
    if (lead_) metrics_ = std::make_unique<MetricsLog>(dir_ / "metrics.jsonl", state_.step, !opt_.resume);
    if (lead_ && config_["train"]["image_every"].get<int64_t>() > 0) {
      const Pairs& shown = data_.val.size() > 0 ? data_.val : data_.train;
      images_.emplace(config_, shown.cond, shown.target, dir_, device_);
    }
  }

  // ---- one optimizer step on this rank's share of the global batch
  // Batch k of step s is batch s * accumulate + k of the data order (what accumulate = 1 would take
  // in steps s * accumulate + k); its gradients are summed into the step's.
  StepStats step(int64_t step) {
    MatmulPrecisionScope tf32(precision_, device_);  // TF32 through the step (tf32 only), not validation
    adam_->clear_grads();
    // Sums over this rank's share, scaled so that the all-reduced sum is the mean over all the
    // step's items (every batch of the step has global_batch_ of them).
    const double scale = static_cast<double>(env_.world_size) / (static_cast<double>(global_batch_) * accumulate_);
    kernels::GradientSquares squares;  // the weight gradients' sums of squares, for grad_norm
    Tensor stats;
    for (int64_t k = 0; k < accumulate_; ++k) {
      auto idx = order_->indices(step * accumulate_ + k).narrow(0, share_begin_, share_end_ - share_begin_).to(device_);
      auto x = data_.train.target.index_select(0, idx), c = data_.train.cond.index_select(0, idx);
      inn::FlowOutput out;
      {
        AutocastScope autocast(precision_, device_);  // bfloat16 forward (bf16 only)
        out = model_->forward(x, c);
      }
      const inn::NllTerms terms = inn::nll_loss(out, scale);
      // A gradient added to by a later batch is read again by gradient_norm (GradientSquares).
      kernels::backward_recording_squares(terms.loss, squares);
      const Tensor batch_stats = torch::stack({terms.nll, terms.nlogdet, inn::reference_nll(out.v, scale)}).detach();
      stats = k == 0 ? batch_stats : stats + batch_stats;
    }
    stats = stats.to(parameter_dtype(precision_));  // all-reduced in one bucket with the gradients
    std::vector<Tensor> bucket;
    for (const auto& p : params_)
      if (p.grad().defined()) bucket.push_back(p.grad());
    bucket.push_back(stats);
    comm_->allreduce_mean(bucket);
    const json& t = config_["train"];
    StepStats s{step, stats[0].item<double>(), stats[1].item<double>(), 0, 0, 0, 0};
    s.grad_norm = !t["grad_clip"].is_null() ? torch::nn::utils::clip_grad_norm_(params_, t["grad_clip"].get<double>())
                                            : kernels::gradient_norm(params_, &squares);
    s.total = s.nll + s.nlogdet;
    const bool finite = std::isfinite(s.total) && std::isfinite(s.grad_norm);
    s.lr = scheduled_lr(lr_, lr_schedule_, step, steps_);
    if (finite) {
      set_learning_rate(*adam_, s.lr);
      adam_->step();
      consecutive_bad_ = 0;
    } else {
      ++consecutive_bad_;
      spdlog::warn("step {}: non-finite {} ({}); update skipped", step, std::isfinite(s.total) ? "gradient norm" : "loss",
                   std::isfinite(s.total) ? s.grad_norm : s.total);
      if (lead_) metrics_->write({{"step", step + 1}, {"split", "train"}, {"skipped", true}, {"loss", 0.0}});
    }
    s.reference_nll = stats[2].item<double>();
    return s;
  }

  // ---- the train metrics line every log_every steps (and at the last)
  void log(const StepStats& s, const Progress& progress) {
    items_since_log_ += global_batch_ * accumulate_;
    if (!lead_ || (state_.step % log_every_ != 0 && state_.step != steps_)) return;
    double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t_log_).count();
    t_log_ = std::chrono::steady_clock::now();
    last_train_ = {{"step", state_.step}, {"split", "train"}, {"epoch", order_->epoch_of(s.step * accumulate_)}, {"loss", s.total},
                   {"nll", s.nll}, {"nlogdet", s.nlogdet}, {"reference_nll", s.reference_nll}, {"lr", s.lr},
                   {"grad_norm", s.grad_norm}, {"items_per_s", secs > 0 ? items_since_log_ / secs : 0.0}};
    items_since_log_ = 0;
    metrics_->write(last_train_);
    double eta = progress.rate() > 0 ? (steps_ - state_.step) / progress.rate() : NAN;
    spdlog::info("step {}/{} loss {:.4f} (nll {:.4f}, -logdet {:.4f}, ref {:.4f}) |g| {:.3g} {:.0f} items/s ETA {}",
                 state_.step, steps_, s.total, s.nll, s.nlogdet, s.reference_nll, s.grad_norm,
                 last_train_["items_per_s"].get<double>(), format_duration(eta));
  }

  // ---- validation (rank 0): the val metrics line, best.pt when it improves
  void validate(int64_t step) {
    if (!lead_ || data_.val.size() == 0) return;
    const auto t0 = std::chrono::steady_clock::now();
    auto r = evaluate(model_, data_.val, device_);
    timings_.validation += seconds_since(t0);
    metrics_->write({{"step", step}, {"split", "val"}, {"loss", r.loss}, {"nll", r.nll}, {"nlogdet", r.nlogdet},
                     {"bits_per_dim", r.bpd}});
    spdlog::info("step {} val loss {:.4f} (nll {:.4f}, -logdet {:.4f}, {:.4f} bits/dim)", step, r.loss, r.nll, r.nlogdet, r.bpd);
    if (images_) images_->write_loss_plot();
    if (!state_.has_best || r.loss < state_.best_val) {
      state_.best_val = r.loss, state_.has_best = true;
      // best.pt holds the model alone (1 GB of text->BigGAN's 4: it is for translating and
      // evaluating; --resume reads last.pt and last.prev.pt). When last.pt is written at this very
      // step, from that snapshot's copies (no second copy of the model); otherwise a snapshot of
      // its own. Written in the background either way.
      if (step % ckpt_every_ == 0 || step == steps_) {
        best_at_next_checkpoint_ = step;
        return;
      }
      if (all_finite(model_)) {
        const auto t1 = std::chrono::steady_clock::now();
        // An earlier failed write is logged, and the next checkpoint written at once (below).
        if (!wait_for_writes_logging_errors()) earlier_write_failed_ = true;
        auto snapshot = io::snapshot_flow_checkpoint(config_, model_);
        writer_.submit([snapshot, best = best_path_.string()] { io::write_snapshot(best, *snapshot); });
        timings_.checkpoint += seconds_since(t1);
      }
    }
  }

  // ---- last.pt (rank 0): model, optimizer, RNG, step, energy so far. A snapshot taken here, at
  // the step (what --resume continues from exactly), serialised and written by the background
  // writer while the next steps run; `wait`: return only when it is on disk (the last one, a
  // signal's).
  void checkpoint(bool wait) {
    if (!lead_) return;
    if (!all_finite(model_))
      throw Error("model parameters are not finite; last good checkpoint kept at '" + last_path_.string() + "'",
                  kExitFailure);
    const auto t0 = std::chrono::steady_clock::now();
    state_.rng_state = generator_state();
    state_.extra = state_extra();
    // The one before is on disk. When its write failed (logged then), this one is written at once
    // and waited for: if the cause persists (a full disk) its error stops the run here, exit 3;
    // a signal's checkpoint is still tried, and still exits 4 when it lands.
    if (!wait_for_writes_logging_errors() || std::exchange(earlier_write_failed_, false)) wait = true;
    auto snapshot = io::snapshot_training_checkpoint(config_, model_, *adam_, state_);
    // last.prev.pt: always, never, or (auto) while checkpoints are under 1 GiB (the model and
    // AMSGrad's three tensors a parameter).
    const std::string keep = config_["train"]["keep_previous"];
    size_t model_bytes = 0;
    for (const auto& p : params_) model_bytes += p.nbytes();
    const bool keep_previous = keep == "always" || (keep == "auto" && 4 * model_bytes < (size_t(1) << 30));
    // Not a link to last.pt: that would keep a whole 4 GB training checkpoint alive as best.pt
    // once last.pt moves on (a text->BigGAN run folder of 8 GB, not 5).
    auto best_snapshot = best_at_next_checkpoint_ == state_.step ? io::model_part(*snapshot) : nullptr;
    best_at_next_checkpoint_ = -1;
    writer_.submit([snapshot, best_snapshot, keep_previous, last = last_path_.string(), best = best_path_.string(),
                    energy_path = (dir_ / "energy.json").string(), energy = state_.extra["energy"].dump(2) + "\n"] {
      const fs::path prev = fs::path(last).replace_filename(io::kPreviousCheckpoint);
      // best.pt first: a job cut short in between leaves last.pt at the step before, and --resume
      // repeats this validation and writes best.pt again; the other order could leave a last.pt
      // that records a best loss whose model best.pt never got.
      if (best_snapshot) io::write_snapshot(best, *best_snapshot);
      if (keep_previous) io::keep_previous_checkpoint(last);
      io::write_snapshot(last, *snapshot);
      std::error_code ec;
      if (!keep_previous) fs::remove(prev, ec);  // an older one would be resumed from in place of a damaged last.pt
      write_text_atomically(energy_path, energy);
    });
    if (wait) {
      writer_.wait();
    } else {
      timings_.checkpoint += seconds_since(t0), timings_.checkpoints += 1;
    }
  }

  // Waits for the background writes; false (the error logged) when one failed.
  bool wait_for_writes_logging_errors() {
    try {
      writer_.wait();
      return true;
    } catch (const std::exception& e) {
      spdlog::error("an earlier checkpoint was not written: {}", e.what());
      return false;
    }
  }

  // torch's default CPU generator, which checkpoints record for an exact resume.
  static Tensor generator_state() {
    auto gen = at::detail::getDefaultCPUGenerator();
    std::lock_guard<std::mutex> lock(gen.mutex());
    return gen.get_state();
  }

  json state_extra() {
    return json{{"energy", energy_->record(previous_energy_)},
                {"threads", at::get_num_threads()},
                {"world_size", env_.world_size},
                {"tool_version", std::string("net2net ") + kVersion},
                {"device", device_.str()}};
  }

  // ---- the final validation and checkpoint, best.pt at least the last, the summary
  json finish() {
    const auto t0 = std::chrono::steady_clock::now();
    const double validation_before = timings_.validation;
    validate(state_.step);
    // best.pt at least the final model: with no validation set (then it is always the last), or
    // when none was written (a failed write, a resumed run's removed by hand).
    wait_for_writes_logging_errors();
    std::error_code ec;
    if (lead_ && (!state_.has_best || !fs::exists(best_path_, ec))) best_at_next_checkpoint_ = state_.step;
    checkpoint(true);
    timings_.finish = seconds_since(t0) - (timings_.validation - validation_before);
    timings_.total = seconds_since(t_start_);
    json timings = {{"total_s", timings_.total}, {"setup_s", timings_.setup}, {"steps_s", timings_.steps},
                    {"validation_s", timings_.validation}, {"images_s", timings_.images},
                    {"checkpoint_s", timings_.checkpoint}, {"checkpoints", timings_.checkpoints},
                    {"final_checkpoint_s", timings_.finish}, {"checkpoint_write_s", writer_.busy_seconds()}};
    if (lead_)
      spdlog::info("time: {:.1f} s in all: set-up {:.1f} s, steps {:.1f} s, validation {:.1f} s, images {:.1f} s, "
                   "{} checkpoints {:.1f} s (and {:.1f} s written in the background), the last {:.1f} s",
                   timings_.total, timings_.setup, timings_.steps, timings_.validation, timings_.images,
                   timings_.checkpoints, timings_.checkpoint, writer_.busy_seconds(), timings_.finish);
    return {{"run_dir", run_dir_}, {"timings", timings}, {"steps", state_.step}, {"world_size", env_.world_size}, {"backend", comm_->backend()},
            {"lr", lr_}, {"parameters", inn::count_parameters(*model_)}, {"train", last_train_},
            {"best_val_loss", state_.has_best ? json(state_.best_val) : json(nullptr)},
            {"checkpoint", last_path_.string()}, {"energy", lead_ ? state_.extra["energy"] : json(nullptr)},
            {"warm_start", warm_start_}};
  }

  const TrainOptions& opt_;
  const DistEnv env_;
  const bool lead_;
  torch::Device device_{torch::kCPU};
  std::string run_dir_;
  fs::path dir_, last_path_, best_path_;
  json config_;
  io::LoadedFlow resumed_;
  int64_t steps_ = 0, batch_ = 0, accumulate_ = 1, log_every_ = 1, val_every_ = 1, ckpt_every_ = 1;
  uint64_t seed_ = 0;
  std::string lr_schedule_;
  Precision precision_ = Precision::fp32;
  double lr_ = 0;
  Split data_;
  std::optional<BatchOrder> order_;
  int64_t global_batch_ = 0, share_begin_ = 0, share_end_ = 0;
  inn::ConditionalFlow model_{nullptr};
  std::unique_ptr<kernels::FusedAdam> adam_;
  std::vector<Tensor> params_;
  io::TrainingState state_;
  json previous_energy_ = nullptr;
  std::unique_ptr<Communicator> comm_;
  std::optional<EnergyMeter> energy_;
  std::unique_ptr<MetricsLog> metrics_;
  std::optional<TrainingImages> images_;  // rank 0, train.image_every > 0
  static constexpr int kMaxSkippedInARow = 10;
  bool earlier_write_failed_ = false;  // seen (and logged) outside checkpoint(): the next one waits
  int consecutive_bad_ = 0;
  int64_t items_since_log_ = 0;
  std::chrono::steady_clock::time_point t_log_;
  json last_train_ = nullptr;
  json warm_start_ = nullptr;  // what train.init_from gave (a new run only)
  int64_t best_at_next_checkpoint_ = -1;
  // Where the wall time went (the summary's "timings"): the training thread's share of each phase;
  // checkpoint is its part of the periodic checkpoints (serialising, waiting for the previous
  // write); finish the last one's, written before the run ends.
  struct Timings {
    double total = 0, setup = 0, steps = 0, validation = 0, images = 0, checkpoint = 0, finish = 0;
    int64_t checkpoints = 0;
  } timings_;
  const std::chrono::steady_clock::time_point t_start_ = std::chrono::steady_clock::now();
  static double seconds_since(std::chrono::steady_clock::time_point t0) {
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  }
  // Declared last: destroyed first, so a write still running finishes before the rest goes.
  io::BackgroundWriter writer_;  // the step whose validation improved, when last.pt follows at it
};

}  // namespace

json run_training(const TrainOptions& opt) { return TrainingRun(opt).run(); }

json evaluate_nll(const std::string& checkpoint, const std::string& data_file, const std::string& device, int64_t batch) {
  auto loaded = io::load_flow_checkpoint(checkpoint);
  const json& d = loaded.config["data"];
  Pairs pairs = load_pairs(data_file, config::condition_dataset(loaded.config), d["target"]);
  if (pairs.cond.size(1) != loaded.model->config().cond_dim || pairs.target.size(1) != loaded.model->config().in_dim)
    throw InputError("'" + data_file + "': datasets are " + std::to_string(pairs.cond.size(1)) + " / " +
                     std::to_string(pairs.target.size(1)) + " wide, the model expects " +
                     std::to_string(loaded.model->config().cond_dim) + " / " + std::to_string(loaded.model->config().in_dim));
  torch::Device dev(device);
  loaded.model->to(dev);
  inn::convert_floating(*loaded.model, torch::kFloat32);  // as translation does, also for a train.precision fp64 run
  auto r = evaluate(loaded.model, pairs, dev, batch);
  return json{{"checkpoint", loaded.path}, {"data", data_file}, {"items", pairs.size()}, {"nll", r.loss},
              {"nll_term", r.nll}, {"nlogdet", r.nlogdet}, {"bits_per_dim", r.bpd}};
}

}  // namespace net2net::train
