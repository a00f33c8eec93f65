// Fused conditional affine coupling: y = x * exp(s) + t with its log-det sum(s) per row, in one
// pass over the data, and its backward in one pass, as a custom autograd function. CPU: ATen
// vectorised and parallel over rows. CUDA: raw-pointer kernels in affine_coupling.cu, compiled
// when a CUDA toolkit is found; the dispatch from torch tensors is built only where LibTorch has
// CUDA (NET2NET_TORCH_CUDA). Other devices, and double backward, use the unfused ops.
#pragma once
#include <torch/torch.h>

#include <utility>

namespace net2net::kernels {

// (y, logdet[N]) for x, s, t of one shape [N, D].
std::pair<torch::Tensor, torch::Tensor> affine_coupling(const torch::Tensor& x, const torch::Tensor& s, const torch::Tensor& t);
// x = (y - t) * exp(-s).
torch::Tensor affine_coupling_inverse(const torch::Tensor& y, const torch::Tensor& s, const torch::Tensor& t);

// The same with plain torch ops (the reference the fused kernels are tested against).
std::pair<torch::Tensor, torch::Tensor> affine_coupling_unfused(const torch::Tensor& x, const torch::Tensor& s,
                                                                const torch::Tensor& t);

// Fused kernels on (default) or off, process-wide (NET2NET_UNFUSED=1 turns them off at start).
void set_fused(bool on);
bool fused();
// Whether a NET2NET_UNFUSED value (null: unset) leaves the kernels on: unset, "" and "0" do.
bool fused_for_environment_value(const char* value);
// Whether the fused CPU ops may take these tensors: fused() on, all on the CPU, all float or
// all double (the checks every fused op starts with; each adds its own shape rules).
bool fused_cpu(at::TensorList tensors);
// Elements of `type` (float or double) per vector in the selected CPU kernels: the widths the
// fused subnet and flow kernels need their layers in.
int cpu_vector_width(at::ScalarType type);

}  // namespace net2net::kernels
