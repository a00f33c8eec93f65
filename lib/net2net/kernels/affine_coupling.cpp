#include "net2net/kernels/affine_coupling.h"

#include "net2net/kernels/cpu/kernels.h"

#include <atomic>
#include <cmath>
#include <cstdlib>
#include <string>

namespace net2net::kernels {
using torch::Tensor;
using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

// NET2NET_UNFUSED=0 used to turn the kernels off as well (any value did).
bool fused_for_environment_value(const char* value) {
  return value == nullptr || std::string(value).empty() || std::string(value) == "0";
}

namespace {
std::atomic<bool> g_fused{fused_for_environment_value(std::getenv("NET2NET_UNFUSED"))};

bool fusable(const Tensor& a, const Tensor& b, const Tensor& c) {
  return fused_cpu({a, b, c}) && a.dim() == 2 && a.sizes() == b.sizes() && a.sizes() == c.sizes();
}

struct AffineCouplingFn : public torch::autograd::Function<AffineCouplingFn> {
  static variable_list forward(AutogradContext* ctx, Tensor x, Tensor s, Tensor t) {
    x = x.contiguous(), s = s.contiguous(), t = t.contiguous();
    auto y = torch::empty_like(x);
    auto ld = torch::empty({x.size(0)}, x.options());
    AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "affine_coupling_forward", [&] {
      cpu::table<scalar_t>().coupling_forward(x.data_ptr<scalar_t>(), s.data_ptr<scalar_t>(), t.data_ptr<scalar_t>(),
                                              y.data_ptr<scalar_t>(), ld.data_ptr<scalar_t>(), x.size(0), x.size(1));
    });
    ctx->save_for_backward({x, s});
    return {y, ld};
  }
  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    auto saved = ctx->get_saved_variables();
    const Tensor &x = saved[0], &s = saved[1];
    Tensor gy = grads[0].defined() ? grads[0].contiguous() : torch::zeros_like(x);
    Tensor gld = grads[1].defined() ? grads[1].contiguous() : Tensor();
    auto gx = torch::empty_like(x), gs = torch::empty_like(s);
    AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "affine_coupling_backward", [&] {
      cpu::table<scalar_t>().coupling_backward(x.data_ptr<scalar_t>(), s.data_ptr<scalar_t>(), gy.data_ptr<scalar_t>(),
                                               gld.defined() ? gld.data_ptr<scalar_t>() : nullptr, gx.data_ptr<scalar_t>(),
                                               gs.data_ptr<scalar_t>(), x.size(0), x.size(1));
    });
    return {gx, gs, gy};
  }
};
}  // namespace

void set_fused(bool on) { g_fused = on; }
bool fused() { return g_fused.load(); }

bool fused_cpu(at::TensorList tensors) {
  if (!fused() || tensors.empty()) return false;
  const auto type = tensors[0].scalar_type();
  if (type != torch::kFloat32 && type != torch::kFloat64) return false;
  for (const auto& t : tensors)
    if (!t.device().is_cpu() || t.scalar_type() != type) return false;
  return true;
}

int cpu_vector_width(at::ScalarType type) {
  return type == torch::kFloat32 ? cpu::table<float>().vector_width : cpu::table<double>().vector_width;
}

std::pair<Tensor, Tensor> affine_coupling_unfused(const Tensor& x, const Tensor& s, const Tensor& t) {
  return {x * torch::exp(s) + t, s.sum(1)};
}

std::pair<Tensor, Tensor> affine_coupling(const Tensor& x, const Tensor& s, const Tensor& t) {
  if (!fusable(x, s, t)) return affine_coupling_unfused(x, s, t);
  auto out = AffineCouplingFn::apply(x, s, t);
  return {out[0], out[1]};
}

Tensor affine_coupling_inverse(const Tensor& y, const Tensor& s, const Tensor& t) {
  const bool needs_grad = torch::GradMode::is_enabled() && (y.requires_grad() || s.requires_grad() || t.requires_grad());
  if (needs_grad || !fusable(y, s, t)) return (y - t) * torch::exp(-s);
  auto yc = y.contiguous(), sc = s.contiguous(), tc = t.contiguous();
  auto x = torch::empty_like(yc);
  AT_DISPATCH_FLOATING_TYPES(y.scalar_type(), "affine_coupling_inverse", [&] {
    cpu::table<scalar_t>().coupling_inverse(yc.data_ptr<scalar_t>(), sc.data_ptr<scalar_t>(), tc.data_ptr<scalar_t>(),
                                            x.data_ptr<scalar_t>(), y.size(0), y.size(1));
  });
  return x;
}

}  // namespace net2net::kernels
