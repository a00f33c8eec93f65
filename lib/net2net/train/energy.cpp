#include "net2net/train/energy.h"

#include <dlfcn.h>
#include <sys/resource.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

#include "net2net/core/runtime.h"

namespace net2net::train {
namespace fs = std::filesystem;
using nlohmann::json;

double process_cpu_seconds() {
  rusage u{};
  getrusage(RUSAGE_SELF, &u);
  return u.ru_utime.tv_sec + u.ru_utime.tv_usec * 1e-6 + u.ru_stime.tv_sec + u.ru_stime.tv_usec * 1e-6;
}

std::string cpu_model() {
  std::ifstream in("/proc/cpuinfo");
  std::string line;
  while (std::getline(in, line))
    if (line.rfind("model name", 0) == 0) {
      auto colon = line.find(':');
      if (colon != std::string::npos) return line.substr(colon + 2);
    }
  return "unknown";
}

namespace {
bool read_u64(const std::string& path, uint64_t& out) {
  std::ifstream in(path);
  return static_cast<bool>(in >> out);
}
std::string read_line(const std::string& path) {
  std::ifstream in(path);
  std::string s;
  std::getline(in, s);
  return s;
}

// NVML through dlopen: no build dependency, and machines without a GPU driver just record that.
using NvmlInit = int (*)();
using NvmlCount = int (*)(unsigned*);
using NvmlHandle = int (*)(unsigned, void**);
using NvmlEnergy = int (*)(void*, unsigned long long*);
using NvmlName = int (*)(void*, char*, unsigned);
}  // namespace

EnergyMeter::EnergyMeter(std::string root) : root_(std::move(root)), t0_(std::chrono::steady_clock::now()) {
  cpu0_ = process_cpu_seconds();
  // RAPL: the package domains (intel-rapl:N), whose energy includes their subdomains.
  std::error_code ec;
  if (fs::is_directory(root_, ec)) {
    for (const auto& e : fs::directory_iterator(root_, ec)) {
      std::string name = e.path().filename().string();
      if (name.rfind("intel-rapl:", 0) != 0 || name.find(':', 11) != std::string::npos) continue;
      RaplDomain d;
      d.path = e.path().string();
      d.name = read_line(d.path + "/name");
      if (!read_u64(d.path + "/energy_uj", d.last)) {
        rapl_note_ = "RAPL counters exist but are not readable (" + d.path + "/energy_uj; root only on many systems)";
        continue;
      }
      read_u64(d.path + "/max_energy_range_uj", d.max_range);
      rapl_.push_back(d);
    }
  }
  if (rapl_.empty() && rapl_note_.empty()) rapl_note_ = "no RAPL powercap counters under " + root_;
  // NVML.
  nvml_ = dlopen("libnvidia-ml.so.1", RTLD_NOW | RTLD_LOCAL);
  if (!nvml_) {
    gpu_note_ = "NVML not available (libnvidia-ml.so.1 not found)";
    return;
  }
  auto init = reinterpret_cast<NvmlInit>(dlsym(nvml_, "nvmlInit_v2"));
  auto count = reinterpret_cast<NvmlCount>(dlsym(nvml_, "nvmlDeviceGetCount_v2"));
  auto handle = reinterpret_cast<NvmlHandle>(dlsym(nvml_, "nvmlDeviceGetHandleByIndex_v2"));
  auto energy = reinterpret_cast<NvmlEnergy>(dlsym(nvml_, "nvmlDeviceGetTotalEnergyConsumption"));
  auto gname = reinterpret_cast<NvmlName>(dlsym(nvml_, "nvmlDeviceGetName"));
  unsigned n = 0;
  if (!init || !count || !handle || !energy || init() != 0 || count(&n) != 0) {
    gpu_note_ = "NVML present but not usable here (no permission, or no driver)";
    return;
  }
  for (unsigned i = 0; i < n; ++i) {
    void* h = nullptr;
    unsigned long long mj = 0;
    char name[96] = {0};
    if (handle(i, &h) != 0 || energy(h, &mj) != 0) {
      gpu_note_ = "NVML cannot read the energy counter of GPU " + std::to_string(i);
      gpu_start_mj_.clear();
      return;
    }
    if (gname) gname(h, name, sizeof name);
    gpu_names_.push_back(name);
    gpu_start_mj_.push_back(mj);
  }
}

EnergyMeter::~EnergyMeter() {
  if (nvml_) dlclose(nvml_);
}

void EnergyMeter::poll() {
  for (auto& d : rapl_) {
    uint64_t now = 0;
    if (!read_u64(d.path + "/energy_uj", now)) continue;
    uint64_t delta = now >= d.last ? now - d.last : now + (d.max_range - d.last);  // wrapped
    d.joules += delta * 1e-6;
    d.last = now;
  }
  if (!gpu_start_mj_.empty()) {
    auto handle = reinterpret_cast<NvmlHandle>(dlsym(nvml_, "nvmlDeviceGetHandleByIndex_v2"));
    auto energy = reinterpret_cast<NvmlEnergy>(dlsym(nvml_, "nvmlDeviceGetTotalEnergyConsumption"));
    double total = 0;
    for (unsigned i = 0; i < gpu_start_mj_.size(); ++i) {
      void* h = nullptr;
      unsigned long long mj = 0;
      if (handle(i, &h) == 0 && energy(h, &mj) == 0) total += (mj - gpu_start_mj_[i]) * 1e-3;
    }
    gpu_joules_ = total;
  }
}

json EnergyMeter::record(const json& previous) {
  poll();
  double wall = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0_).count();
  double cpu = process_cpu_seconds() - cpu0_;
  double rapl_j = 0;
  json domains = json::array();
  for (const auto& d : rapl_) rapl_j += d.joules, domains.push_back({{"name", d.name}, {"joules", d.joules}});
  auto prev = [&](const char* k) { return previous.is_object() && previous.contains(k) ? previous[k].get<double>() : 0.0; };
  char host[256] = {0};
  gethostname(host, sizeof host - 1);
  json out = {
      {"wall_seconds", wall + prev("wall_seconds")},
      {"cpu_seconds", cpu + prev("cpu_seconds")},
      {"parts", (previous.is_object() && previous.contains("parts") ? previous["parts"].get<int>() : 0) + 1},
      {"hardware", {{"cpu_model", cpu_model()}, {"cpus", available_cpus()}, {"gpus", gpu_names_}, {"host", host}}},
      {"cpu_energy", {{"measured", !rapl_.empty()}, {"joules", rapl_j + prev("cpu_joules")}, {"domains", domains},
                      {"note", rapl_.empty() ? rapl_note_ : ""}}},
      {"gpu_energy", {{"measured", !gpu_start_mj_.empty()}, {"joules", gpu_joules_ + prev("gpu_joules")},
                      {"note", gpu_start_mj_.empty() ? gpu_note_ : ""}}},
      {"cpu_joules", rapl_j + prev("cpu_joules")},
      {"gpu_joules", gpu_joules_ + prev("gpu_joules")},
  };
  return out;
}

}  // namespace net2net::train
