// Numeric precision of a training step (train.precision), for GPUs:
//   fp32  float32 throughout (the default, and the only choice on the CPU);
//   tf32  float32 tensors, matmuls on the tensor cores' TF32 (10-bit mantissa inputs, float32
//         accumulation; Ampere and later);
//   bf16  autocast: matmuls in bfloat16, while the parameters, the coupling and its log-dets,
//         the loss and the optimizer state stay float32 (kernels/affine_coupling takes s and t in
//         x's type). bfloat16 has float32's range, so no loss scaling is needed;
//   fp64  float64 parameters, data and optimizer state (CPU or GPU): for exact checks (gradient
//         accumulation against one large batch, debugging a divergence), ~2-4x slower.
// The cINN's validation runs in the model's type; translation and evaluation in float32 (a
// float64 checkpoint is converted when loaded for them).
#pragma once
#include <torch/torch.h>

#include <string>

namespace net2net::train {

enum class Precision { fp32, tf32, bf16, fp64 };
// "fp32" | "tf32" | "bf16" | "fp64"; anything else is a ConfigError naming train.precision.
Precision parse_precision(const std::string& name);
const char* to_string(Precision p);
// Throws ConfigError where `device` cannot train in `p`: tf32 and bf16 need a CUDA device of
// compute capability 8.0 (Ampere) or later.
void check_precision(Precision p, const torch::Device& device);
// The type of the parameters and data: float64 for fp64, else float32.
torch::Dtype parameter_dtype(Precision p);

// The scopes below act on a CUDA device only and do not check it (they run every step):
// check_precision once first.
// While alive, CUDA matmuls (process-wide) use TF32 where p is tf32 (around a whole training step:
// forward, backward and optimizer); the previous setting comes back when it ends. Else nothing.
class MatmulPrecisionScope {
 public:
  MatmulPrecisionScope(Precision p, const torch::Device& device);
  ~MatmulPrecisionScope();
  MatmulPrecisionScope(const MatmulPrecisionScope&) = delete;
  MatmulPrecisionScope& operator=(const MatmulPrecisionScope&) = delete;

 private:
  bool active_ = false, previous_ = false;
};

// While alive, ops on `device` run under bfloat16 autocast where p is bf16 (around the forward
// pass only: the backward follows the forward's types by itself); the previous autocast state
// comes back when it ends. Else nothing.
class AutocastScope {
 public:
  AutocastScope(Precision p, const torch::Device& device);
  ~AutocastScope();
  AutocastScope(const AutocastScope&) = delete;
  AutocastScope& operator=(const AutocastScope&) = delete;

 private:
  bool active_ = false, previous_enabled_ = false;
  at::ScalarType previous_dtype_ = at::kFloat;
};

}  // namespace net2net::train
