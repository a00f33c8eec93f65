// The whole conditional flow (inn::ConditionalFlow's blocks) as one kernel (cpu flow_forward /
// flow_backward / flow_inverse): every row through all blocks on one thread, one autograd node
// for the whole flow. The blocks hand over their parameters as BlockParams.
#pragma once
#include <torch/torch.h>

#include <utility>
#include <vector>

#include "net2net/kernels/subnet_pair.h"

namespace net2net::kernels {

// One flow block (inn::FlowBlock): ActNorm, the optional invertible LeakyReLU, the double
// coupling's two subnet pairs and the fixed permutation.
struct BlockParams {
  torch::Tensor loc, scale;          // ActNorm [d]
  double alpha = 0.0;                // the LeakyReLU's slope; 0: the block has none
  torch::Tensor shuffle, unshuffle;  // int64 [d]: the permutation and its inverse
  PairParams st0, st1;               // on [x1, c] (s0, t0), on [x2', c] (s1, t1)

  // The flat order of the autograd function's parameter inputs and gradients: loc, scale, then
  // st0's and st1's in PairParams order (the permutations are not parameters).
  static int64_t count(int64_t depth) { return 2 + 2 * PairParams::count(depth); }
  void append_to(std::vector<torch::Tensor>& flat) const;
  static BlockParams read(const torch::Tensor*& cursor, int64_t depth);  // alpha and permutations unset
};

struct FlowParams {
  std::vector<BlockParams> blocks;  // every block with the same subnet depth
  int64_t first_half = 0;           // the coupling's first half, ceil(d / 2)
  int64_t depth() const { return blocks.front().st0.depth(); }
};

// Whether the tensors allow the whole-flow kernel: CPU float / double, every pair on the fused
// subnet kernels; no gradients through the inverse; with gradients, each pair's input width in
// whole vectors (flow_backward). (Whether the modules allow it, e.g. ActNorm initialised, is the
// caller's question.)
bool flow_fusable(const FlowParams& p, const torch::Tensor& x, const std::vector<torch::Tensor>& conds, bool forward);
// (v, logdet) of x [N, d] with conds[i] the condition of block i; one autograd node under grad mode.
std::pair<torch::Tensor, torch::Tensor> fused_flow_forward(const FlowParams& p, const torch::Tensor& x,
                                                           const std::vector<torch::Tensor>& conds);
// x = the flow's inverse of v (no gradients).
torch::Tensor fused_flow_inverse(const FlowParams& p, const torch::Tensor& v, const std::vector<torch::Tensor>& conds);

}  // namespace net2net::kernels
