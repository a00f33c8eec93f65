// The conditional flow T(z_theta | z_phi) of the reference (ConditionalFlatCouplingFlow):
// an embedder MLP for the condition, then n_flows blocks of
//   ActNorm -> [invertible leaky ReLU] -> conditional double coupling -> fixed permutation.
// forward: z_theta -> (v, logdet); inverse: v -> z_theta; sample: v ~ N(0, T^2 I) -> inverse.
#pragma once
#include <torch/torch.h>

#include "net2net/config/cinn_config.h"
#include "net2net/inn/layers.h"
#include "net2net/kernels/fused_flow.h"

namespace net2net::inn {

struct FlowOutput {
  Tensor v;       // [N, in_dim]
  Tensor logdet;  // [N]
};

class FlowBlockImpl : public torch::nn::Module {
 public:
  FlowBlockImpl(const config::FlowConfig& cfg, int64_t index);
  LayerOutput forward(const Tensor& x, const Tensor& cond);
  Tensor inverse(const Tensor& y, const Tensor& cond);
  // The parameters as the whole-flow kernel takes them (handles to the registered ones).
  kernels::BlockParams kernel_params() const;

  ActNorm norm{nullptr};
  InvLeakyRelu activation{nullptr};  // null when activation is "none"
  DoubleCoupling coupling{nullptr};
  Shuffle shuffle{nullptr};
};
TORCH_MODULE(FlowBlock);

class ConditionalFlowImpl : public torch::nn::Module {
 public:
  explicit ConditionalFlowImpl(const config::FlowConfig& cfg);

  FlowOutput forward(const Tensor& x, const Tensor& cond);
  Tensor inverse(const Tensor& v, const Tensor& cond);
  // v = temperature * N(0, I) (from `generator` when given), then inverse. Temperature 0
  // gives exactly inverse(0 | cond).
  Tensor sample(const Tensor& cond, double temperature,
                c10::optional<torch::Generator> generator = c10::nullopt);

  // Whether inverse(v, cond) runs as one kernel (cpu flow_inverse): no gradients wanted, CPU
  // float / double, every coupling on the fused subnet kernels.
  bool inverse_is_fused(const Tensor& v, const Tensor& cond);
  // Whether forward(x, cond) does (cpu flow_forward, and flow_backward for its gradients; one
  // autograd node for the whole flow): the same conditions, ActNorm initialised when training
  // and, with gradients, each subnet's input width in whole vectors.
  bool forward_is_fused(const Tensor& x, const Tensor& cond);

  // The embedding of the condition and the per-block conditions derived from it.
  Tensor embed(const Tensor& cond);
  std::vector<Tensor> block_conditions(const Tensor& cond);

  const config::FlowConfig& config() const { return cfg_; }
  const std::vector<FlowBlock>& blocks() const { return blocks_; }
  Mlp embedder{nullptr};  // null for an unconditional flow (cond_dim 0): conditions are [N, 0]

 private:
  kernels::FlowParams kernel_params() const;
  bool whole_flow_fusable(const Tensor& x, const std::vector<Tensor>& conds, bool forward) const;

  config::FlowConfig cfg_;
  std::vector<FlowBlock> blocks_;
  std::vector<torch::nn::Linear> cond_maps_;  // "parallel" / "sequential" conditioning
};
TORCH_MODULE(ConditionalFlow);

// Builds the flow from a resolved config in float32 on the CPU, seeding its initialisation with
// `init_seed` (the reference's: torch.manual_seed then construction).
ConditionalFlow build_flow(const config::FlowConfig& cfg, uint64_t init_seed);

// Parameters that require gradients, summed.
int64_t count_parameters(const torch::nn::Module& module);

// The reference's loss (no constant) of a batch, the one that training, validation and the
// tests use: sums over the rows times `scale` (1 / N: the batch mean; world_size / global batch:
// one rank's share of the global mean, which the all-reduce then completes):
//   nll = scale sum_i 0.5 ||v_i||^2, nlogdet = -scale sum_i logdet_i (both detached),
//   loss = scale (sum_i 0.5 ||v_i||^2 - sum_i logdet_i) (what the gradient is taken of).
struct NllTerms {
  Tensor loss, nll, nlogdet;
};
NllTerms nll_loss(const FlowOutput& out, double scale);
// The same nll for e ~ N(0, I) of v's shape (the default generator of v's device): a sanity line
// that a trained model's nll approaches (D / 2 per row).
Tensor reference_nll(const Tensor& v, double scale);

// Per-item negative log-likelihood under the full Gaussian density, in bits per dimension:
// (0.5 ||v||^2 + 0.5 D log(2 pi) - logdet) / (D log 2).
Tensor bits_per_dim(const FlowOutput& out);

}  // namespace net2net::inn
