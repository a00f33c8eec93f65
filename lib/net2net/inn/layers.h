// The layers of the reference cINN (CompVis/net2net, modules/flow): ActNorm, the invertible
// leaky ReLU, the fixed permutation, the subnet MLP and the conditional double affine coupling.
// Every invertible layer has forward(x) -> (y, logdet[N]) and inverse(y) -> x; inputs are
// 2-D [N, D]. All state that defines the function (ActNorm's "initialized" flag and the
// permutations) is registered as buffers, so it is saved and loaded with the parameters.
#pragma once
#include <torch/torch.h>

#include <string>
#include <utility>
#include <vector>

#include "net2net/kernels/subnet_pair.h"

namespace net2net::inn {

using torch::Tensor;
using LayerOutput = std::pair<Tensor, Tensor>;  // (y, logdet per item)

// y = scale * (x + loc). On its first forward pass in training mode it initialises loc and
// scale from that batch so that y has zero mean and unit (unbiased) std per dimension. The
// flag is a buffer: a loaded model is never initialised again. No initialisation in eval mode.
class ActNormImpl : public torch::nn::Module {
 public:
  explicit ActNormImpl(int64_t dim);
  LayerOutput forward(const Tensor& x);
  Tensor inverse(const Tensor& y);
  bool initialized() const;
  void load(torch::serialize::InputArchive& archive) override;
  // After initialized_flag was written from outside (a warm start copies it): read it again.
  void forget_cached_flag() { known_initialized_ = false; }
  Tensor loc, scale, initialized_flag;

 private:
  void initialize(const Tensor& x);
  // The flag once it has read as set (only a load can clear it), kept on the host: on a GPU each
  // read of the buffer waits for the device, once per block and forward pass.
  mutable bool known_initialized_ = false;
};
TORCH_MODULE(ActNorm);

// y = x for x >= 0, alpha * x otherwise; log-det = (number of negative entries) * log(alpha).
// (The reference returns a log-det of 0 here, which is wrong for alpha != 1; we return the
// exact value, checked against the Jacobian in the tests.)
class InvLeakyReluImpl : public torch::nn::Module {
 public:
  explicit InvLeakyReluImpl(double alpha = 0.9);
  LayerOutput forward(const Tensor& x);
  Tensor inverse(const Tensor& y);
  double alpha() const { return alpha_; }

 private:
  double alpha_;
};
TORCH_MODULE(InvLeakyRelu);

// A fixed permutation of the dimensions, drawn from `seed` (portable: mt19937_64 with our own
// Fisher-Yates, not std::shuffle). Both index vectors are buffers.
class ShuffleImpl : public torch::nn::Module {
 public:
  ShuffleImpl(int64_t dim, uint64_t seed);
  LayerOutput forward(const Tensor& x);
  Tensor inverse(const Tensor& y);
  Tensor forward_index, backward_index;
};
TORCH_MODULE(Shuffle);

// The reference's BasicFullyConnectedNet: Linear, [norm], LeakyReLU(0.01), then `depth` times
// (Linear, [norm], LeakyReLU), then Linear to out_dim, optionally tanh.
// norm: "none" | "batchnorm" | "actnorm".
class MlpImpl : public torch::nn::Module {
 public:
  MlpImpl(int64_t in_dim, int64_t hidden_dim, int64_t depth, int64_t out_dim, bool tanh_out,
          const std::string& norm = "none");
  Tensor forward(Tensor x);
  const std::vector<torch::nn::Linear>& linears() const { return linears_; }

 private:
  std::vector<torch::nn::Linear> linears_;
  std::vector<torch::nn::BatchNorm1d> batch_norms_;
  std::vector<ActNorm> act_norms_;
  bool tanh_out_;
};
TORCH_MODULE(Mlp);

// The s and t subnets of one coupling half (two Mlp(in, H, depth, out), s with tanh) as one
// batched chain: the first layer of both is one matmul [N, in] x [in, 2H]; the hidden and output
// layers are batched matmuls over the pair. The same function with half the kernels.
// Parameters: w_in [2H, in], b_in [2H] (rows 0..H-1: s; Linear's [out, in]), w_hidden{k}
// [2, H, H], b_hidden{k} [2, H], w_out [2, H, out], b_out [2, out] (index 0: s, 1: t; the
// batched weights stored as [in, out]: batched matmuls against a transposed view were 3x slower
// in the backward pass at H = 1024).
class SubnetPairImpl : public torch::nn::Module {
 public:
  // Packs the weights of two Mlps of the same shape (no norm layers).
  SubnetPairImpl(const MlpImpl& s, const MlpImpl& t);
  std::pair<Tensor, Tensor> forward(const Tensor& x);  // (s, t)
  // The weights as the two Mlps would hold them: {name, view} with names "s.linear{k}.weight",
  // "s.linear{k}.bias", ... where s / t are the given prefixes. Views share storage.
  std::vector<std::pair<std::string, Tensor>> unbatched(const std::string& s_name, const std::string& t_name) const;
  // Whether x takes the fused CPU kernels (kernels/subnet_pair.h).
  bool fusable(const Tensor& x) const { return kernels::subnet_pair_fusable(x, params_); }
  // The parameters as the fused kernels take them (handles to the registered ones).
  const kernels::PairParams& kernel_params() const { return params_; }
  int64_t hidden() const { return params_.hidden(); }
  int64_t in_dim() const { return params_.in(); }
  int64_t depth() const { return params_.depth(); }  // hidden layers

 private:
  kernels::PairParams params_;
};
TORCH_MODULE(SubnetPair);

// Conditional double affine coupling. x = [x1 (ceil(D/2)), x2 (floor(D/2))];
//   x2' = x2 * exp(s0([x1, c])) + t0([x1, c])
//   x1' = x1 * exp(s1([x2', c])) + t1([x2', c])
// output [x2', x1'] (the reference's order for even D); log-det = sum s0 + sum s1.
// (s0, t0) and (s1, t1) are SubnetPairs; saved and loaded under the per-subnet names
// s0.linear{k}.weight, ... of docs/formats.md, so checkpoints keep the reference's layout.
class DoubleCouplingImpl : public torch::nn::Module {
 public:
  DoubleCouplingImpl(int64_t dim, int64_t cond_dim, int64_t hidden_dim, int64_t hidden_depth);
  LayerOutput forward(const Tensor& x, const Tensor& cond);
  Tensor inverse(const Tensor& y, const Tensor& cond);
  int64_t first_half() const { return a_; }
  const SubnetPair& st0() const { return st0_; }  // on [x1, c]: (s0, t0) for x2
  const SubnetPair& st1() const { return st1_; }  // on [x2', c]: (s1, t1) for x1
  // {"s0.linear0.weight", view}, ...: the subnet weights under their per-subnet names.
  std::vector<std::pair<std::string, Tensor>> unbatched_parameters() const;
  void save(torch::serialize::OutputArchive& archive) const override { save(archive, false); }
  // copy: the tensors written are copies on the CPU (a checkpoint snapshot, io/checkpoint.h).
  void save(torch::serialize::OutputArchive& archive, bool copy) const;
  void load(torch::serialize::InputArchive& archive) override;

 private:
  int64_t a_, b_;
  SubnetPair st0_{nullptr}, st1_{nullptr};
};
TORCH_MODULE(DoubleCoupling);

// Every parameter of `module` by name, couplings under their per-subnet names (the names of
// docs/formats.md and of the Python reference), for exports and comparisons.
std::vector<std::pair<std::string, Tensor>> unbatched_named_parameters(torch::nn::Module& module);

// Converts floating-point parameters and buffers (only those) to `dtype`, in place. Unlike
// Module::to(dtype), integer buffers (permutations, flags, BatchNorm counters) keep their type.
void convert_floating(torch::nn::Module& module, torch::Dtype dtype);

// Permutation of 0..n-1 drawn from seed, identical on every platform.
std::vector<int64_t> seeded_permutation(int64_t n, uint64_t seed);

}  // namespace net2net::inn
