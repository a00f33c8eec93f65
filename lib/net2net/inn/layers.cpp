#include "net2net/inn/layers.h"

#include <array>
#include <cmath>
#include <map>
#include <random>
#include <type_traits>

#include "net2net/kernels/affine_coupling.h"
#include "net2net/kernels/batched_linear.h"

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
  auto& p = params_;
  p.w_in = register_parameter("w_in", torch::cat({ls.front()->weight, lt.front()->weight}, 0));
  p.b_in = register_parameter("b_in", torch::cat({ls.front()->bias, lt.front()->bias}, 0));
  for (size_t k = 1; k + 1 < ls.size(); ++k) {
    p.w_hidden.push_back(register_parameter("w_hidden" + std::to_string(k),
                                            torch::stack({ls[k]->weight.t(), lt[k]->weight.t()}).contiguous()));
    p.b_hidden.push_back(register_parameter("b_hidden" + std::to_string(k), torch::stack({ls[k]->bias, lt[k]->bias})));
  }
  p.w_out = register_parameter("w_out", torch::stack({ls.back()->weight.t(), lt.back()->weight.t()}).contiguous());
  p.b_out = register_parameter("b_out", torch::stack({ls.back()->bias, lt.back()->bias}));
}

std::pair<Tensor, Tensor> SubnetPairImpl::forward(const Tensor& x) {
  if (fusable(x)) return kernels::subnet_pair(x, params_);
  const auto& p = params_;
  const int64_t n = x.size(0), hidden = p.hidden();
  auto h = torch::leaky_relu(kernels::linear(x, p.w_in, p.b_in), 0.01);  // [N, 2H]
  auto pair = h.view({n, 2, hidden}).transpose(0, 1);                     // [2, N, H], a view
  for (size_t k = 0; k < p.w_hidden.size(); ++k)
    pair = torch::leaky_relu(kernels::batched_linear(pair, p.w_hidden[k], p.b_hidden[k]), 0.01);
  auto out = kernels::batched_linear(pair, p.w_out, p.b_out);  // [2, N, out]
  return {torch::tanh(out.select(0, 0)), out.select(0, 1)};
}

std::vector<std::pair<std::string, Tensor>> SubnetPairImpl::unbatched(const std::string& s_name,
                                                                      const std::string& t_name) const {
  std::vector<std::pair<std::string, Tensor>> out;
  const auto& p = params_;
  const int64_t hidden = p.hidden();
  const size_t last = p.w_hidden.size() + 1;
  for (int64_t j = 0; j < 2; ++j) {
    const std::string& prefix = j == 0 ? s_name : t_name;
    auto name = [&](size_t k, const char* what) { return prefix + ".linear" + std::to_string(k) + "." + what; };
    out.emplace_back(name(0, "weight"), p.w_in.narrow(0, j * hidden, hidden));
    out.emplace_back(name(0, "bias"), p.b_in.narrow(0, j * hidden, hidden));
    for (size_t k = 0; k < p.w_hidden.size(); ++k) {
      out.emplace_back(name(k + 1, "weight"), p.w_hidden[k].select(0, j).t());
      out.emplace_back(name(k + 1, "bias"), p.b_hidden[k].select(0, j));
    }
    out.emplace_back(name(last, "weight"), p.w_out.select(0, j).t());
    out.emplace_back(name(last, "bias"), p.b_out.select(0, j));
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
void DoubleCouplingImpl::save(torch::serialize::OutputArchive& archive, bool copy) const {
  // Archives by pointer: their copy constructor takes a non-const reference, which clang refuses
  // inside std::pair.
  using Archive = std::unique_ptr<torch::serialize::OutputArchive>;
  std::map<std::string, std::map<std::string, Archive>> tree;
  std::vector<std::string> order;
  for (const auto& [name, value] : unbatched_parameters()) {
    auto [subnet, layer, leaf] = split_weight_name(name);
    if (!tree.count(subnet)) order.push_back(subnet);
    auto& layers = tree[subnet];
    auto it = layers.find(layer);
    if (it == layers.end())
      it = layers.emplace(layer, std::make_unique<torch::serialize::OutputArchive>(archive.compilation_unit())).first;
    it->second->write(leaf, copy ? value.detach().to(torch::kCPU, value.scalar_type(), false, /*copy=*/true)
                                 : value.contiguous());
  }
  for (const auto& subnet : order) {
    torch::serialize::OutputArchive sub(archive.compilation_unit());
    for (auto& [layer, a] : tree[subnet]) sub.write(layer, *a);
    archive.write(subnet, sub);
  }
}

void DoubleCouplingImpl::load(torch::serialize::InputArchive& archive) {
  torch::NoGradGuard no_grad;
  std::map<std::string, std::unique_ptr<torch::serialize::InputArchive>> subnets, layers;  // each read once
  for (const auto& [name, target] : unbatched_parameters()) {
    auto [subnet, layer, leaf] = split_weight_name(name);
    auto sub = subnets.find(subnet);
    if (sub == subnets.end()) {
      sub = subnets.emplace(subnet, std::make_unique<torch::serialize::InputArchive>()).first;
      archive.read(subnet, *sub->second);
    }
    auto lay = layers.find(subnet + "." + layer);
    if (lay == layers.end()) {
      lay = layers.emplace(subnet + "." + layer, std::make_unique<torch::serialize::InputArchive>()).first;
      sub->second->read(layer, *lay->second);
    }
    Tensor value;
    lay->second->read(leaf, value);
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
