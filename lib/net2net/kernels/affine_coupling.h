// Fused conditional affine coupling: y = x * exp(s) + t with its log-det sum(s) per row, in one
// pass over the data, and its backward in one pass, as a custom autograd function. The kernels
// are picked by kernels/dispatch.h: CPU (ATen-vectorised, parallel over rows) or CUDA
// (kernels/cuda/, where LibTorch has CUDA); other devices and types, and double backward, take
// the unfused ops. s and t are taken in x's type (under bf16 autocast the subnets return
// bfloat16; the coupling and its log-det stay in x's float32).
#pragma once
#include <torch/torch.h>

#include "net2net/kernels/dispatch.h"

#include <utility>

namespace net2net::kernels {

// (y, logdet[N]) for x, s, t of one shape [N, D].
std::pair<torch::Tensor, torch::Tensor> affine_coupling(const torch::Tensor& x, const torch::Tensor& s, const torch::Tensor& t);
// x = (y - t) * exp(-s).
torch::Tensor affine_coupling_inverse(const torch::Tensor& y, const torch::Tensor& s, const torch::Tensor& t);

// The same with plain torch ops (the reference the fused kernels are tested against).
std::pair<torch::Tensor, torch::Tensor> affine_coupling_unfused(const torch::Tensor& x, const torch::Tensor& s,
                                                                const torch::Tensor& t);

}  // namespace net2net::kernels
