// The s and t subnets of one coupling half (inn::SubnetPair) on the fused CPU kernels
// (cpu subnet_pair_forward / _backward), with their autograd function: what the layer hands
// over is a PairParams, the one description of a pair's parameters and of their order.
#pragma once
#include <torch/torch.h>

#include <utility>
#include <vector>

namespace net2net::kernels {

// One coupling half's s and t subnets packed (inn::SubnetPair): handles to the parameters
// themselves. Index 0 of the batched tensors is s, 1 is t.
struct PairParams {
  torch::Tensor w_in, b_in;                       // [2H, in] (Linear's [out, in]; rows 0..H-1: s), [2H]
  std::vector<torch::Tensor> w_hidden, b_hidden;  // per hidden layer: [2, H, H] ([in, out]), [2, H]
  torch::Tensor w_out, b_out;                     // [2, H, out], [2, out]

  int64_t in() const { return w_in.size(1); }
  int64_t hidden() const { return w_in.size(0) / 2; }
  int64_t depth() const { return static_cast<int64_t>(w_hidden.size()); }
  int64_t out() const { return w_out.size(2); }
  int64_t weight_elements() const;  // w_in, w_hidden and w_out

  // The flat order in which the autograd functions take these tensors and return their
  // gradients: w_in, b_in, (w_hidden[k], b_hidden[k])..., w_out, b_out.
  static int64_t count(int64_t depth) { return 4 + 2 * depth; }
  static int64_t depth_of(int64_t count) { return (count - 4) / 2; }
  void append_to(std::vector<torch::Tensor>& flat) const;
  // The inverse of append_to: the next count(depth) tensors at `cursor`, which it advances.
  static PairParams read(const torch::Tensor*& cursor, int64_t depth);
};

// Whether x takes the fused kernels: CPU float / double (kernels/dispatch.h), weights small
// enough to stay in cache (each block of rows reads all of them), widths in whole vectors.
bool subnet_pair_fusable(const torch::Tensor& x, const PairParams& p);
// (s, t) = (tanh(subnet 0), subnet 1) of x [N, in] through the kernels: one autograd node under
// grad mode, the forward kernel alone otherwise. Only where subnet_pair_fusable.
std::pair<torch::Tensor, torch::Tensor> subnet_pair(const torch::Tensor& x, const PairParams& p);

}  // namespace net2net::kernels
