#include "net2net/inn/flow.h"

#include <cmath>
#include <deque>
#include <tuple>

#include "net2net/kernels/affine_coupling.h"
#include "net2net/kernels/cpu/kernels.h"
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

// ---------------------------------------------------------------- flow
ConditionalFlowImpl::ConditionalFlowImpl(const config::FlowConfig& cfg) : cfg_(cfg) {
  TORCH_CHECK(cfg.in_dim >= 2, "the flow needs in_dim >= 2, got ", cfg.in_dim);
  for (int64_t i = 0; i < cfg.n_flows; ++i) {
    blocks_.push_back(register_module("block" + std::to_string(i), FlowBlock(cfg, i)));
    if (cfg.conditioning != "none")
      cond_maps_.push_back(register_module("cond_map" + std::to_string(i),
                                           torch::nn::Linear(cfg.embedding_dim, cfg.embedding_dim)));
  }
  embedder = register_module("embedder", Mlp(cfg.cond_dim, cfg.embedder.hidden_dim, cfg.embedder.depth,
                                             cfg.embedding_dim, /*tanh_out=*/false, cfg.embedder.norm));
}

Tensor ConditionalFlowImpl::embed(const Tensor& cond) {
  TORCH_CHECK(cond.dim() == 2 && cond.size(1) == cfg_.cond_dim, "condition: expected [N, ", cfg_.cond_dim,
              "], got ", cond.sizes());
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
  Tensor h = x;
  Tensor logdet = torch::zeros({x.size(0)}, x.options());
  for (size_t i = 0; i < blocks_.size(); ++i) {
    auto [y, ld] = blocks_[i]->forward(h, conds[i]);
    h = y;
    logdet = logdet + ld;
  }
  return {h, logdet};
}

namespace {
// Inference through the whole flow as one kernel (cpu flow_inverse) where every coupling takes the
// fused subnet kernels: no gradients wanted, CPU float / double.
bool fused_inverse_possible(const std::vector<FlowBlock>& blocks, const Tensor& v, const std::vector<Tensor>& conds) {
  if (torch::GradMode::is_enabled() || !kernels::fused_cpu({v}) || blocks.empty()) return false;
  for (size_t i = 0; i < blocks.size(); ++i)
    if (!kernels::fused_cpu({v, conds[i], blocks[i]->norm->loc, blocks[i]->norm->scale}) ||
        !blocks[i]->coupling->st0()->fusable(v) || !blocks[i]->coupling->st1()->fusable(v))
      return false;
  return true;
}

template <typename T>
struct KernelWeights {
  std::vector<Tensor> keep;                  // contiguous copies the kernel reads
  std::deque<std::vector<const T*>> layers;  // per pair: w_hidden then b_hidden pointers
  std::vector<kernels::cpu::FlowBlockWeights<T>> blocks;

  const T* hold(const Tensor& t) {
    keep.push_back(t.contiguous());
    return keep.back().data_ptr<T>();
  }
  const int64_t* index(const Tensor& t) {
    keep.push_back(t.contiguous());
    return keep.back().data_ptr<int64_t>();
  }
  kernels::cpu::PairWeights<T> pair(const SubnetPair& st) {
    const auto params = st->kernel_params();
    const int64_t depth = (static_cast<int64_t>(params.size()) - 4) / 2;
    auto& ptrs = layers.emplace_back();
    for (int64_t k = 0; k < depth; ++k) ptrs.push_back(hold(params[2 + 2 * k]));
    for (int64_t k = 0; k < depth; ++k) ptrs.push_back(hold(params[3 + 2 * k]));
    return {hold(params[0].t()), hold(params[1]), ptrs.data(), ptrs.data() + depth, hold(params[2 + 2 * depth]),
            hold(params[3 + 2 * depth]), params[0].size(1), st->hidden(), depth, params.back().size(1)};
  }
};

template <typename T>
Tensor fused_inverse(const std::vector<FlowBlock>& blocks, const Tensor& v, const std::vector<Tensor>& conds) {
  KernelWeights<T> w;
  for (size_t i = 0; i < blocks.size(); ++i) {
    const auto& blk = blocks[i];
    const Tensor& c = conds[i];
    w.blocks.push_back({w.hold(blk->norm->loc), w.hold(blk->norm->scale),
                        blk->activation ? static_cast<T>(blk->activation->alpha()) : T(0),
                        w.index(blk->shuffle->backward_index), w.pair(blk->coupling->st0()),
                        w.pair(blk->coupling->st1()), w.hold(c), c.size(1)});
  }
  const Tensor vc = v.contiguous();
  Tensor x = torch::empty_like(vc);
  kernels::cpu::table<T>().flow_inverse(vc.data_ptr<T>(), vc.size(0), vc.size(1), blocks.front()->coupling->first_half(),
                                        w.blocks.data(), static_cast<int64_t>(w.blocks.size()), x.data_ptr<T>());
  return x;
}
}  // namespace

bool ConditionalFlowImpl::inverse_is_fused(const Tensor& v, const Tensor& cond) {
  return !torch::GradMode::is_enabled() && fused_inverse_possible(blocks_, v, block_conditions(cond));
}

Tensor ConditionalFlowImpl::inverse(const Tensor& v, const Tensor& cond) {
  TORCH_CHECK(v.dim() == 2 && v.size(1) == cfg_.in_dim, "residual: expected [N, ", cfg_.in_dim, "], got ", v.sizes());
  auto conds = block_conditions(cond);
  if (fused_inverse_possible(blocks_, v, conds))
    return v.scalar_type() == torch::kFloat32 ? fused_inverse<float>(blocks_, v, conds)
                                              : fused_inverse<double>(blocks_, v, conds);
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

NllTerms nll_loss(const FlowOutput& out) {
  NllTerms t;
  t.nll = (0.5 * out.v.pow(2).sum(1)).mean();
  t.nlogdet = -out.logdet.mean();
  t.loss = t.nll + t.nlogdet;
  {
    torch::NoGradGuard no_grad;
    t.reference_nll = (0.5 * torch::randn_like(out.v).pow(2).sum(1)).mean();
  }
  return t;
}

Tensor bits_per_dim(const FlowOutput& out) {
  const double d = static_cast<double>(out.v.size(1));
  auto nll = 0.5 * out.v.pow(2).sum(1) + 0.5 * d * std::log(2.0 * M_PI) - out.logdet;
  return nll / (d * std::log(2.0));
}

}  // namespace net2net::inn
