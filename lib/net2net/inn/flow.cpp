#include "net2net/inn/flow.h"

#include <cmath>
#include <tuple>

#include "net2net/kernels/dispatch.h"
#include "net2net/kernels/norm_activation.h"

namespace net2net::inn {

// ---------------------------------------------------------------- block
FlowBlockImpl::FlowBlockImpl(const config::FlowConfig& cfg, int64_t index) {
  norm = register_module("norm", ActNorm(cfg.in_dim));
  if (cfg.activation == "lrelu") activation = register_module("activation", InvLeakyRelu(cfg.leaky_relu_alpha));
  coupling = register_module("coupling", DoubleCoupling(cfg.in_dim, cfg.embedding_dim, cfg.hidden_dim, cfg.hidden_depth));
  // Each block's permutation from its own stream of the seed.
  uint64_t seed = cfg.permutation_seed * 0x9E3779B97F4A7C15ULL + static_cast<uint64_t>(index) + 1;
  shuffle = register_module("shuffle", Shuffle(cfg.in_dim, seed));
}

namespace {
// ActNorm + LeakyReLU as one fused op (kernels/norm_activation) once ActNorm is initialised
// (its data-dependent initialisation runs in its own forward).
bool fuse_norm_activation(const ActNorm& norm, const InvLeakyRelu& activation, const Tensor& x) {
  return activation && norm->initialized() && kernels::norm_leaky_relu_fusable(x, norm->loc, norm->scale);
}
}  // namespace

LayerOutput FlowBlockImpl::forward(const Tensor& x, const Tensor& cond) {
  Tensor h, logdet;
  if (fuse_norm_activation(norm, activation, x)) {
    std::tie(h, logdet) = kernels::norm_leaky_relu(x, norm->loc, norm->scale, activation->alpha());
  } else {
    std::tie(h, logdet) = norm->forward(x);
    if (activation) {
      auto [h2, ld] = activation->forward(h);
      h = h2;
      logdet = logdet + ld;
    }
  }
  auto [h3, ld3] = coupling->forward(h, cond);
  auto [h4, ld4] = shuffle->forward(h3);
  return {h4, logdet + ld3 + ld4};
}

Tensor FlowBlockImpl::inverse(const Tensor& y, const Tensor& cond) {
  auto h = shuffle->inverse(y);
  h = coupling->inverse(h, cond);
  if (fuse_norm_activation(norm, activation, h))
    return kernels::norm_leaky_relu_inverse(h, norm->loc, norm->scale, activation->alpha());
  if (activation) h = activation->inverse(h);
  return norm->inverse(h);
}

kernels::BlockParams FlowBlockImpl::kernel_params() const {
  kernels::BlockParams p;
  p.loc = norm->loc, p.scale = norm->scale;
  p.alpha = activation ? activation->alpha() : 0.0;
  p.shuffle = shuffle->forward_index, p.unshuffle = shuffle->backward_index;
  p.st0 = coupling->st0()->kernel_params(), p.st1 = coupling->st1()->kernel_params();
  return p;
}

// ---------------------------------------------------------------- flow
ConditionalFlowImpl::ConditionalFlowImpl(const config::FlowConfig& cfg) : cfg_(cfg) {
  TORCH_CHECK(cfg.in_dim >= 2, "the flow needs in_dim >= 2, got ", cfg.in_dim);
  for (int64_t i = 0; i < cfg.n_flows; ++i) {
    blocks_.push_back(register_module("block" + std::to_string(i), FlowBlock(cfg, i)));
    if (cfg.conditioning != "none")
      cond_maps_.push_back(register_module("cond_map" + std::to_string(i),
                                           torch::nn::Linear(cfg.embedding_dim, cfg.embedding_dim)));
  }
  if (cfg.cond_dim > 0)  // an unconditional flow (cond_dim 0) has no embedder
    embedder = register_module("embedder", Mlp(cfg.cond_dim, cfg.embedder.hidden_dim, cfg.embedder.depth,
                                               cfg.embedding_dim, /*tanh_out=*/false, cfg.embedder.norm));
}

Tensor ConditionalFlowImpl::embed(const Tensor& cond) {
  TORCH_CHECK(cond.dim() == 2 && cond.size(1) == cfg_.cond_dim, "condition: expected [N, ", cfg_.cond_dim,
              "], got ", cond.sizes());
  if (!embedder) return cond;  // unconditional: [N, 0], what each coupling concatenates to its half
  return embedder->forward(cond);
}

std::vector<Tensor> ConditionalFlowImpl::block_conditions(const Tensor& cond) {
  auto emb = embed(cond);
  std::vector<Tensor> out;
  out.reserve(blocks_.size());
  Tensor h = emb;
  for (size_t i = 0; i < blocks_.size(); ++i) {
    if (cfg_.conditioning == "parallel") h = cond_maps_[i]->forward(emb);
    else if (cfg_.conditioning == "sequential") h = cond_maps_[i]->forward(h);
    out.push_back(h);
  }
  return out;
}

FlowOutput ConditionalFlowImpl::forward(const Tensor& x, const Tensor& cond) {
  TORCH_CHECK(x.dim() == 2 && x.size(1) == cfg_.in_dim, "target: expected [N, ", cfg_.in_dim, "], got ", x.sizes());
  TORCH_CHECK(x.size(0) == cond.size(0), "target and condition differ in rows: ", x.size(0), " vs ", cond.size(0));
  auto conds = block_conditions(cond);
  if (whole_flow_fusable(x, conds, /*forward=*/true)) {
    auto [v, logdet] = kernels::fused_flow_forward(kernel_params(), x, conds);
    return {v, logdet};
  }
  Tensor h = x;
  Tensor logdet = torch::zeros({x.size(0)}, x.options());
  for (size_t i = 0; i < blocks_.size(); ++i) {
    auto [y, ld] = blocks_[i]->forward(h, conds[i]);
    h = y;
    logdet = logdet + ld;
  }
  return {h, logdet};
}

kernels::FlowParams ConditionalFlowImpl::kernel_params() const {
  kernels::FlowParams p;
  for (const auto& blk : blocks_) p.blocks.push_back(blk->kernel_params());
  p.first_half = blocks_.front()->coupling->first_half();
  return p;
}

// The whole flow as one kernel (kernels/fused_flow.h) where the tensors allow it and, when
// training, every ActNorm is initialised (its initialisation is the op-by-op path's first step).
bool ConditionalFlowImpl::whole_flow_fusable(const Tensor& x, const std::vector<Tensor>& conds, bool forward) const {
  if (!kernels::fused_cpu({x}) || blocks_.empty()) return false;  // first: the GPU path builds nothing
  if (cfg_.cond_dim == 0) return false;  // unconditional: block by block (the subnet kernels still fuse)
  if (forward)
    for (const auto& blk : blocks_)
      if (blk->norm->is_training() && !blk->norm->initialized()) return false;
  return kernels::flow_fusable(kernel_params(), x, conds, forward);
}

bool ConditionalFlowImpl::forward_is_fused(const Tensor& x, const Tensor& cond) {
  return whole_flow_fusable(x, block_conditions(cond), /*forward=*/true);
}

bool ConditionalFlowImpl::inverse_is_fused(const Tensor& v, const Tensor& cond) {
  return whole_flow_fusable(v, block_conditions(cond), /*forward=*/false);
}

Tensor ConditionalFlowImpl::inverse(const Tensor& v, const Tensor& cond) {
  TORCH_CHECK(v.dim() == 2 && v.size(1) == cfg_.in_dim, "residual: expected [N, ", cfg_.in_dim, "], got ", v.sizes());
  auto conds = block_conditions(cond);
  if (whole_flow_fusable(v, conds, /*forward=*/false)) return kernels::fused_flow_inverse(kernel_params(), v, conds);
  Tensor h = v;
  for (size_t i = blocks_.size(); i-- > 0;) h = blocks_[i]->inverse(h, conds[i]);
  return h;
}

Tensor ConditionalFlowImpl::sample(const Tensor& cond, double temperature, c10::optional<torch::Generator> generator) {
  auto options = cond.options();
  Tensor v;
  if (temperature == 0.0) {
    v = torch::zeros({cond.size(0), cfg_.in_dim}, options);
  } else {
    v = at::randn({cond.size(0), cfg_.in_dim}, generator, options) * temperature;
  }
  return inverse(v, cond);
}

ConditionalFlow build_flow(const config::FlowConfig& cfg, uint64_t init_seed) {
  torch::manual_seed(init_seed);
  return ConditionalFlow(cfg);
}

int64_t count_parameters(const torch::nn::Module& module) {
  int64_t n = 0;
  for (const auto& p : module.parameters(/*recurse=*/true))
    if (p.requires_grad()) n += p.numel();
  return n;
}

NllTerms nll_loss(const FlowOutput& out, double scale) {
  const Tensor nll_sum = (0.5 * out.v.pow(2).sum(1)).sum(), logdet_sum = out.logdet.sum();
  NllTerms t;
  t.loss = (nll_sum - logdet_sum) * scale;
  torch::NoGradGuard no_grad;
  t.nll = nll_sum.detach() * scale;
  t.nlogdet = -logdet_sum.detach() * scale;
  return t;
}

Tensor reference_nll(const Tensor& v, double scale) {
  torch::NoGradGuard no_grad;
  return (0.5 * torch::randn_like(v).pow(2).sum(1)).sum() * scale;
}

Tensor bits_per_dim(const FlowOutput& out) {
  const double d = static_cast<double>(out.v.size(1));
  auto nll = 0.5 * out.v.pow(2).sum(1) + 0.5 * d * std::log(2.0 * M_PI) - out.logdet;
  return nll / (d * std::log(2.0));
}

}  // namespace net2net::inn
