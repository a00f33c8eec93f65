#include "net2net/io/checkpoint.h"

#include <caffe2/serialize/inline_container.h>
#include <spdlog/spdlog.h>
#include <zlib.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <optional>

#include "net2net/core/atomic_file.h"
#include "net2net/config/cinn_config.h"
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
constexpr const char* kChecksumKey = "checksum";

// The content checksum: zlib's CRC-32 over every tensor record of the archive (by name, in name
// order; the archive's folder name differs with the file name, so it is left out) and over the scalar
// entries that say what the tensors are and where training stands. Why our own: LibTorch's zip
// reader skips the zip's CRCs, so a flipped bit in a tensor loads silently. data.pkl and code/
// hold the module structure (a damaged one fails to load anyway) and change when the checksum
// entry itself is added, so they are not covered.
using ScalarGetter = std::function<bool(const char* key, c10::IValue& value)>;
std::string content_checksum(caffe2::serialize::PyTorchStreamReader& reader, const ScalarGetter& scalar) {
  std::vector<std::pair<std::string, std::string>> records;  // (name from "data/" on, name as listed)
  for (const auto& name : reader.getAllRecords()) {
    const auto at = name.rfind("data/", 0) == 0 ? 0 : name.find("/data/");  // listed with or without the prefix
    if (at != std::string::npos) records.emplace_back(name.substr(at == 0 ? 0 : at + 1), name);
  }
  if (records.empty()) throw InputError("checkpoint archive holds no tensor records");
  std::sort(records.begin(), records.end());
  uLong crc = crc32(0L, Z_NULL, 0);
  auto add = [&crc](const void* data, size_t n) {
    auto p = static_cast<const Bytef*>(data);
    for (size_t done = 0; done < n;) {  // crc32 takes uInt lengths
      const auto chunk = static_cast<uInt>(std::min<size_t>(n - done, 1u << 30));
      crc = crc32(crc, p + done, chunk);
      done += chunk;
    }
  };
  for (const auto& [rest, full] : records) {
    add(rest.data(), rest.size());
    auto [data, size] = reader.getRecord(full);
    add(data.get(), size);
  }
  for (const char* key : {"format", "version", "config", "dtype", "step", "best_val", "train_state"}) {
    c10::IValue v;
    if (!scalar(key, v)) continue;
    add(key, std::strlen(key));
    if (v.isString()) add(v.toStringRef().data(), v.toStringRef().size());
    if (v.isInt()) {
      const int64_t i = v.toInt();
      add(&i, sizeof i);
    }
    if (v.isDouble()) {
      const double d = v.toDouble();
      add(&d, sizeof d);
    }
  }
  char hex[16];
  std::snprintf(hex, sizeof hex, "%08lx", static_cast<unsigned long>(crc));
  return std::string("crc32:") + hex;
}

// The fused kernels index with the permutation buffers unchecked: each must be a permutation of
// 0..D-1 and backward_index its inverse (a checkpoint without a checksum can hold anything).
void check_permutations(const std::string& path, inn::ConditionalFlowImpl& model) {
  const auto& blocks = model.blocks();
  for (size_t b = 0; b < blocks.size(); ++b) {
    const auto& fwd = blocks[b]->shuffle->forward_index;
    const auto& bwd = blocks[b]->shuffle->backward_index;
    const int64_t d = model.config().in_dim;
    auto ident = torch::arange(d, torch::kLong);
    const bool ok = fwd.dim() == 1 && bwd.dim() == 1 && fwd.numel() == d && bwd.numel() == d &&
                    fwd.scalar_type() == torch::kLong && bwd.scalar_type() == torch::kLong &&
                    torch::equal(std::get<0>(fwd.sort()), ident) && torch::equal(bwd.index_select(0, fwd), ident);
    if (!ok)
      throw InputError("checkpoint '" + path + "': block " + std::to_string(b) +
                       "'s permutation (shuffle.forward_index / backward_index) is not a permutation of 0.." +
                       std::to_string(d - 1) + " and its inverse");
  }
}

// InputError when the checkpoint records a checksum that its content does not have. Checkpoints
// written before checksums (no entry) load unchecked.
void verify_checksum(const std::string& path, torch::serialize::InputArchive& archive) {
  c10::IValue recorded;
  if (!archive.try_read(kChecksumKey, recorded) || !recorded.isString()) return;
  std::string actual;
  try {
    caffe2::serialize::PyTorchStreamReader reader(path);
    actual = content_checksum(reader, [&archive](const char* key, c10::IValue& v) { return archive.try_read(key, v); });
  } catch (const c10::Error& e) {
    throw CheckpointDamaged("checkpoint '" + path + "' is not a readable torch archive (corrupt or truncated?): " +
                            e.what_without_backtrace());
  }
  if (actual != recorded.toStringRef())
    throw CheckpointDamaged("checkpoint '" + path + "' is corrupt: its content checksum is " + actual + " but it records " +
                     recorded.toStringRef() + " (damaged on disk or in a copy)");
}

// The scalar entries written to a checkpoint's archive, kept for its checksum.
using Scalars = std::map<std::string, c10::IValue>;
void put(torch::serialize::OutputArchive& archive, Scalars& scalars, const char* key, c10::IValue value) {
  archive.write(key, value);
  scalars[key] = std::move(value);
}

// The model's own archive (nested under "model"): its tensors as CPU copies (a snapshot,
// save_module_copy) when copy, else the tensors themselves.
torch::serialize::OutputArchive model_archive(inn::ConditionalFlow& model, bool copy);
// A model checkpoint's entries: format, version, config, dtype, and the model's archive.
void write_model(torch::serialize::OutputArchive& archive, Scalars& scalars, const nlohmann::json& config,
                 const std::string& dtype, torch::serialize::OutputArchive& model);
std::string dtype_of(inn::ConditionalFlow& model);
// step, best_val, rng_cpu (a copy), train_state.
void write_training_state(torch::serialize::OutputArchive& archive, Scalars& scalars, const TrainingState& state) {
  put(archive, scalars, "step", c10::IValue(state.step));
  put(archive, scalars, "best_val", c10::IValue(state.has_best ? state.best_val : std::nan("")));
  if (state.rng_state.defined()) archive.write("rng_cpu", state.rng_state.clone());
  put(archive, scalars, "train_state", c10::IValue(state.extra.dump()));
}
// The archive's bytes in memory (LibTorch's zip; the records are the tensors' bytes).
std::string archive_bytes(torch::serialize::OutputArchive& archive, size_t reserve) {
  std::string out;
  out.reserve(reserve);
  archive.save_to([&out](const void* data, size_t n) {
    out.append(static_cast<const char*>(data), n);
    return n;
  });
  return out;
}

// Lets PyTorchStreamReader read an archive held in memory.
class MemoryReader : public caffe2::serialize::ReadAdapterInterface {
 public:
  explicit MemoryReader(const std::string& bytes) : bytes_(bytes) {}
  size_t size() const override { return bytes_.size(); }
  size_t read(uint64_t pos, void* buf, size_t n, const char* = "") const override {
    if (pos >= bytes_.size()) return 0;
    n = std::min<size_t>(n, bytes_.size() - pos);
    std::memcpy(buf, bytes_.data() + pos, n);
    return n;
  }

 private:
  const std::string& bytes_;
};

// Serialises the archive in memory (not a first write of the file: text->BigGAN's is 4 GB), hashes
// it record by record and writes the checksum entry into the archive.
void add_checksum(torch::serialize::OutputArchive& archive, const Scalars& scalars, size_t reserve) {
  auto get = [&scalars](const char* key, c10::IValue& v) {
    auto it = scalars.find(key);
    if (it == scalars.end()) return false;
    v = it->second;
    return true;
  };
  const std::string first = archive_bytes(archive, reserve);
  caffe2::serialize::PyTorchStreamReader reader(std::make_shared<MemoryReader>(first));
  archive.write(kChecksumKey, c10::IValue(content_checksum(reader, get)));
}

// Atomically: the checksum from a serialisation in memory (add_checksum), then the archive
// serialised once more straight into the temporary file.
void write_archive(const std::string& path, torch::serialize::OutputArchive& archive, const Scalars& scalars,
                   size_t reserve) {
  write_atomically(path, [&](const std::string& tmp) {
    try {
      add_checksum(archive, scalars, reserve);
      archive.save_to(tmp);
    } catch (const c10::Error& e) {
      throw IoError("cannot write checkpoint '" + tmp + "': " + e.what_without_backtrace());
    }
  });
}

// Bytes of the model's tensors (a first guess of the archive's size).
size_t tensor_bytes(inn::ConditionalFlow& model) {
  size_t n = 0;
  for (const auto& t : model->parameters()) n += t.nbytes();
  for (const auto& t : model->buffers()) n += t.nbytes();
  return n;
}
// An archive is a little larger than its tensors (zip headers, 64-byte alignment, pickles): a
// reserve that falls short makes the string grow by doubling, a copy of the whole (text->BigGAN:
// 12 s instead of 5 for 4 GB).
size_t with_margin(size_t bytes) { return bytes + bytes / 32 + (size_t(16) << 20); }

// nn::Module::save's layout (parameters, buffers, then each child as a nested archive; a coupling
// its own, inn/layers.h), with copies of the tensors on the CPU: the archive shares nothing with
// the live model. A test holds it to model->save tensor by tensor.
void save_module_copy(const torch::nn::Module& module, torch::serialize::OutputArchive& archive) {
  if (const auto* coupling = dynamic_cast<const inn::DoubleCouplingImpl*>(&module)) {
    coupling->save(archive, /*copy=*/true);
    return;
  }
  auto copy = [](const torch::Tensor& t) { return t.detach().to(torch::kCPU, t.scalar_type(), false, /*copy=*/true); };
  for (const auto& p : module.named_parameters(/*recurse=*/false))
    archive.write(p.key(), copy(p.value()).set_requires_grad(p.value().requires_grad()));
  for (const auto& b : module.named_buffers(/*recurse=*/false)) archive.write(b.key(), copy(b.value()), /*is_buffer=*/true);
  for (const auto& child : module.named_children()) {
    if (!child.value()->is_serializable()) continue;
    torch::serialize::OutputArchive child_archive(archive.compilation_unit());
    save_module_copy(*child.value(), child_archive);
    archive.write(child.key(), child_archive);
  }
}
}  // namespace

void save_flow_checkpoint(const std::string& path, const nlohmann::json& config, inn::ConditionalFlow& model) {
  torch::serialize::OutputArchive archive;
  Scalars scalars;
  auto tensors = model_archive(model, /*copy=*/false);
  write_model(archive, scalars, config, dtype_of(model), tensors);
  write_archive(path, archive, scalars, with_margin(tensor_bytes(model)));
}

void save_training_checkpoint(const std::string& path, const nlohmann::json& config, inn::ConditionalFlow& model,
                              torch::optim::Optimizer& optimizer, const TrainingState& state) {
  torch::serialize::OutputArchive archive;
  Scalars scalars;
  auto tensors = model_archive(model, /*copy=*/false);
  write_model(archive, scalars, config, dtype_of(model), tensors);
  torch::serialize::OutputArchive opt_archive;
  optimizer.save(opt_archive);
  archive.write("optimizer", opt_archive);
  write_training_state(archive, scalars, state);
  // Adam (AMSGrad) holds three tensors per parameter: four times the model, and a little more.
  write_archive(path, archive, scalars, with_margin(4 * tensor_bytes(model)));
}

struct CheckpointSnapshot {
  torch::serialize::OutputArchive archive;
  Scalars scalars;
  size_t reserve = 0;
  // The model's part, which model_part() writes again without the rest: the copies are shared.
  nlohmann::json config;
  std::string dtype;
  torch::serialize::OutputArchive model;
  size_t model_reserve = 0;
};

std::shared_ptr<CheckpointSnapshot> snapshot_flow_checkpoint(const nlohmann::json& config, inn::ConditionalFlow& model) {
  auto snap = std::make_shared<CheckpointSnapshot>();
  snap->config = config;
  snap->dtype = dtype_of(model);
  snap->model = model_archive(model, /*copy=*/true);
  write_model(snap->archive, snap->scalars, config, snap->dtype, snap->model);
  snap->reserve = snap->model_reserve = with_margin(tensor_bytes(model));
  return snap;
}

std::shared_ptr<CheckpointSnapshot> model_part(CheckpointSnapshot& snapshot) {
  auto part = std::make_shared<CheckpointSnapshot>();
  part->config = snapshot.config;
  part->dtype = snapshot.dtype;
  // A nested archive is a handle to one module: both archives hold the same tensor copies.
  write_model(part->archive, part->scalars, part->config, part->dtype, snapshot.model);
  part->reserve = part->model_reserve = snapshot.model_reserve;
  return part;
}

std::shared_ptr<CheckpointSnapshot> snapshot_training_checkpoint(const nlohmann::json& config, inn::ConditionalFlow& model,
                                                                 torch::optim::Optimizer& optimizer, const TrainingState& state) {
  if (!dynamic_cast<torch::optim::Adam*>(&optimizer))
    throw Error("a checkpoint snapshot needs an Adam optimizer", kExitFailure);  // all net2net trains
  auto snap = snapshot_flow_checkpoint(config, model);
  auto& archive = snap->archive;
  // The optimizer's state as CPU copies: swapped into the optimizer for its save (which writes
  // references), then its own tensors back (on a GPU they stay where they are: no second set there).
  torch::NoGradGuard no_grad;
  struct Held {
    torch::optim::AdamParamState* state;
    torch::Tensor m, v, vmax;
  };
  std::vector<Held> held;
  auto cpu_copy = [](const torch::Tensor& t) {
    return t.defined() ? t.detach().to(torch::kCPU, t.scalar_type(), false, /*copy=*/true) : t;
  };
  for (const auto& group : optimizer.param_groups())
    for (const auto& p : group.params())
      if (auto* st = kernels::adam_state(optimizer, p)) {
        held.push_back({st, st->exp_avg(), st->exp_avg_sq(), st->max_exp_avg_sq()});
        st->exp_avg(cpu_copy(st->exp_avg()));
        st->exp_avg_sq(cpu_copy(st->exp_avg_sq()));
        if (st->max_exp_avg_sq().defined()) st->max_exp_avg_sq(cpu_copy(st->max_exp_avg_sq()));
      }
  torch::serialize::OutputArchive opt_archive(archive.compilation_unit());
  auto restore = [&held] {
    for (auto& h : held) {
      h.state->exp_avg(h.m);
      h.state->exp_avg_sq(h.v);
      if (h.vmax.defined()) h.state->max_exp_avg_sq(h.vmax);
    }
  };
  try {
    optimizer.save(opt_archive);
  } catch (...) {
    restore();
    throw;
  }
  restore();
  archive.write("optimizer", opt_archive);
  write_training_state(archive, snap->scalars, state);
  snap->reserve = with_margin(4 * tensor_bytes(model));
  return snap;
}


void write_snapshot(const std::string& path, CheckpointSnapshot& snapshot) {
  write_archive(path, snapshot.archive, snapshot.scalars, snapshot.reserve);
}

BackgroundWriter::~BackgroundWriter() {
  try {
    wait();
  } catch (const std::exception& e) {
    spdlog::error("{}", e.what());
  }
}

void BackgroundWriter::submit(std::function<void()> job) {
  wait();
  thread_ = std::thread([this, job = std::move(job)] {
    const auto t0 = std::chrono::steady_clock::now();
    try {
      job();
    } catch (const std::exception& e) {
      spdlog::error("background checkpoint write failed: {}", e.what());
      error_ = std::current_exception();
    } catch (...) {
      error_ = std::current_exception();
    }
    busy_seconds_ += std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  });
}

void BackgroundWriter::wait() {
  if (thread_.joinable()) thread_.join();
  if (error_) {
    auto e = error_;
    error_ = nullptr;
    std::rethrow_exception(e);
  }
}

TrainingState load_training_state(const std::string& path, torch::optim::Optimizer& optimizer) {
  torch::serialize::InputArchive archive;
  try {
    archive.load_from(path, torch::Device(torch::kCPU));  // wherever it was written (a GPU run too)
  } catch (const std::exception& e) {
    throw CheckpointDamaged("checkpoint '" + path + "' is not a readable torch archive (corrupt or truncated?)");
  }
  verify_checksum(path, archive);
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
std::string dtype_of(inn::ConditionalFlow& model) { return dtype_name(model->parameters().front().scalar_type()); }

torch::serialize::OutputArchive model_archive(inn::ConditionalFlow& model, bool copy) {
  torch::serialize::OutputArchive out;
  if (copy)
    save_module_copy(*model, out);
  else
    model->save(out);
  return out;
}

void write_model(torch::serialize::OutputArchive& archive, Scalars& scalars, const nlohmann::json& config,
                 const std::string& dtype, torch::serialize::OutputArchive& model) {
  put(archive, scalars, "format", c10::IValue(std::string(kCheckpointFormat)));
  put(archive, scalars, "version", c10::IValue(kCheckpointVersion));
  put(archive, scalars, "config", c10::IValue(config.dump()));
  put(archive, scalars, "dtype", c10::IValue(dtype));
  archive.write("model", model);
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
    throw CheckpointDamaged("checkpoint '" + path + "' is not a readable torch archive (corrupt or truncated?): " +
                            e.what_without_backtrace());
  } catch (const std::exception& e) {  // LibTorch's unpickler also throws std::out_of_range & co.
    throw CheckpointDamaged("checkpoint '" + path + "' is not a readable torch archive (corrupt or truncated?): " +
                            e.what());
  }
  verify_checksum(path, archive);
  c10::IValue format, version, config, dtype, step;
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
  if (archive.try_read("step", step) && step.isInt()) out.step = step.toInt();

  // The config through the key table (a hand-made or damaged one may hold any value), then the model.
  try {
    out.model = inn::ConditionalFlow(config::flow_config_from_json(config::resolve_config(out.config, {}, path)));
  } catch (const std::exception& e) {
    throw InputError("checkpoint '" + path + "': cannot rebuild the model from its config: " + e.what());
  }
  inn::convert_floating(*out.model, dt);
  try {
    torch::serialize::InputArchive model_archive;
    archive.read("model", model_archive);
    out.model->load(model_archive);
  } catch (const c10::Error& e) {
    throw InputError("checkpoint '" + path + "': model state does not match its config: " + e.what_without_backtrace());
  } catch (const std::exception& e) {
    throw InputError("checkpoint '" + path + "': model state does not match its config: " + e.what());
  }
  check_permutations(path, *out.model);
  out.model->eval();
  return out;
}

void keep_previous_checkpoint(const std::string& last_path) {
  std::error_code ec;
  if (!fs::exists(last_path, ec)) return;
  const fs::path prev = fs::path(last_path).replace_filename(kPreviousCheckpoint);
  const fs::path tmp = prev.string() + ".tmp";
  fs::remove(tmp, ec);
  fs::create_hard_link(last_path, tmp, ec);  // the same file: no copy; last.pt is replaced by rename
  if (ec) fs::copy_file(last_path, tmp, fs::copy_options::overwrite_existing, ec);
  if (!ec) fs::rename(tmp, prev, ec);
  if (ec) spdlog::warn("cannot keep the previous checkpoint as '{}': {}", prev.string(), ec.message());
}

LoadedFlow load_resume_checkpoint(const std::string& run_dir, bool set_aside_damaged) {
  const fs::path dir = fs::path(run_dir) / "checkpoints";
  const fs::path last = dir / "last.pt";
  std::vector<std::string> problems;
  auto try_load = [&](const fs::path& p) -> std::optional<LoadedFlow> {
    std::error_code ec;
    if (!fs::exists(p, ec)) {
      problems.push_back("'" + p.string() + "' does not exist");
      return std::nullopt;
    }
    try {
      return load_flow_checkpoint(p.string());
    } catch (const CheckpointDamaged& e) {
      problems.push_back(e.what());
      return std::nullopt;
    }
  };
  if (auto good = try_load(last)) return *good;
  std::optional<LoadedFlow> best;
  for (const fs::path& p : {dir / kPreviousCheckpoint, dir / "best.pt"}) {
    auto c = try_load(p);
    if (c && c->step >= 0 && (!best || c->step > best->step)) best = std::move(c);
  }
  if (!best) {
    std::string all;
    for (const auto& p : problems) all += "\n  " + p;
    throw IoError("--resume: no checkpoint of '" + run_dir + "' can be resumed:" + all);
  }
  spdlog::warn("--resume: {}; resuming from '{}' (step {}) instead", problems.front(), best->path, best->step);
  // Kept for inspection, and out of the way: the next checkpoint must not keep it as last.prev.pt.
  if (set_aside_damaged) {
    std::error_code ec;
    if (fs::exists(last, ec)) {
      fs::rename(last, last.string() + ".corrupt", ec);
      if (!ec) spdlog::warn("the damaged '{}' is now '{}.corrupt'", last.string(), last.string());
    }
    // last.pt again at once (a copy of the fallback, atomically): a job killed before its next
    // checkpoint is still resumed, not started afresh.
    const std::string tmp = last.string() + ".tmp";
    fs::copy_file(best->path, tmp, fs::copy_options::overwrite_existing, ec);
    if (!ec) fs::rename(tmp, last, ec);
    if (ec) spdlog::warn("cannot copy '{}' to '{}': {}", best->path, last.string(), ec.message());
  }
  return *best;
}

}  // namespace net2net::io
