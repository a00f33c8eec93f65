// What a person looks at first while a job runs (net2net-train, rank 0):
//  - RUN_DIR/images/step_NNNNNNN.png at steps 1, 2, 4, 8, ... below train.image_every, then every
//    train.image_every steps and at the last: for the first train.image_items validation items
//    (a column each), the decoded target, train.image_samples samples at temperature 1 (the same
//    residuals v at every step, so the rows show the model changing, not the noise), and a
//    transfer row (item i's residual under item i+1's condition: the original's "shift");
//  - RUN_DIR/images/loss.png: train and validation loss per step (from metrics.jsonl), rewritten
//    at each validation.
// The images need a decoder: the target expert (data.target_expert) when it decodes; without
// one, only the loss plot. They use their own generator and leave the training's RNG and the
// model's state as they were, so a run's parameters do not depend on them.
#pragma once
#include <torch/torch.h>

#include <filesystem>
#include <memory>
#include <nlohmann/json.hpp>

#include "net2net/experts/expert.h"
#include "net2net/inn/flow.h"

namespace net2net::train {

class TrainingImages {
 public:
  // `cond`, `target`: the validation pairs (the first image_items rows are drawn).
  TrainingImages(const nlohmann::json& config, const torch::Tensor& cond, const torch::Tensor& target,
                 const std::filesystem::path& run_dir, torch::Device device);
  // Whether step (1-based, after the update) gets a grid: 1, 2, 4, ... below every, then
  // multiples of every; the last step too.
  static bool due(int64_t step, int64_t every, int64_t last);
  bool enabled() const { return every_ > 0; }
  bool can_decode() const { return decoder_ != nullptr; }
  int64_t every() const { return every_; }
  // The grid of `step` (rank 0; the model is put back in the mode it was in).
  void write_grid(inn::ConditionalFlow& model, int64_t step);
  // images/loss.png from RUN_DIR/metrics.jsonl.
  void write_loss_plot() const;

 private:
  void draw_grid(inn::ConditionalFlow& model, int64_t step);
  void draw_loss_plot() const;

  std::filesystem::path dir_, metrics_;
  int64_t every_ = 0;
  torch::Device device_;
  std::unique_ptr<experts::Expert> decoder_;
  torch::Tensor cond_, target_, v_;  // the drawn items and the fixed residuals [samples, K, D]
};

}  // namespace net2net::train
