// The CUDA kernels from torch tensors: what the fused autograd functions (kernels/affine_coupling,
// kernels/norm_activation) call for CUDA tensors. Inputs on one CUDA device, contiguous, all float
// or all double; outputs allocated by the caller with the same options. Each launches on the
// current stream of the tensors' device and throws (c10::Error) if the launch failed. Compiled
// only where LibTorch has CUDA (NET2NET_TORCH_CUDA); kernels/dispatch.h decides who calls them.
#pragma once
#include <torch/torch.h>

namespace net2net::kernels::cuda {

void coupling_forward(const torch::Tensor& x, const torch::Tensor& s, const torch::Tensor& t, torch::Tensor& y,
                      torch::Tensor& logdet);
// gld may be undefined (no gradient reaches the log-det).
void coupling_backward(const torch::Tensor& x, const torch::Tensor& s, const torch::Tensor& gy, const torch::Tensor& gld,
                       torch::Tensor& gx, torch::Tensor& gs);
void coupling_inverse(const torch::Tensor& y, const torch::Tensor& s, const torch::Tensor& t, torch::Tensor& x);

void norm_act_forward(const torch::Tensor& x, const torch::Tensor& loc, const torch::Tensor& scale, double alpha,
                      torch::Tensor& y, torch::Tensor& negatives);
void norm_act_backward(const torch::Tensor& x, const torch::Tensor& loc, const torch::Tensor& scale, double alpha,
                       const torch::Tensor& gy, torch::Tensor& gx, torch::Tensor& g_loc, torch::Tensor& g_scale);
void norm_act_inverse(const torch::Tensor& y, const torch::Tensor& loc, const torch::Tensor& scale, double alpha,
                      torch::Tensor& x);

}  // namespace net2net::kernels::cuda
