// y[j] = b[j] + x[j] W[j] over a leading batch j: the s and t subnets of a coupling as one chain
// (inn::SubnetPair). x [J, N, in], W [J, in, out] (stored [in, out]), b [J, out]. The forward is
// torch's baddbmm; the backward computes the input gradient g W^T with the raw CPU kernel
// matmul_nt when the batch is short (N <= 32, out >= 128 and a multiple of 16, float or double
// on the CPU), where BLAS's transposed path reaches about a third of its usual rate
// (text2biggan trains at batch 16).
// Otherwise, and with NET2NET_UNFUSED=1, it is plain baddbmm under autograd.
#pragma once
#include <torch/torch.h>

namespace net2net::kernels {

torch::Tensor batched_linear(const torch::Tensor& x, const torch::Tensor& w, const torch::Tensor& b);

// Batches up to this many rows take the kernel's input gradient.
constexpr int64_t kShortBatchRows = 32;

}  // namespace net2net::kernels
