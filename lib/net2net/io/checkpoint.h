// Model checkpoints: one file holds the model's state (parameters and buffers: permutations,
// ActNorm flags, BatchNorm statistics) and the fully resolved config, so that a checkpoint
// alone rebuilds the model. Written atomically. The format is LibTorch's serialize archive
// (a zip readable by torch.jit.load in Python); docs/formats.md lists its keys.
#pragma once
#include <exception>
#include <functional>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <thread>

#include "net2net/core/error.h"
#include "net2net/inn/flow.h"

namespace net2net::io {

inline constexpr const char* kCheckpointFormat = "net2net.checkpoint";

// A checkpoint file that is damaged (unreadable archive, checksum mismatch): the one error that
// --resume answers by falling back to an earlier checkpoint. Exit 2 like any bad input.
struct CheckpointDamaged : InputError {
  using InputError::InputError;
};
inline constexpr int64_t kCheckpointVersion = 1;

void save_flow_checkpoint(const std::string& path, const nlohmann::json& config, inn::ConditionalFlow& model);

struct LoadedFlow {
  nlohmann::json config;
  inn::ConditionalFlow model{nullptr};
  std::string path;   // the file actually read
  int64_t step = -1;  // a training checkpoint's step (-1: a model-only checkpoint)
};

// Every checkpoint records a content checksum ("checksum", docs/formats.md), verified on load.
// Accepts a checkpoint file or a run directory (then checkpoints/best.pt, else last.pt).
// IoError when the file is missing or unreadable, InputError when it is not a net2net
// checkpoint or is corrupt / truncated. The model is returned in eval mode.
LoadedFlow load_flow_checkpoint(const std::string& path_or_run_dir);

std::string resolve_checkpoint_path(const std::string& path_or_run_dir);

// What a training checkpoint holds besides the model: where training stands.
struct TrainingState {
  int64_t step = 0;
  double best_val = 0;         // best validation loss so far (valid when has_best)
  bool has_best = false;
  torch::Tensor rng_state;     // torch's default CPU generator
  nlohmann::json extra;        // energy record, threads, world size, ...
};

// A model checkpoint plus the optimizer's state and the training state (docs/formats.md).
void save_training_checkpoint(const std::string& path, const nlohmann::json& config, inn::ConditionalFlow& model,
                              torch::optim::Optimizer& optimizer, const TrainingState& state);

// A checkpoint taken at a step and not yet serialised: its archive shares no tensor with the live
// model or optimizer (the model's tensors and the Adam state copied to the CPU). Taking one costs
// a copy of the state (text->BigGAN: 4 GB, ~1-5 s on 2 cores); serialising and writing it
// (write_snapshot, atomically, with its checksum) can then run beside training: what it writes is
// the state at the step, as save_training_checkpoint would have written it then (exact resume).
struct CheckpointSnapshot;
std::shared_ptr<CheckpointSnapshot> snapshot_training_checkpoint(const nlohmann::json& config, inn::ConditionalFlow& model,
                                                                 torch::optim::Optimizer& optimizer, const TrainingState& state);
// The model alone (a model-only checkpoint).
std::shared_ptr<CheckpointSnapshot> snapshot_flow_checkpoint(const nlohmann::json& config, inn::ConditionalFlow& model);
// A snapshot's model alone, as snapshot_flow_checkpoint would have taken it at the same step,
// sharing the snapshot's copies (no second copy): best.pt beside last.pt, a quarter of its size.
std::shared_ptr<CheckpointSnapshot> model_part(CheckpointSnapshot& snapshot);
void write_snapshot(const std::string& path, CheckpointSnapshot& snapshot);

// Writes checkpoints on a thread of its own while training goes on, one job at a time in the
// order submitted: submit() first waits for the job before it; wait() returns once everything
// is on disk and rethrows the error of a failed job (an IoError naming the file), which is also
// logged when it happens. The destructor waits (an error is logged). Not thread-safe itself:
// one training thread submits.
class BackgroundWriter {
 public:
  BackgroundWriter() = default;
  BackgroundWriter(const BackgroundWriter&) = delete;
  BackgroundWriter& operator=(const BackgroundWriter&) = delete;
  ~BackgroundWriter();
  void submit(std::function<void()> job);
  void wait();
  double busy_seconds() const { return busy_seconds_; }  // time the jobs took (read after wait())

 private:
  std::thread thread_;
  std::exception_ptr error_;
  double busy_seconds_ = 0;
};

// Reads the optimizer and training state of a training checkpoint (InputError when absent).
TrainingState load_training_state(const std::string& path, torch::optim::Optimizer& optimizer);

// The previous last.pt, kept beside it so that a damaged last.pt costs one checkpoint interval.
inline constexpr const char* kPreviousCheckpoint = "last.prev.pt";

// Before last.pt is replaced: keeps the current one as last.prev.pt (a hard link, else a copy;
// a warning if neither works).
void keep_previous_checkpoint(const std::string& last_path);

// --resume: RUN_DIR/checkpoints/last.pt when it loads; when it is damaged (CheckpointDamaged) or
// missing, with a warning, the newest (highest step) of last.prev.pt and best.pt (a training
// checkpoint only in run folders of earlier builds) that loads. When
// set_aside_damaged (the rank that writes), a damaged last.pt is renamed last.pt.corrupt and the
// fallback copied to last.pt, so that the run directory still says "resume me". Other errors
// (a newer version, an unreadable file system) are thrown as they are; IoError naming every file
// tried when none loads.
LoadedFlow load_resume_checkpoint(const std::string& run_dir, bool set_aside_damaged);

}  // namespace net2net::io
