#include "net2net/inn/flow.h"

#include <cmath>
#include <deque>
#include <memory>
#include <tuple>

#include "net2net/kernels/dispatch.h"
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

// ---------------------------------------------------------------- the whole flow as one kernel
namespace {
using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

// The whole flow as one kernel (cpu flow_forward / flow_backward / flow_inverse) where every
// coupling takes the fused subnet kernels and the tensors are CPU float / double. Forward needs
// ActNorm initialised when training (its initialisation is the op-by-op path's first step), and
// with gradients each pair's input width in whole vectors (flow_backward).
bool fused_flow_possible(const std::vector<FlowBlock>& blocks, const Tensor& x, const std::vector<Tensor>& conds,
                         bool forward) {
  if (!kernels::fused_cpu({x}) || blocks.empty() || x.dim() != 2) return false;
  const bool grad = torch::GradMode::is_enabled();
  if (!forward && grad) return false;
  const int width = kernels::cpu_vector_width(x.scalar_type());
  for (size_t i = 0; i < blocks.size(); ++i) {
    const auto& blk = blocks[i];
    const auto &st0 = blk->coupling->st0(), &st1 = blk->coupling->st1();
    if (!kernels::fused_cpu({x, conds[i], blk->norm->loc, blk->norm->scale}) || !st0->fusable(x) || !st1->fusable(x))
      return false;
    if (forward && blk->norm->is_training() && !blk->norm->initialized()) return false;
    if (forward && grad &&
        (st0->in_dim() % width != 0 || st1->in_dim() % width != 0))
      return false;
  }
  return true;
}

// Per block: loc, scale, then st0's and st1's kernel_params (SubnetPair order).
std::vector<Tensor> flat_parameters(const std::vector<FlowBlock>& blocks) {
  std::vector<Tensor> out;
  for (const auto& blk : blocks) {
    out.push_back(blk->norm->loc), out.push_back(blk->norm->scale);
    for (const auto& st : {blk->coupling->st0(), blk->coupling->st1()})
      for (auto& p : st->kernel_params()) out.push_back(p);
  }
  return out;
}
int64_t per_block(int64_t depth) { return 2 + 2 * (4 + 2 * depth); }

// What the kernels read, as raw pointers into contiguous tensors held here; the transposed
// weights go to one scratch tensor, filled by one parallel kernel call (finish()).
template <typename T>
struct KernelWeights {
  std::vector<Tensor> keep;                  // contiguous tensors the kernel reads
  std::deque<std::vector<const T*>> layers;  // per pair: w_hidden, b_hidden[, w_hidden_t] pointers
  std::vector<kernels::cpu::FlowBlockWeights<T>> blocks;
  Tensor scratch;  // the transposed copies, carved in order
  T* next = nullptr;
  std::vector<const T*> t_src;
  std::vector<T*> t_dst;
  std::vector<int64_t> t_rows, t_cols;

  // Elements of the transposed copies that add_block will want: w_in per pair and, for the
  // backward pass, the hidden and output weights.
  static int64_t scratch_elements(at::TensorList params, int64_t depth, bool transposes) {
    int64_t total = 0;
    for (size_t base = 0; base < params.size(); base += per_block(depth))
      for (size_t pair = base + 2; pair < base + per_block(depth); pair += 4 + 2 * depth) {
        total += params[pair].numel();
        if (!transposes) continue;
        for (int64_t k = 0; k < depth; ++k) total += params[pair + 2 + 2 * k].numel();
        total += params[pair + 2 + 2 * depth].numel();
      }
    return total;
  }
  KernelWeights(at::TensorList params, int64_t depth, bool transposes) {
    scratch = torch::empty({scratch_elements(params, depth, transposes)}, params[0].options());
    next = scratch.data_ptr<T>();
  }
  const T* hold(const Tensor& t) {
    keep.push_back(t.contiguous());
    return keep.back().data_ptr<T>();
  }
  const int64_t* index(const Tensor& t) {
    keep.push_back(t.contiguous());
    return keep.back().data_ptr<int64_t>();
  }
  // m [.., rows, cols] (a batch of matrices) transposed into the scratch: [.., cols, rows].
  const T* transposed(const Tensor& m) {
    const T* src = hold(m);
    T* dst = next;
    const int64_t rows = m.size(-2), cols = m.size(-1);
    for (int64_t i = 0; i < m.numel() / (rows * cols); ++i) {
      t_src.push_back(src + i * rows * cols), t_dst.push_back(dst + i * rows * cols);
      t_rows.push_back(rows), t_cols.push_back(cols);
    }
    next += m.numel();
    return dst;
  }
  // params: w_in [2H, in], b_in, (w_hidden{k}, b_hidden{k})..., w_out, b_out.
  kernels::cpu::PairWeights<T> pair(const Tensor* params, int64_t depth, bool transposes) {
    auto& ptrs = layers.emplace_back();
    for (int64_t k = 0; k < depth; ++k) ptrs.push_back(hold(params[2 + 2 * k]));
    for (int64_t k = 0; k < depth; ++k) ptrs.push_back(hold(params[3 + 2 * k]));
    if (transposes)
      for (int64_t k = 0; k < depth; ++k) ptrs.push_back(transposed(params[2 + 2 * k]));
    kernels::cpu::PairWeights<T> p{transposed(params[0]), hold(params[1]), ptrs.data(), ptrs.data() + depth,
                                   hold(params[2 + 2 * depth]), hold(params[3 + 2 * depth]), params[0].size(1),
                                   params[0].size(0) / 2, depth, params[3 + 2 * depth].size(-1)};
    if (transposes) {
      p.w_in_t = hold(params[0]);
      p.w_hidden_t = ptrs.data() + 2 * depth;
      p.w_out_t = transposed(params[2 + 2 * depth]);
    }
    return p;
  }
  // params: loc, scale, st0's, st1's (per_block(depth) tensors).
  void add_block(const Tensor* params, int64_t depth, double alpha, const Tensor& shuffle, const Tensor& unshuffle,
                 const Tensor& cond, bool transposes) {
    kernels::cpu::FlowBlockWeights<T> b{hold(params[0]), hold(params[1]), static_cast<T>(alpha), index(unshuffle),
                                        pair(params + 2, depth, transposes), pair(params + 6 + 2 * depth, depth, transposes),
                                        hold(cond), cond.size(1)};
    b.shuffle = index(shuffle);
    blocks.push_back(b);
  }
  void finish() {
    TORCH_CHECK(next == scratch.data_ptr<T>() + scratch.numel(), "KernelWeights: scratch size mismatch");
    kernels::cpu::table<T>().transpose_many(t_src.data(), t_dst.data(), t_rows.data(), t_cols.data(),
                                            static_cast<int64_t>(t_src.size()));
  }
};

// Per block, from the modules: alpha (0: no LeakyReLU), the shuffle and its inverse.
struct FlowMeta {
  std::vector<double> alphas;
  std::vector<Tensor> shuffles, unshuffles;
  int64_t depth = 0, first_half = 0;
};
FlowMeta flow_meta(const std::vector<FlowBlock>& blocks) {
  FlowMeta m;
  for (const auto& blk : blocks) {
    m.alphas.push_back(blk->activation ? blk->activation->alpha() : 0.0);
    m.shuffles.push_back(blk->shuffle->forward_index), m.unshuffles.push_back(blk->shuffle->backward_index);
  }
  m.depth = blocks.front()->coupling->st0()->depth();
  m.first_half = blocks.front()->coupling->first_half();
  return m;
}

template <typename T>
std::unique_ptr<KernelWeights<T>> kernel_weights(const FlowMeta& m, at::TensorList params, at::TensorList conds,
                                                 bool transposes) {
  auto w = std::make_unique<KernelWeights<T>>(params, m.depth, transposes);
  const int64_t pb = per_block(m.depth);
  for (size_t i = 0; i < m.alphas.size(); ++i)
    w->add_block(params.data() + i * pb, m.depth, m.alphas[i], m.shuffles[i], m.unshuffles[i], conds[i], transposes);
  w->finish();
  return w;
}

// Training through flow_forward / flow_backward: one autograd node for the whole flow. inputs:
// the block conditions, the flat parameters, then the shuffles and their inverses.
struct FlowFn : public torch::autograd::Function<FlowFn> {
  static FlowMeta meta(at::TensorList inputs, const std::vector<double>& alphas, int64_t depth, int64_t first_half) {
    const int64_t count = static_cast<int64_t>(alphas.size()), base = count + count * per_block(depth);
    FlowMeta m{alphas, {}, {}, depth, first_half};
    for (int64_t i = 0; i < count; ++i)
      m.shuffles.push_back(inputs[base + i]), m.unshuffles.push_back(inputs[base + count + i]);
    return m;
  }

  static variable_list forward(AutogradContext* ctx, Tensor x, at::TensorList inputs, std::vector<double> alphas,
                               int64_t depth, int64_t first_half) {
    const int64_t count = static_cast<int64_t>(alphas.size()), n = x.size(0), d = x.size(1);
    const FlowMeta m = meta(inputs, alphas, depth, first_half);
    const Tensor xc = x.contiguous();
    Tensor v = torch::empty_like(xc), logdet = torch::empty({n}, x.options()), saved;
    AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "flow_forward", [&] {
      auto w = kernel_weights<scalar_t>(m, inputs.slice(count, count * per_block(depth)), inputs.slice(0, count), false);
      int64_t total = 0;
      for (const auto& b : w->blocks) total += kernels::cpu::flow_saved_elements(n, d, b);
      saved = torch::empty({total}, x.options());
      kernels::cpu::table<scalar_t>().flow_forward(xc.data_ptr<scalar_t>(), n, d, first_half, w->blocks.data(), count,
                                                   v.data_ptr<scalar_t>(), logdet.data_ptr<scalar_t>(),
                                                   saved.data_ptr<scalar_t>());
    });
    std::vector<Tensor> keep = {saved};
    for (const auto& t : inputs) keep.push_back(t);
    ctx->save_for_backward(keep);
    ctx->saved_data["alphas"] = alphas;
    ctx->saved_data["depth"] = depth;
    ctx->saved_data["first_half"] = first_half;
    return {v, logdet};
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const auto all = ctx->get_saved_variables();
    const Tensor& saved = all[0];
    const std::vector<Tensor> inputs(all.begin() + 1, all.end());
    const auto alphas = ctx->saved_data["alphas"].toDoubleVector();
    const int64_t depth = ctx->saved_data["depth"].toInt(), first_half = ctx->saved_data["first_half"].toInt();
    const int64_t count = static_cast<int64_t>(alphas.size()), pb = per_block(depth);
    const FlowMeta m = meta(inputs, alphas, depth, first_half);
    const at::TensorList conds(inputs.data(), count), params(inputs.data() + count, count * pb);
    const int64_t n = conds[0].size(0), d = params[0].size(0);
    auto opts = saved.options();
    const Tensor gv = grads[0].defined() ? grads[0].contiguous() : torch::zeros({n, d}, opts);
    const Tensor gld = grads[1].defined() ? grads[1].contiguous() : torch::zeros({n}, opts);
    Tensor gx = torch::empty({n, d}, opts);
    std::vector<Tensor> g_conds, g_params;
    for (const auto& c : conds) g_conds.push_back(torch::empty({n, c.size(1)}, opts));
    for (const auto& p : params) g_params.push_back(torch::empty(p.sizes(), opts));
    AT_DISPATCH_FLOATING_TYPES(saved.scalar_type(), "flow_backward", [&] {
      using T = scalar_t;
      auto w = kernel_weights<T>(m, params, conds, true);
      int64_t total = 0;
      for (const auto& b : w->blocks) total += kernels::cpu::flow_work_elements(n, d, b);
      Tensor work = torch::empty({total}, opts);
      std::deque<std::vector<T*>> layer_ptrs;
      auto pair_grads = [&](Tensor* g) {
        auto& ptrs = layer_ptrs.emplace_back();
        for (int64_t k = 0; k < depth; ++k) ptrs.push_back(g[2 + 2 * k].data_ptr<T>());
        for (int64_t k = 0; k < depth; ++k) ptrs.push_back(g[3 + 2 * k].data_ptr<T>());
        return kernels::cpu::PairGrads<T>{g[0].data_ptr<T>(), g[1].data_ptr<T>(), ptrs.data(), ptrs.data() + depth,
                                          g[2 + 2 * depth].data_ptr<T>(), g[3 + 2 * depth].data_ptr<T>()};
      };
      std::vector<kernels::cpu::FlowBlockGrads<T>> bg;
      for (int64_t i = 0; i < count; ++i) {
        Tensor* g = g_params.data() + i * pb;
        bg.push_back({g[0].data_ptr<T>(), g[1].data_ptr<T>(), pair_grads(g + 2), pair_grads(g + 6 + 2 * depth),
                      g_conds[i].data_ptr<T>()});
      }
      kernels::cpu::table<T>().flow_backward(n, d, first_half, w->blocks.data(), count, saved.data_ptr<T>(),
                                             gv.data_ptr<T>(), gld.data_ptr<T>(), work.data_ptr<T>(), gx.data_ptr<T>(),
                                             bg.data());
    });
    variable_list result = {gx};
    for (auto& g : g_conds) result.push_back(g);
    for (auto& g : g_params) result.push_back(g);
    for (int64_t i = 0; i < 2 * count; ++i) result.push_back(Tensor());  // the shuffles
    for (int i = 0; i < 3; ++i) result.push_back(Tensor());               // alphas, depth, first_half
    return result;
  }
};

FlowOutput fused_forward(const std::vector<FlowBlock>& blocks, const Tensor& x, const std::vector<Tensor>& conds) {
  const FlowMeta m = flow_meta(blocks);
  const auto params = flat_parameters(blocks);
  if (torch::GradMode::is_enabled()) {
    std::vector<Tensor> inputs(conds.begin(), conds.end());
    inputs.insert(inputs.end(), params.begin(), params.end());
    inputs.insert(inputs.end(), m.shuffles.begin(), m.shuffles.end());
    inputs.insert(inputs.end(), m.unshuffles.begin(), m.unshuffles.end());
    auto out = FlowFn::apply(x, at::TensorList(inputs), m.alphas, m.depth, m.first_half);
    return {out[0], out[1]};
  }
  const Tensor xc = x.contiguous();
  Tensor v = torch::empty_like(xc), logdet = torch::empty({x.size(0)}, x.options());
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "flow_forward", [&] {
    auto w = kernel_weights<scalar_t>(m, params, conds, false);
    kernels::cpu::table<scalar_t>().flow_forward(xc.data_ptr<scalar_t>(), x.size(0), x.size(1), m.first_half,
                                                 w->blocks.data(), static_cast<int64_t>(w->blocks.size()),
                                                 v.data_ptr<scalar_t>(), logdet.data_ptr<scalar_t>(), nullptr);
  });
  return {v, logdet};
}

Tensor fused_inverse(const std::vector<FlowBlock>& blocks, const Tensor& v, const std::vector<Tensor>& conds) {
  const FlowMeta m = flow_meta(blocks);
  const auto params = flat_parameters(blocks);
  const Tensor vc = v.contiguous();
  Tensor x = torch::empty_like(vc);
  AT_DISPATCH_FLOATING_TYPES(v.scalar_type(), "flow_inverse", [&] {
    auto w = kernel_weights<scalar_t>(m, params, conds, false);
    kernels::cpu::table<scalar_t>().flow_inverse(vc.data_ptr<scalar_t>(), vc.size(0), vc.size(1), m.first_half,
                                                 w->blocks.data(), static_cast<int64_t>(w->blocks.size()),
                                                 x.data_ptr<scalar_t>());
  });
  return x;
}
}  // namespace

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
  if (fused_flow_possible(blocks_, x, conds, /*forward=*/true)) return fused_forward(blocks_, x, conds);
  Tensor h = x;
  Tensor logdet = torch::zeros({x.size(0)}, x.options());
  for (size_t i = 0; i < blocks_.size(); ++i) {
    auto [y, ld] = blocks_[i]->forward(h, conds[i]);
    h = y;
    logdet = logdet + ld;
  }
  return {h, logdet};
}

bool ConditionalFlowImpl::forward_is_fused(const Tensor& x, const Tensor& cond) {
  return fused_flow_possible(blocks_, x, block_conditions(cond), /*forward=*/true);
}

bool ConditionalFlowImpl::inverse_is_fused(const Tensor& v, const Tensor& cond) {
  return fused_flow_possible(blocks_, v, block_conditions(cond), /*forward=*/false);
}

Tensor ConditionalFlowImpl::inverse(const Tensor& v, const Tensor& cond) {
  TORCH_CHECK(v.dim() == 2 && v.size(1) == cfg_.in_dim, "residual: expected [N, ", cfg_.in_dim, "], got ", v.sizes());
  auto conds = block_conditions(cond);
  if (fused_flow_possible(blocks_, v, conds, /*forward=*/false)) return fused_inverse(blocks_, v, conds);
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
