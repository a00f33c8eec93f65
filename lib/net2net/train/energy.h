// What an energy report needs, recorded while a job runs: wall time, CPU time, the hardware,
// and measured energy where the machine lets us read it (RAPL powercap counters for CPU
// packages, NVML for GPUs). Unreadable counters are recorded as such, never an error.
#pragma once
#include <chrono>
#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

namespace net2net::train {

class EnergyMeter {
 public:
  // `powercap_root`: where RAPL lives (/sys/class/powercap; tests point it elsewhere).
  explicit EnergyMeter(std::string powercap_root = "/sys/class/powercap");
  ~EnergyMeter();
  // Reads the counters (call now and then: RAPL counters wrap around).
  void poll();
  // Totals since construction plus `previous` (the record of an earlier, resumed part).
  nlohmann::json record(const nlohmann::json& previous = nullptr);

 private:
  struct RaplDomain {
    std::string name, path;
    uint64_t max_range = 0, last = 0;
    double joules = 0;
  };
  std::string root_;
  std::vector<RaplDomain> rapl_;
  std::string rapl_note_;
  double gpu_joules_ = 0;
  std::string gpu_note_;
  std::vector<std::string> gpu_names_;
  std::vector<uint64_t> gpu_start_mj_;
  void* nvml_ = nullptr;
  std::chrono::steady_clock::time_point t0_;
  double cpu0_ = 0;
};

// CPU time (user + system) of this process so far, in seconds.
double process_cpu_seconds();
// "model name" of the first CPU (from /proc/cpuinfo), or "unknown".
std::string cpu_model();

}  // namespace net2net::train
