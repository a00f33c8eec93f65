// Which kernels serve a fused op's tensors: the CPU kernels (kernels/cpu/, chosen per ISA at
// run time), the CUDA kernels (kernels/cuda/, only where LibTorch has CUDA: NET2NET_TORCH_CUDA),
// or none (the op-by-op torch path, which every op keeps as its fallback and reference).
// NET2NET_UNFUSED=1 turns all fused kernels off for a process (A/B runs, bisecting).
#pragma once
#include <torch/torch.h>

namespace net2net::kernels {

enum class KernelPath { unfused, cpu, cuda };
const char* to_string(KernelPath path);

// The decision for tensors of one device type and scalar type: cpu for CPU float / double,
// cuda for CUDA float / double where the CUDA kernels are built, else unfused (also when
// fused() is off). Takes no tensors, so it can be asked about CUDA without a GPU.
KernelPath kernel_path(c10::DeviceType device, at::ScalarType type);
// For tensors: all on one device with one scalar type, then as above; else unfused.
KernelPath kernel_path(at::TensorList tensors);
// Whether this binary's fused ops reach the CUDA kernels (built against a CUDA LibTorch).
bool cuda_kernels_built();

// Fused kernels on (default) or off, process-wide (NET2NET_UNFUSED=1 turns them off at start).
void set_fused(bool on);
bool fused();
// Whether a NET2NET_UNFUSED value (null: unset) leaves the kernels on: unset, "" and "0" do.
bool fused_for_environment_value(const char* value);
// kernel_path(tensors) == cpu: the check the CPU-only fused ops (subnet MLPs, whole flow, GEMMs,
// Adam) start with; each adds its own shape rules.
bool fused_cpu(at::TensorList tensors);
// Elements of `type` (float or double) per vector in the selected CPU kernels: the widths the
// fused subnet and flow kernels need their layers in.
int cpu_vector_width(at::ScalarType type);

}  // namespace net2net::kernels
