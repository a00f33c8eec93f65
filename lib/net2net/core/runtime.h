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

// Keeps freed large blocks in the heap for reuse (glibc; a no-op elsewhere). A training step
// frees and allocates its gradients again (8 MB per hidden layer of text2biggan); by default
// glibc hands blocks that large back to the kernel, which zero-fills every page on the next
// touch: ~1.4 GB of page faults a step there, backward 715 -> 290 ms with this set. Idempotent;
// MALLOC_MMAP_THRESHOLD_ / MALLOC_TRIM_THRESHOLD_ in the environment take precedence.
void keep_freed_memory();

// Seeds torch's global generator (CPU, and CUDA where present).
void seed_everything(uint64_t seed);

// Whether `device` is a device name net2net takes: "cpu", "cuda" or "cuda:N".
bool is_device_name(const std::string& device);
// "cpu" or "cuda" (or "cuda:N"); throws UsageError for another name, or when this LibTorch or
// machine cannot use it.
std::string check_device(const std::string& device);

// The folder of the shipped data files (power profiles, reference costs): NET2NET_DATA_DIR, else
// PREFIX/share/net2net/data beside an installed tool (PREFIX/bin, wherever the prefix was moved),
// else the source tree's data/ (a tool run from its build tree).
std::string data_dir();

// What --version prints, for bug reports: the tool, net2net's version and commit, the LibTorch it
// runs on, CUDA (built in? GPUs visible?) and NCCL, the CPU kernels' ISA, the CPUs available and
// the data folder.
std::string version_report(const std::string& tool);

}  // namespace net2net
