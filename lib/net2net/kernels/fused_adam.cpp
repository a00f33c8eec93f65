#include "net2net/kernels/fused_adam.h"

#include <ATen/Parallel.h>
#include <ATen/cpu/vec/vec.h>

#include <cmath>

namespace net2net::kernels {
using torch::Tensor;

namespace {
// Torch's order of operations, element by element:
//   g += wd p; m = m b1 + (1 - b1) g; v = v b2 + (1 - b2) g^2; vmax = max(vmax, v);
//   p -= (lr / bc1) m / (sqrt(vmax) / sqrt(bc2) + eps)
template <typename T>
void adam_cpu(T* p, const T* g, T* m, T* v, T* vmax, int64_t n, double b1, double b2, double eps, double wd,
              double step_size, double sqrt_bc2) {
  using Vec = at::vec::Vectorized<T>;
  const T b1t = b1, b2t = b2, one_b1 = 1 - b1, one_b2 = 1 - b2, epst = eps, wdt = wd, ss = step_size, sb = sqrt_bc2;
  at::parallel_for(0, n, 32768, [&](int64_t begin, int64_t end) {
    int64_t i = begin;
    const Vec vb1(b1t), vb2(b2t), v1b1(one_b1), v1b2(one_b2), veps(epst), vwd(wdt), vss(ss), vsb(sb);
    for (; i + Vec::size() <= end; i += Vec::size()) {
      Vec gi = Vec::loadu(g + i);
      if (wd != 0) gi = gi + Vec::loadu(p + i) * vwd;
      Vec mi = Vec::loadu(m + i) * vb1 + gi * v1b1;
      Vec vi = Vec::loadu(v + i) * vb2 + gi * gi * v1b2;
      mi.store(m + i);
      vi.store(v + i);
      Vec d = vi;
      if (vmax) {
        d = at::vec::maximum(Vec::loadu(vmax + i), vi);
        d.store(vmax + i);
      }
      Vec denom = d.sqrt() / vsb + veps;
      (Vec::loadu(p + i) - vss * mi / denom).store(p + i);
    }
    for (; i < end; ++i) {
      T gi = g[i];
      if (wd != 0) gi = gi + p[i] * wdt;
      m[i] = m[i] * b1t + gi * one_b1;
      v[i] = v[i] * b2t + gi * gi * one_b2;
      T d = v[i];
      if (vmax) d = vmax[i] = std::max(vmax[i], v[i]);
      p[i] = p[i] - ss * m[i] / (std::sqrt(d) / sb + epst);
    }
  });
}
}  // namespace

Tensor FusedAdam::step(LossClosure closure) {
  torch::NoGradGuard no_grad;
  Tensor loss;
  if (closure) {
    at::AutoGradMode enable(true);
    loss = closure();
  }
  for (auto& group : param_groups_) {
    auto& o = static_cast<torch::optim::AdamOptions&>(group.options());
    for (auto& p : group.params()) {
      if (!p.grad().defined()) continue;
      const Tensor& grad = p.grad();
      const bool fusable = p.device().is_cpu() && p.is_contiguous() && grad.is_contiguous() && !grad.is_sparse() &&
                           grad.scalar_type() == p.scalar_type() &&
                           (p.scalar_type() == torch::kFloat32 || p.scalar_type() == torch::kFloat64);
      auto key = c10::guts::to_string(p.unsafeGetTensorImpl());
      if (state_.find(key) == state_.end()) {
        auto st = std::make_unique<torch::optim::AdamParamState>();
        st->step(0);
        st->exp_avg(torch::zeros_like(p, at::MemoryFormat::Preserve));
        st->exp_avg_sq(torch::zeros_like(p, at::MemoryFormat::Preserve));
        if (o.amsgrad()) st->max_exp_avg_sq(torch::zeros_like(p, at::MemoryFormat::Preserve));
        state_[key] = std::move(st);
      }
      auto& st = static_cast<torch::optim::AdamParamState&>(*state_[key]);
      st.step(st.step() + 1);
      const double b1 = std::get<0>(o.betas()), b2 = std::get<1>(o.betas());
      const double bc1 = 1 - std::pow(b1, st.step()), bc2 = 1 - std::pow(b2, st.step());
      const double step_size = o.lr() / bc1;
      if (fusable && st.exp_avg().is_contiguous() && st.exp_avg_sq().is_contiguous()) {
        AT_DISPATCH_FLOATING_TYPES(p.scalar_type(), "fused_adam", [&] {
          adam_cpu<scalar_t>(p.data_ptr<scalar_t>(), grad.data_ptr<scalar_t>(), st.exp_avg().data_ptr<scalar_t>(),
                             st.exp_avg_sq().data_ptr<scalar_t>(),
                             o.amsgrad() ? st.max_exp_avg_sq().data_ptr<scalar_t>() : nullptr, p.numel(), b1, b2, o.eps(),
                             o.weight_decay(), step_size, std::sqrt(bc2));
        });
        continue;
      }
      // Other devices and layouts: torch's own sequence of ops.
      Tensor g = o.weight_decay() != 0 ? grad.add(p, o.weight_decay()) : grad;
      st.exp_avg().mul_(b1).add_(g, 1 - b1);
      st.exp_avg_sq().mul_(b2).addcmul_(g, g, 1 - b2);
      Tensor denom;
      if (o.amsgrad()) {
        torch::max_out(st.max_exp_avg_sq(), st.exp_avg_sq(), st.max_exp_avg_sq());
        denom = (st.max_exp_avg_sq().sqrt() / std::sqrt(bc2)).add_(o.eps());
      } else {
        denom = (st.exp_avg_sq().sqrt() / std::sqrt(bc2)).add_(o.eps());
      }
      p.addcdiv_(st.exp_avg(), denom, -step_size);
    }
  }
  return loss;
}

}  // namespace net2net::kernels
