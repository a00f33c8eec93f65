#include "net2net/core/runtime.h"

#include <sched.h>
#if defined(__GLIBC__)
#include <malloc.h>
#endif
#include <torch/torch.h>
#include <torch/version.h>

#include <cstdlib>
#include <filesystem>
#include <thread>

#include "net2net/core/error.h"
#include "net2net/kernels/cpu/kernels.h"
#include "net2net/version.h"

namespace net2net {

int available_cpus() {
  cpu_set_t set;
  CPU_ZERO(&set);
  if (sched_getaffinity(0, sizeof(set), &set) == 0) {
    int n = CPU_COUNT(&set);
    if (n > 0) return n;
  }
  unsigned hw = std::thread::hardware_concurrency();
  return hw > 0 ? static_cast<int>(hw) : 1;
}

int set_threads(int threads) {
  int n = threads > 0 ? threads : available_cpus();
  torch::set_num_threads(n);
  return n;
}

void keep_freed_memory() {
#if defined(__GLIBC__)
  // 32 MB is glibc's largest mmap threshold on 64-bit; bigger blocks are still mapped and unmapped.
  if (!std::getenv("MALLOC_MMAP_THRESHOLD_")) mallopt(M_MMAP_THRESHOLD, 32 << 20);
  if (!std::getenv("MALLOC_TRIM_THRESHOLD_")) mallopt(M_TRIM_THRESHOLD, 1 << 30);
#endif
}

void seed_everything(uint64_t seed) { torch::manual_seed(seed); }

bool is_device_name(const std::string& device) {
  if (device == "cpu" || device == "cuda") return true;
  return device.rfind("cuda:", 0) == 0 && device.size() > 5 && device.size() <= 9 &&
         device.find_first_not_of("0123456789", 5) == std::string::npos;
}

std::string check_device(const std::string& device) {
  if (!is_device_name(device)) throw UsageError("--device must be 'cpu' or 'cuda[:N]', got '" + device + "'");
  if (device == "cpu") return device;
#ifndef NET2NET_TORCH_CUDA
  throw UsageError("--device " + device + ": this net2net is built against a LibTorch without CUDA (LibTorch " +
                   std::to_string(TORCH_VERSION_MAJOR) + "." + std::to_string(TORCH_VERSION_MINOR) +
                   "); build it against one with CUDA (README, 'GPUs and LibTorch 2.x') or use --device cpu");
#else
  const int64_t count = static_cast<int64_t>(torch::cuda::device_count());
  if (count == 0)
    throw UsageError("--device " + device + ": no CUDA GPU is visible (driver, CUDA_VISIBLE_DEVICES?); use --device cpu");
  if (device.size() > 5 && std::stoll(device.substr(5)) >= count)
    throw UsageError("--device " + device + ": " + std::to_string(count) + " CUDA GPU(s) visible (cuda:0 to cuda:" +
                     std::to_string(count - 1) + ")");
  return device;
#endif
}

std::string data_dir() {
  if (const char* env = std::getenv("NET2NET_DATA_DIR"); env && *env) return env;
  // Installed (cmake --install, the .deb): PREFIX/bin/<tool> finds PREFIX/share/net2net/data,
  // wherever the prefix was moved; a tool in a build tree falls back to the source tree's data/.
  std::error_code ec;
  const auto has_data = [&ec](const std::filesystem::path& dir) {
    return std::filesystem::exists(dir / "power_profiles.json", ec);
  };
  const std::filesystem::path exe = std::filesystem::read_symlink("/proc/self/exe", ec);
  if (!ec) {
    const std::filesystem::path installed = exe.parent_path().parent_path() / "share" / "net2net" / "data";
    if (has_data(installed)) return installed.string();
  } else {
    // No /proc: the prefixes it may be installed at (a tool in a build tree must not pick these up).
    for (const char* dir : {NET2NET_INSTALL_DATA_DIR, NET2NET_PACKAGE_DATA_DIR})
      if (has_data(dir)) return dir;
  }
  return NET2NET_DEFAULT_DATA_DIR;
}

std::string version_report(const std::string& tool) {
  std::string out = tool + " " + kVersion + " (commit " + git_commit() + ")\n";
  out += "LibTorch " + std::to_string(TORCH_VERSION_MAJOR) + "." + std::to_string(TORCH_VERSION_MINOR) + "." +
         std::to_string(TORCH_VERSION_PATCH);
#ifdef NET2NET_TORCH_CUDA
  const auto gpus = torch::cuda::device_count();
  out += ", CUDA built in, " + std::to_string(gpus) + " GPU(s) visible";
#else
  out += ", CUDA not built in (CPU only)";
#endif
#ifdef USE_C10D_NCCL
  out += ", NCCL yes";
#else
  out += ", NCCL no (Gloo only)";
#endif
  std::string isas;
  for (const auto& c : kernels::cpu::available_capabilities()) isas += (isas.empty() ? "" : ", ") + c;
  out += "\nCPU kernels: " + kernels::cpu::capability() + " (available: " + isas + "); " +
         std::to_string(available_cpus()) + " CPU(s) available\ndata files: " + data_dir();
  std::error_code ec;
  if (!std::filesystem::exists(std::filesystem::path(data_dir()) / "power_profiles.json", ec))
    out += " (missing: set NET2NET_DATA_DIR to the folder with power_profiles.json)";
  return out;
}

}  // namespace net2net
