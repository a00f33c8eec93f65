// Process-wide settings every tool applies once: threads, seed, device.
#pragma once
#include <cstdint>
#include <string>

namespace net2net {

// CPUs this process may run on (respects taskset / SLURM cpu binding), at least 1.
int available_cpus();

// LibTorch's default intra-op thread count is 1 on these machines; every tool sets it.
// threads <= 0 means all available CPUs. Returns the count in effect.
int set_threads(int threads);

// Seeds torch's global generator (CPU, and CUDA where present).
void seed_everything(uint64_t seed);

// "cpu" or "cuda" (or "cuda:N"); throws UsageError when this LibTorch cannot use it.
std::string check_device(const std::string& device);

}  // namespace net2net
