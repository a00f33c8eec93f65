#include "net2net/kernels/dispatch.h"

#include <atomic>
#include <cstdlib>
#include <string>

#include "net2net/kernels/cpu/kernels.h"

namespace net2net::kernels {

// NET2NET_UNFUSED=0 used to turn the kernels off as well (any value did).
bool fused_for_environment_value(const char* value) {
  return value == nullptr || std::string(value).empty() || std::string(value) == "0";
}

namespace {
std::atomic<bool> g_fused{fused_for_environment_value(std::getenv("NET2NET_UNFUSED"))};
}

void set_fused(bool on) { g_fused = on; }
bool fused() { return g_fused.load(); }

const char* to_string(KernelPath path) {
  switch (path) {
    case KernelPath::cpu: return "cpu";
    case KernelPath::cuda: return "cuda";
    default: return "unfused";
  }
}

bool cuda_kernels_built() {
#ifdef NET2NET_TORCH_CUDA
  return true;
#else
  return false;
#endif
}

KernelPath kernel_path(c10::DeviceType device, at::ScalarType type) {
  if (!fused() || (type != torch::kFloat32 && type != torch::kFloat64)) return KernelPath::unfused;
  if (device == c10::DeviceType::CPU) return KernelPath::cpu;
  if (device == c10::DeviceType::CUDA && cuda_kernels_built()) return KernelPath::cuda;
  return KernelPath::unfused;
}

KernelPath kernel_path(at::TensorList tensors) {
  if (tensors.empty()) return KernelPath::unfused;
  const auto device = tensors[0].device();
  const auto type = tensors[0].scalar_type();
  for (const auto& t : tensors)
    if (!t.defined() || t.device() != device || t.scalar_type() != type) return KernelPath::unfused;
  return kernel_path(device.type(), type);
}

bool fused_cpu(at::TensorList tensors) { return kernel_path(tensors) == KernelPath::cpu; }

int cpu_vector_width(at::ScalarType type) {
  return type == torch::kFloat32 ? cpu::table<float>().vector_width : cpu::table<double>().vector_width;
}

}  // namespace net2net::kernels
