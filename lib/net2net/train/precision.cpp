#include "net2net/train/precision.h"

#include "net2net/core/error.h"

#ifdef NET2NET_TORCH_CUDA
#include <ATen/autocast_mode.h>
#include <ATen/cuda/CUDAContext.h>
#endif

namespace net2net::train {

Precision parse_precision(const std::string& name) {
  if (name == "fp32") return Precision::fp32;
  if (name == "tf32") return Precision::tf32;
  if (name == "bf16") return Precision::bf16;
  if (name == "fp64") return Precision::fp64;
  throw ConfigError("key 'train.precision': must be fp32, tf32, bf16 or fp64, got '" + name + "'");
}

const char* to_string(Precision p) {
  switch (p) {
    case Precision::tf32: return "tf32";
    case Precision::bf16: return "bf16";
    case Precision::fp64: return "fp64";
    default: return "fp32";
  }
}

torch::Dtype parameter_dtype(Precision p) { return p == Precision::fp64 ? torch::kFloat64 : torch::kFloat32; }

void check_precision(Precision p, const torch::Device& device) {
  if (p == Precision::fp32 || p == Precision::fp64) return;
  if (!device.is_cuda())
    throw ConfigError(std::string("train.precision=") + to_string(p) + " needs --device cuda (a GPU of compute capability " +
                      "8.0 or later); on the " + device.str() + " use train.precision=fp32");
#ifdef NET2NET_TORCH_CUDA
  const auto* props = at::cuda::getDeviceProperties(device.has_index() ? device.index() : at::cuda::current_device());
  if (props->major < 8)
    throw ConfigError(std::string("train.precision=") + to_string(p) + ": " + props->name + " has compute capability " +
                      std::to_string(props->major) + "." + std::to_string(props->minor) +
                      "; TF32 and bfloat16 need 8.0 or later (use train.precision=fp32)");
#endif
}

MatmulPrecisionScope::MatmulPrecisionScope(Precision p, const torch::Device& device) {
  if (p != Precision::tf32) return;
#ifdef NET2NET_TORCH_CUDA
  active_ = device.is_cuda();  // check_precision, once before training, refuses anything else
  if (!active_) return;
  previous_ = at::globalContext().allowTF32CuBLAS();
  at::globalContext().setAllowTF32CuBLAS(true);
#endif
}

MatmulPrecisionScope::~MatmulPrecisionScope() {
#ifdef NET2NET_TORCH_CUDA
  if (active_) at::globalContext().setAllowTF32CuBLAS(previous_);
#endif
}

AutocastScope::AutocastScope(Precision p, const torch::Device& device) {
  if (p != Precision::bf16) return;
#ifdef NET2NET_TORCH_CUDA
  active_ = device.is_cuda();  // check_precision, once before training, refuses anything else
  if (!active_) return;
  previous_enabled_ = at::autocast::is_autocast_enabled(at::kCUDA);
  previous_dtype_ = at::autocast::get_autocast_dtype(at::kCUDA);
  at::autocast::set_autocast_dtype(at::kCUDA, at::kBFloat16);
  at::autocast::set_autocast_enabled(at::kCUDA, true);
  at::autocast::increment_nesting();
#endif
}

AutocastScope::~AutocastScope() {
#ifdef NET2NET_TORCH_CUDA
  if (!active_) return;
  // The bfloat16 copies of the weights that autocast cached in this scope are dropped with it.
  if (at::autocast::decrement_nesting() == 0) at::autocast::clear_cache();
  at::autocast::set_autocast_enabled(at::kCUDA, previous_enabled_);
  at::autocast::set_autocast_dtype(at::kCUDA, previous_dtype_);
#endif
}

}  // namespace net2net::train
