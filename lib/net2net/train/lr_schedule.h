// Learning-rate schedules shared by the cINN and the expert trainers. The rate is a function of
// the step alone, so an exact resume (or a data-parallel rank) recomputes it without state.
#pragma once
#include <torch/torch.h>

#include <cmath>
#include <cstdint>
#include <string>

namespace net2net::train {

// "constant": base (the reference); "cosine": base * (1 + cos(pi * step / total)) / 2, from base
// at step 0 to 0 at the last step (short runs end much lower in loss than at a constant rate).
inline double scheduled_lr(double base, const std::string& schedule, int64_t step, int64_t total) {
  if (schedule != "cosine" || total <= 0) return base;
  const double f = std::min(1.0, static_cast<double>(step) / static_cast<double>(total));
  return base * 0.5 * (1.0 + std::cos(M_PI * f));
}

inline void set_learning_rate(torch::optim::Adam& adam, double lr) {
  for (auto& group : adam.param_groups()) static_cast<torch::optim::AdamOptions&>(group.options()).lr(lr);
}

}  // namespace net2net::train
