#include "net2net/kernels/affine_coupling.h"

#include <ATen/Parallel.h>
#include <ATen/cpu/vec/vec.h>

#include <atomic>
#include <cmath>
#include <cstdlib>

namespace net2net::kernels {
using torch::Tensor;
using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

namespace {
std::atomic<bool> g_fused{std::getenv("NET2NET_UNFUSED") == nullptr};

template <typename T>
void forward_cpu(const T* x, const T* s, const T* t, T* y, T* ld, int64_t n, int64_t d) {
  using Vec = at::vec::Vectorized<T>;
  at::parallel_for(0, n, std::max<int64_t>(1, 16384 / std::max<int64_t>(d, 1)), [&](int64_t begin, int64_t end) {
    for (int64_t r = begin; r < end; ++r) {
      const T *xr = x + r * d, *sr = s + r * d, *tr = t + r * d;
      T* yr = y + r * d;
      Vec acc(T(0));
      int64_t j = 0;
      for (; j + Vec::size() <= d; j += Vec::size()) {
        Vec sv = Vec::loadu(sr + j);
        (Vec::loadu(xr + j) * sv.exp() + Vec::loadu(tr + j)).store(yr + j);
        acc = acc + sv;
      }
      T lanes[Vec::size()];
      acc.store(lanes);
      T sum = 0;
      for (int k = 0; k < Vec::size(); ++k) sum += lanes[k];
      for (; j < d; ++j) {
        yr[j] = xr[j] * std::exp(sr[j]) + tr[j];
        sum += sr[j];
      }
      ld[r] = sum;
    }
  });
}

// gx = gy * exp(s); gs = gy * x * exp(s) + gld (per row).
template <typename T>
void backward_cpu(const T* x, const T* s, const T* gy, const T* gld, T* gx, T* gs, int64_t n, int64_t d) {
  using Vec = at::vec::Vectorized<T>;
  at::parallel_for(0, n, std::max<int64_t>(1, 16384 / std::max<int64_t>(d, 1)), [&](int64_t begin, int64_t end) {
    for (int64_t r = begin; r < end; ++r) {
      const T *xr = x + r * d, *sr = s + r * d, *gyr = gy + r * d;
      T *gxr = gx + r * d, *gsr = gs + r * d;
      const T g = gld ? gld[r] : T(0);
      const Vec gv(g);
      int64_t j = 0;
      for (; j + Vec::size() <= d; j += Vec::size()) {
        Vec e = Vec::loadu(sr + j).exp(), gyv = Vec::loadu(gyr + j);
        Vec gxv = gyv * e;
        gxv.store(gxr + j);
        (gxv * Vec::loadu(xr + j) + gv).store(gsr + j);
      }
      for (; j < d; ++j) {
        T gxv = gyr[j] * std::exp(sr[j]);
        gxr[j] = gxv;
        gsr[j] = gxv * xr[j] + g;
      }
    }
  });
}

template <typename T>
void inverse_cpu(const T* y, const T* s, const T* t, T* x, int64_t n, int64_t d) {
  using Vec = at::vec::Vectorized<T>;
  at::parallel_for(0, n, std::max<int64_t>(1, 16384 / std::max<int64_t>(d, 1)), [&](int64_t begin, int64_t end) {
    for (int64_t r = begin; r < end; ++r) {
      const T *yr = y + r * d, *sr = s + r * d, *tr = t + r * d;
      T* xr = x + r * d;
      int64_t j = 0;
      for (; j + Vec::size() <= d; j += Vec::size())
        ((Vec::loadu(yr + j) - Vec::loadu(tr + j)) * Vec::loadu(sr + j).neg().exp()).store(xr + j);
      for (; j < d; ++j) xr[j] = (yr[j] - tr[j]) * std::exp(-sr[j]);
    }
  });
}

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
      forward_cpu<scalar_t>(x.data_ptr<scalar_t>(), s.data_ptr<scalar_t>(), t.data_ptr<scalar_t>(), y.data_ptr<scalar_t>(),
                            ld.data_ptr<scalar_t>(), x.size(0), x.size(1));
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
      backward_cpu<scalar_t>(x.data_ptr<scalar_t>(), s.data_ptr<scalar_t>(), gy.data_ptr<scalar_t>(),
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
    inverse_cpu<scalar_t>(yc.data_ptr<scalar_t>(), sc.data_ptr<scalar_t>(), tc.data_ptr<scalar_t>(), x.data_ptr<scalar_t>(),
                          y.size(0), y.size(1));
  });
  return x;
}

}  // namespace net2net::kernels
