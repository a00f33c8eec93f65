#include "net2net/inn/layers.h"

#include <cmath>
#include <random>

#include "net2net/kernels/affine_coupling.h"

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

bool ActNormImpl::initialized() const { return initialized_flag.item<uint8_t>() != 0; }

void ActNormImpl::initialize(const Tensor& x) {
  torch::NoGradGuard no_grad;
  auto mean = x.mean(0);
  // Unbiased std as the reference (torch.std); a batch of one item keeps the scale at 1.
  auto std = x.size(0) > 1 ? x.std(0, /*unbiased=*/true) : torch::ones_like(mean);
  loc.copy_(-mean);
  scale.copy_(1.0 / (std + 1e-6));
  initialized_flag.fill_(1);
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

// ---------------------------------------------------------------- double coupling
DoubleCouplingImpl::DoubleCouplingImpl(int64_t dim, int64_t cond_dim, int64_t hidden_dim, int64_t hidden_depth)
    : a_((dim + 1) / 2), b_(dim / 2) {
  TORCH_CHECK(dim >= 2, "DoubleCoupling: needs at least 2 dimensions, got ", dim);
  s0_ = register_module("s0", Mlp(a_ + cond_dim, hidden_dim, hidden_depth, b_, /*tanh_out=*/true));
  t0_ = register_module("t0", Mlp(a_ + cond_dim, hidden_dim, hidden_depth, b_, /*tanh_out=*/false));
  s1_ = register_module("s1", Mlp(b_ + cond_dim, hidden_dim, hidden_depth, a_, /*tanh_out=*/true));
  t1_ = register_module("t1", Mlp(b_ + cond_dim, hidden_dim, hidden_depth, a_, /*tanh_out=*/false));
}

LayerOutput DoubleCouplingImpl::forward(const Tensor& x, const Tensor& cond) {
  check_2d(x, a_ + b_, "DoubleCoupling");
  auto x1 = x.narrow(1, 0, a_);
  auto x2 = x.narrow(1, a_, b_);
  // Each affine step (y = x exp(s) + t, log-det sum s) is one fused kernel (kernels/).
  auto h0 = torch::cat({x1, cond}, 1);
  auto [x2n, ld0] = kernels::affine_coupling(x2, s0_->forward(h0), t0_->forward(h0));
  auto h1 = torch::cat({x2n, cond}, 1);
  auto [x1n, ld1] = kernels::affine_coupling(x1, s1_->forward(h1), t1_->forward(h1));
  return {torch::cat({x2n, x1n}, 1), ld0 + ld1};
}

Tensor DoubleCouplingImpl::inverse(const Tensor& y, const Tensor& cond) {
  check_2d(y, a_ + b_, "DoubleCoupling");
  auto x2n = y.narrow(1, 0, b_);
  auto x1n = y.narrow(1, b_, a_);
  auto h1 = torch::cat({x2n, cond}, 1);
  auto x1 = kernels::affine_coupling_inverse(x1n, s1_->forward(h1), t1_->forward(h1));
  auto h0 = torch::cat({x1, cond}, 1);
  auto x2 = kernels::affine_coupling_inverse(x2n, s0_->forward(h0), t0_->forward(h0));
  return torch::cat({x1, x2}, 1);
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
