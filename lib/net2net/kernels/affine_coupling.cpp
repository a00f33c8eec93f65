#include "net2net/kernels/affine_coupling.h"

#include "net2net/kernels/cpu/kernels.h"

#include <atomic>
#include <cmath>
#include <cstdlib>

namespace net2net::kernels {
using torch::Tensor;
using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

namespace {
std::atomic<bool> g_fused{std::getenv("NET2NET_UNFUSED") == nullptr};

bool fusable(const Tensor& a, const Tensor& b, const Tensor& c) {
  return g_fused.load() && a.device().is_cpu() && b.device().is_cpu() && c.device().is_cpu() && a.dim() == 2 &&
         a.sizes() == b.sizes() && a.sizes() == c.sizes() && a.scalar_type() == b.scalar_type() &&
         a.scalar_type() == c.scalar_type() && (a.scalar_type() == torch::kFloat32 || a.scalar_type() == torch::kFloat64);
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
