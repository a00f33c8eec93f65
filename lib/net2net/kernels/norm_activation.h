// ActNorm followed by the invertible LeakyReLU, the first two layers of every flow block
// (inn::FlowBlock), as one fused op with its backward (one autograd node instead of ~12 ops and
// nodes over small tensors: on the example's cINN these per-op costs, not the arithmetic, are
// what a step is made of). CPU or CUDA float / double (kernels/dispatch.h); NET2NET_UNFUSED=1, or
// another device or type, falls back to the layers' own ops.
#pragma once
#include <torch/torch.h>

#include <utility>

namespace net2net::kernels {

// u = scale (x + loc), y = u >= 0 ? u : alpha u; logdet[r] = sum log|scale| + (number of u < 0
// in row r) log alpha. x [N, D], loc and scale [D].
std::pair<torch::Tensor, torch::Tensor> norm_leaky_relu(const torch::Tensor& x, const torch::Tensor& loc,
                                                        const torch::Tensor& scale, double alpha);
// Its inverse: x = (y >= 0 ? y : y / alpha) / scale - loc.
torch::Tensor norm_leaky_relu_inverse(const torch::Tensor& y, const torch::Tensor& loc, const torch::Tensor& scale,
                                      double alpha);
// Whether the fused op serves these tensors (else the caller runs the layers' own ops).
bool norm_leaky_relu_fusable(const torch::Tensor& x, const torch::Tensor& loc, const torch::Tensor& scale);

}  // namespace net2net::kernels
