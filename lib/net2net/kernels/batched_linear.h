// y[j] = b[j] + x[j] W[j] over a leading batch j: the s and t subnets of a coupling as one chain
// (inn::SubnetPair). x [J, N, in], W [J, in, out] (stored [in, out]), b [J, out]. For a short
// batch (N <= 32, float or double on the CPU; text2biggan trains at batch 16) the forward, the
// input gradient g W^T and the weight gradient x^T g run on the raw CPU kernels (matmul_nn / nt /
// tn) on the shapes where they beat BLAS, which is slow on such shapes (it packs the whole W for
// 16 rows, and its transposed paths are slower still); otherwise, and with NET2NET_UNFUSED=1,
// it is plain baddbmm under autograd.
#pragma once
#include <torch/torch.h>

namespace net2net::kernels {

torch::Tensor batched_linear(const torch::Tensor& x, const torch::Tensor& w, const torch::Tensor& b);

// y = b + x W^T, W in Linear's layout [out, in], x [N, in]: for a short batch (N <= 32) and a
// large W (out >= 512, in >= 128) on the raw CPU kernels, otherwise addmm.
torch::Tensor linear(const torch::Tensor& x, const torch::Tensor& w, const torch::Tensor& b);

// Batches up to this many rows take the short-batch kernels (batched_linear, linear).
constexpr int64_t kShortBatchRows = 32;

}  // namespace net2net::kernels
