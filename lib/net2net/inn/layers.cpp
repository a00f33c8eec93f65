#include "net2net/inn/layers.h"

#include <array>
#include <cmath>
#include <map>
#include <random>
#include <type_traits>

#include "net2net/kernels/affine_coupling.h"
#include "net2net/kernels/batched_linear.h"
#include "net2net/kernels/cpu/kernels.h"

namespace net2net::inn {

namespace {
void check_2d(const Tensor& x, int64_t dim, const char* layer) {
  TORCH_CHECK(x.dim() == 2 && x.size(1) == dim, layer, ": expected input [N, ", dim, "], got ", x.sizes());
}
}  // namespace

// ---------------------------------------------------------------- ActNorm
ActNormImpl::ActNormImpl(int64_t dim) {
  loc = register_parameter("loc", torch::zeros({dim}));
  scale = register_parameter("scale", torch::ones({dim}));
  initialized_flag = register_buffer("initialized", torch::zeros({}, torch::kUInt8));
}

bool ActNormImpl::initialized() const {
  if (!known_initialized_) known_initialized_ = initialized_flag.item<uint8_t>() != 0;
  return known_initialized_;
}

void ActNormImpl::load(torch::serialize::InputArchive& archive) {
  torch::nn::Module::load(archive);
  known_initialized_ = false;  // read the loaded flag again
}

void ActNormImpl::initialize(const Tensor& x) {
  torch::NoGradGuard no_grad;
  auto mean = x.mean(0);
  // Unbiased std as the reference (torch.std); a batch of one item keeps the scale at 1.
  auto std = x.size(0) > 1 ? x.std(0, /*unbiased=*/true) : torch::ones_like(mean);
  loc.copy_(-mean);
  scale.copy_(1.0 / (std + 1e-6));
  initialized_flag.fill_(1);
  known_initialized_ = true;
}

LayerOutput ActNormImpl::forward(const Tensor& x) {
  check_2d(x, loc.size(0), "ActNorm");
  if (is_training() && !initialized()) initialize(x);
  auto y = scale * (x + loc);
  auto logdet = torch::log(torch::abs(scale)).sum().expand({x.size(0)});
  return {y, logdet};
}

Tensor ActNormImpl::inverse(const Tensor& y) {
  check_2d(y, loc.size(0), "ActNorm");
  return y / scale - loc;
}

// ---------------------------------------------------------------- invertible leaky ReLU
InvLeakyReluImpl::InvLeakyReluImpl(double alpha) : alpha_(alpha) {
  TORCH_CHECK(alpha > 0.0, "InvLeakyRelu: alpha must be > 0");
}

LayerOutput InvLeakyReluImpl::forward(const Tensor& x) {
  auto negative = x < 0;
  auto y = torch::where(negative, x * alpha_, x);
  auto logdet = negative.sum(1).to(x.scalar_type()) * std::log(alpha_);
  return {y, logdet};
}

Tensor InvLeakyReluImpl::inverse(const Tensor& y) { return torch::where(y < 0, y / alpha_, y); }

// ---------------------------------------------------------------- Shuffle
std::vector<int64_t> seeded_permutation(int64_t n, uint64_t seed) {
  std::vector<int64_t> p(n);
  for (int64_t i = 0; i < n; ++i) p[i] = i;
  std::mt19937_64 rng(seed);
  for (int64_t i = n - 1; i > 0; --i) {
    auto j = static_cast<int64_t>(rng() % static_cast<uint64_t>(i + 1));
    std::swap(p[i], p[j]);
  }
  return p;
}

ShuffleImpl::ShuffleImpl(int64_t dim, uint64_t seed) {
  auto p = seeded_permutation(dim, seed);
  auto fwd = torch::tensor(p, torch::kLong);
  forward_index = register_buffer("forward_index", fwd);
  backward_index = register_buffer("backward_index", torch::argsort(fwd));
}

LayerOutput ShuffleImpl::forward(const Tensor& x) {
  check_2d(x, forward_index.size(0), "Shuffle");
  return {x.index_select(1, forward_index), torch::zeros({x.size(0)}, x.options())};
}

Tensor ShuffleImpl::inverse(const Tensor& y) {
  check_2d(y, backward_index.size(0), "Shuffle");
  return y.index_select(1, backward_index);
}

// ---------------------------------------------------------------- MLP
MlpImpl::MlpImpl(int64_t in_dim, int64_t hidden_dim, int64_t depth, int64_t out_dim, bool tanh_out,
                 const std::string& norm)
    : tanh_out_(tanh_out) {
  TORCH_CHECK(norm == "none" || norm == "batchnorm" || norm == "actnorm", "Mlp: unknown norm ", norm);
  // Built in separate statements, in order: the order of initialisation decides the weights.
  for (int64_t i = 0; i <= depth; ++i) {
    auto linear = register_module("linear" + std::to_string(i),
                                  torch::nn::Linear(i == 0 ? in_dim : hidden_dim, hidden_dim));
    linears_.push_back(linear);
    if (norm == "batchnorm")
      batch_norms_.push_back(register_module("norm" + std::to_string(i), torch::nn::BatchNorm1d(hidden_dim)));
    else if (norm == "actnorm")
      act_norms_.push_back(register_module("norm" + std::to_string(i), ActNorm(hidden_dim)));
  }
  linears_.push_back(register_module("linear" + std::to_string(depth + 1), torch::nn::Linear(hidden_dim, out_dim)));
}

Tensor MlpImpl::forward(Tensor x) {
  const size_t hidden = linears_.size() - 1;
  for (size_t i = 0; i < hidden; ++i) {
    x = linears_[i]->forward(x);
    if (!batch_norms_.empty()) x = batch_norms_[i]->forward(x);
    if (!act_norms_.empty()) x = act_norms_[i]->forward(x).first;
    x = torch::leaky_relu(x, 0.01);
  }
  x = linears_.back()->forward(x);
  return tanh_out_ ? torch::tanh(x) : x;
}

// ---------------------------------------------------------------- subnet pair
SubnetPairImpl::SubnetPairImpl(const MlpImpl& s, const MlpImpl& t) {
  const auto& ls = s.linears();
  const auto& lt = t.linears();
  TORCH_CHECK(ls.size() == lt.size() && ls.size() >= 2, "SubnetPair: the two subnets differ in depth");
  torch::NoGradGuard no_grad;
  hidden_ = ls.front()->weight.size(0);
  w_in_ = register_parameter("w_in", torch::cat({ls.front()->weight, lt.front()->weight}, 0));
  b_in_ = register_parameter("b_in", torch::cat({ls.front()->bias, lt.front()->bias}, 0));
  for (size_t k = 1; k + 1 < ls.size(); ++k) {
    w_hidden_.push_back(register_parameter("w_hidden" + std::to_string(k),
                                           torch::stack({ls[k]->weight.t(), lt[k]->weight.t()}).contiguous()));
    b_hidden_.push_back(register_parameter("b_hidden" + std::to_string(k), torch::stack({ls[k]->bias, lt[k]->bias})));
  }
  w_out_ = register_parameter("w_out", torch::stack({ls.back()->weight.t(), lt.back()->weight.t()}).contiguous());
  b_out_ = register_parameter("b_out", torch::stack({ls.back()->bias, lt.back()->bias}));
  n_weights_ = w_in_.numel() + w_out_.numel();
  for (const auto& w : w_hidden_) n_weights_ += w.numel();
}

namespace {
using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

// The fused kernels (cpu subnet_pair_forward / backward) for this pair: CPU float / double, small
// weights (each block of rows reads all of them: they must stay in cache), widths in whole vectors.
bool fused_pair(const Tensor& x, const Tensor& w_in, int64_t hidden, int64_t out, int64_t n_weights) {
  if (!kernels::fused_cpu({x, w_in}) || x.dim() != 2) return false;
  const int64_t bytes = n_weights * static_cast<int64_t>(x.element_size());
  const int width = kernels::cpu_vector_width(x.scalar_type());
  return bytes <= (1 << 20) && hidden % width == 0 && out % width == 0;
}

// The data pointers of `ts` (T const for inputs).
template <typename T>
std::vector<T*> pointers(const std::vector<Tensor>& ts) {
  std::vector<T*> out;
  for (const auto& t : ts) out.push_back(t.data_ptr<std::remove_const_t<T>>());
  return out;
}

// params: w_in [2H, in], b_in [2H], then per hidden layer w [2, H, H], b [2, H], then w_out [2, H,
// out], b_out [2, out] (SubnetPair's parameters). (s, t) through the forward kernel; with `acts`
// (training) a0 [N, 2H] and the hidden activations [2, N, H] are kept there (after each LeakyReLU).
std::pair<Tensor, Tensor> pair_forward(const Tensor& x, at::TensorList params, int64_t hidden,
                                       std::vector<Tensor>* acts) {
  const int64_t depth = (static_cast<int64_t>(params.size()) - 4) / 2, n = x.size(0), out = params.back().size(1);
  const Tensor xc = x.contiguous(), w_in_t = params[0].t().contiguous(), b_in = params[1].contiguous();
  std::vector<Tensor> wh, bh;
  for (int64_t k = 0; k < depth; ++k) wh.push_back(params[2 + 2 * k].contiguous()), bh.push_back(params[3 + 2 * k].contiguous());
  const Tensor w_out = params[2 + 2 * depth].contiguous(), b_out = params[3 + 2 * depth].contiguous();
  if (acts) {
    acts->assign({torch::empty({n, 2 * hidden}, x.options())});
    for (int64_t k = 0; k < depth; ++k) acts->push_back(torch::empty({2, n, hidden}, x.options()));
  }
  Tensor s = torch::empty({n, out}, x.options()), t = torch::empty({n, out}, x.options());
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "subnet_pair_forward", [&] {
    auto wp = pointers<const scalar_t>(wh), bp = pointers<const scalar_t>(bh);
    std::vector<scalar_t*> ap;
    if (acts) ap = pointers<scalar_t>(std::vector<Tensor>(acts->begin() + 1, acts->end()));
    kernels::cpu::table<scalar_t>().subnet_pair_forward(
        xc.data_ptr<scalar_t>(), n, xc.size(1), w_in_t.data_ptr<scalar_t>(), b_in.data_ptr<scalar_t>(), hidden, depth,
        wp.data(), bp.data(), w_out.data_ptr<scalar_t>(), b_out.data_ptr<scalar_t>(), out, s.data_ptr<scalar_t>(),
        t.data_ptr<scalar_t>(), acts ? (*acts)[0].data_ptr<scalar_t>() : nullptr, acts ? ap.data() : nullptr);
  });
  return {s, t};
}

// Training through the fused kernels: the forward keeps x, the activations and s; the backward
// kernel gives the gradients at every pre-activation, from which each layer's weight gradient is
// one GEMM over the batch.
struct SubnetPairFn : public torch::autograd::Function<SubnetPairFn> {
  static variable_list forward(AutogradContext* ctx, Tensor x, at::TensorList params, int64_t hidden) {
    const int64_t depth = (static_cast<int64_t>(params.size()) - 4) / 2;
    std::vector<Tensor> acts;  // a0, then the hidden activations
    auto [s, t] = pair_forward(x, params, hidden, &acts);
    std::vector<Tensor> saved = {x.contiguous(), params[0].contiguous(), params[2 + 2 * depth].contiguous(), s};
    for (auto& a : acts) saved.push_back(a);
    for (int64_t k = 0; k < depth; ++k) saved.push_back(params[2 + 2 * k].contiguous());
    ctx->save_for_backward(saved);
    ctx->saved_data["hidden"] = hidden;
    ctx->saved_data["depth"] = depth;
    return {s, t};
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const auto saved = ctx->get_saved_variables();
    const int64_t hidden = ctx->saved_data["hidden"].toInt(), depth = ctx->saved_data["depth"].toInt();
    const Tensor &x = saved[0], &w_in = saved[1], &w_out = saved[2], &s = saved[3], &a0 = saved[4];
    const std::vector<Tensor> acts(saved.begin() + 5, saved.begin() + 5 + depth),
        wh(saved.begin() + 5 + depth, saved.begin() + 5 + 2 * depth);
    const int64_t n = x.size(0), out = s.size(1);
    const Tensor gs = grads[0].contiguous(), gt = grads[1].contiguous();
    Tensor g_out = torch::empty({2, n, out}, x.options()), g_a0 = torch::empty({n, 2 * hidden}, x.options());
    std::vector<Tensor> g_hidden;
    for (int64_t k = 0; k < depth; ++k) g_hidden.push_back(torch::empty({2, n, hidden}, x.options()));
    // The weights as [out, in]: the products with them are then the nn kernel's (small: copied).
    std::vector<Tensor> wh_t;
    for (const auto& w : wh) wh_t.push_back(w.transpose(1, 2).contiguous());
    const Tensor w_out_t = w_out.transpose(1, 2).contiguous();
    AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "subnet_pair_backward", [&] {
      auto wp = pointers<const scalar_t>(wh_t), ap = pointers<const scalar_t>(acts);
      auto gp = pointers<scalar_t>(g_hidden);
      kernels::cpu::table<scalar_t>().subnet_pair_backward(
          n, hidden, depth, wp.data(), w_out_t.data_ptr<scalar_t>(), out, s.data_ptr<scalar_t>(), a0.data_ptr<scalar_t>(),
          ap.data(), gs.data_ptr<scalar_t>(), gt.data_ptr<scalar_t>(), g_out.data_ptr<scalar_t>(), gp.data(),
          g_a0.data_ptr<scalar_t>());
    });
    // Each layer's input: a0 as the pair [2, n, H] (a view), then the hidden activations.
    auto input_of = [&](int64_t layer) { return layer == 0 ? a0.view({n, 2, hidden}).transpose(0, 1) : acts[layer - 1]; };
    variable_list result;
    result.push_back(ctx->needs_input_grad(0) ? torch::mm(g_a0, w_in) : Tensor());
    result.push_back(torch::mm(g_a0.t(), x));
    result.push_back(g_a0.sum(0));
    for (int64_t k = 0; k < depth; ++k) {
      result.push_back(torch::bmm(input_of(k).transpose(1, 2), g_hidden[k]));
      result.push_back(g_hidden[k].sum(1));
    }
    result.push_back(torch::bmm(input_of(depth).transpose(1, 2), g_out));
    result.push_back(g_out.sum(1));
    result.push_back(Tensor());  // hidden (not a tensor)
    return result;
  }
};
}  // namespace

bool SubnetPairImpl::fusable(const Tensor& x) const { return fused_pair(x, w_in_, hidden_, w_out_.size(2), n_weights_); }

std::vector<Tensor> SubnetPairImpl::kernel_params() const {
  std::vector<Tensor> params = {w_in_, b_in_};
  for (size_t k = 0; k < w_hidden_.size(); ++k) params.push_back(w_hidden_[k]), params.push_back(b_hidden_[k]);
  params.push_back(w_out_), params.push_back(b_out_);
  return params;
}

std::pair<Tensor, Tensor> SubnetPairImpl::forward(const Tensor& x) {
  const int64_t n = x.size(0);
  if (fusable(x)) {
    const auto params = kernel_params();
    if (torch::GradMode::is_enabled()) {
      auto st = SubnetPairFn::apply(x, at::TensorList(params), hidden_);
      return {st[0], st[1]};
    }
    return pair_forward(x, params, hidden_, nullptr);  // inference: no activations kept
  }
  auto h = torch::leaky_relu(kernels::linear(x, w_in_, b_in_), 0.01);  // [N, 2H]
  auto pair = h.view({n, 2, hidden_}).transpose(0, 1);                   // [2, N, H], a view
  for (size_t k = 0; k < w_hidden_.size(); ++k)
    pair = torch::leaky_relu(kernels::batched_linear(pair, w_hidden_[k], b_hidden_[k]), 0.01);
  auto out = kernels::batched_linear(pair, w_out_, b_out_);  // [2, N, out]
  return {torch::tanh(out.select(0, 0)), out.select(0, 1)};
}

std::vector<std::pair<std::string, Tensor>> SubnetPairImpl::unbatched(const std::string& s_name,
                                                                      const std::string& t_name) const {
  std::vector<std::pair<std::string, Tensor>> out;
  const size_t last = w_hidden_.size() + 1;
  for (int64_t j = 0; j < 2; ++j) {
    const std::string& prefix = j == 0 ? s_name : t_name;
    auto name = [&](size_t k, const char* what) { return prefix + ".linear" + std::to_string(k) + "." + what; };
    out.emplace_back(name(0, "weight"), w_in_.narrow(0, j * hidden_, hidden_));
    out.emplace_back(name(0, "bias"), b_in_.narrow(0, j * hidden_, hidden_));
    for (size_t k = 0; k < w_hidden_.size(); ++k) {
      out.emplace_back(name(k + 1, "weight"), w_hidden_[k].select(0, j).t());
      out.emplace_back(name(k + 1, "bias"), b_hidden_[k].select(0, j));
    }
    out.emplace_back(name(last, "weight"), w_out_.select(0, j).t());
    out.emplace_back(name(last, "bias"), b_out_.select(0, j));
  }
  return out;
}

// ---------------------------------------------------------------- double coupling
DoubleCouplingImpl::DoubleCouplingImpl(int64_t dim, int64_t cond_dim, int64_t hidden_dim, int64_t hidden_depth)
    : a_((dim + 1) / 2), b_(dim / 2) {
  TORCH_CHECK(dim >= 2, "DoubleCoupling: needs at least 2 dimensions, got ", dim);
  // The four subnets are drawn in the reference's order (s0, t0, s1, t1), then packed in pairs.
  Mlp s0(a_ + cond_dim, hidden_dim, hidden_depth, b_, /*tanh_out=*/true);
  Mlp t0(a_ + cond_dim, hidden_dim, hidden_depth, b_, /*tanh_out=*/false);
  Mlp s1(b_ + cond_dim, hidden_dim, hidden_depth, a_, /*tanh_out=*/true);
  Mlp t1(b_ + cond_dim, hidden_dim, hidden_depth, a_, /*tanh_out=*/false);
  st0_ = register_module("st0", SubnetPair(*s0, *t0));
  st1_ = register_module("st1", SubnetPair(*s1, *t1));
}

LayerOutput DoubleCouplingImpl::forward(const Tensor& x, const Tensor& cond) {
  check_2d(x, a_ + b_, "DoubleCoupling");
  auto x1 = x.narrow(1, 0, a_);
  auto x2 = x.narrow(1, a_, b_);
  // Each affine step (y = x exp(s) + t, log-det sum s) is one fused kernel (kernels/).
  auto [s0, t0] = st0_->forward(torch::cat({x1, cond}, 1));
  auto [x2n, ld0] = kernels::affine_coupling(x2, s0, t0);
  auto [s1, t1] = st1_->forward(torch::cat({x2n, cond}, 1));
  auto [x1n, ld1] = kernels::affine_coupling(x1, s1, t1);
  return {torch::cat({x2n, x1n}, 1), ld0 + ld1};
}

Tensor DoubleCouplingImpl::inverse(const Tensor& y, const Tensor& cond) {
  check_2d(y, a_ + b_, "DoubleCoupling");
  auto x2n = y.narrow(1, 0, b_);
  auto x1n = y.narrow(1, b_, a_);
  auto [s1, t1] = st1_->forward(torch::cat({x2n, cond}, 1));
  auto x1 = kernels::affine_coupling_inverse(x1n, s1, t1);
  auto [s0, t0] = st0_->forward(torch::cat({x1, cond}, 1));
  auto x2 = kernels::affine_coupling_inverse(x2n, s0, t0);
  return torch::cat({x1, x2}, 1);
}

std::vector<std::pair<std::string, Tensor>> DoubleCouplingImpl::unbatched_parameters() const {
  auto out = st0_->unbatched("s0", "t0");
  for (auto& p : st1_->unbatched("s1", "t1")) out.push_back(std::move(p));
  return out;
}

namespace {
// "s0.linear1.weight" -> {"s0", "linear1", "weight"}: subnet, layer and leaf of a coupling weight.
std::array<std::string, 3> split_weight_name(const std::string& name) {
  auto dot = name.find('.'), dot2 = name.find('.', dot + 1);
  return {name.substr(0, dot), name.substr(dot + 1, dot2 - dot - 1), name.substr(dot2 + 1)};
}
}  // namespace

// Written as the module tree {s0, t0, s1, t1}.linear{k}.{weight, bias} (what four Mlp children
// would write), read back into the packed pairs.
void DoubleCouplingImpl::save(torch::serialize::OutputArchive& archive) const {
  std::map<std::string, std::map<std::string, torch::serialize::OutputArchive>> tree;
  std::vector<std::string> order;
  for (const auto& [name, value] : unbatched_parameters()) {
    auto [subnet, layer, leaf] = split_weight_name(name);
    if (!tree.count(subnet)) order.push_back(subnet);
    auto& layers = tree[subnet];
    auto it = layers.find(layer);
    if (it == layers.end()) it = layers.emplace(layer, torch::serialize::OutputArchive(archive.compilation_unit())).first;
    it->second.write(leaf, value.contiguous());
  }
  for (const auto& subnet : order) {
    torch::serialize::OutputArchive sub(archive.compilation_unit());
    for (auto& [layer, a] : tree[subnet]) sub.write(layer, a);
    archive.write(subnet, sub);
  }
}

void DoubleCouplingImpl::load(torch::serialize::InputArchive& archive) {
  torch::NoGradGuard no_grad;
  std::map<std::string, torch::serialize::InputArchive> subnets, layers;  // each read once
  for (const auto& [name, target] : unbatched_parameters()) {
    auto [subnet, layer, leaf] = split_weight_name(name);
    auto sub = subnets.find(subnet);
    if (sub == subnets.end()) {
      sub = subnets.emplace(subnet, torch::serialize::InputArchive()).first;
      archive.read(subnet, sub->second);
    }
    auto lay = layers.find(subnet + "." + layer);
    if (lay == layers.end()) {
      lay = layers.emplace(subnet + "." + layer, torch::serialize::InputArchive()).first;
      sub->second.read(layer, lay->second);
    }
    Tensor value;
    lay->second.read(leaf, value);
    TORCH_CHECK(value.sizes() == target.sizes(), "coupling weight ", name, ": expected ", target.sizes(), ", got ",
                value.sizes());
    target.copy_(value);
  }
}

std::vector<std::pair<std::string, Tensor>> unbatched_named_parameters(torch::nn::Module& module) {
  std::vector<std::pair<std::string, Tensor>> out;
  for (const auto& item : module.named_modules("", /*include_self=*/true)) {
    if (dynamic_cast<SubnetPairImpl*>(item.value().get())) continue;  // listed by its coupling
    const std::string prefix = item.key().empty() ? "" : item.key() + ".";
    for (const auto& p : item.value()->named_parameters(/*recurse=*/false)) out.emplace_back(prefix + p.key(), p.value());
    if (auto* coupling = dynamic_cast<DoubleCouplingImpl*>(item.value().get()))
      for (auto& [name, value] : coupling->unbatched_parameters()) out.emplace_back(prefix + name, value);
  }
  return out;
}

// ---------------------------------------------------------------- helpers
void convert_floating(torch::nn::Module& module, torch::Dtype dtype) {
  torch::NoGradGuard no_grad;
  for (auto& p : module.parameters(/*recurse=*/true))
    if (p.is_floating_point()) p.set_data(p.to(dtype));
  for (auto& b : module.buffers(/*recurse=*/true))
    if (b.is_floating_point()) b.set_data(b.to(dtype));
}

}  // namespace net2net::inn
