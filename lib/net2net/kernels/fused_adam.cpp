#include "net2net/kernels/fused_adam.h"

#include "net2net/kernels/cpu/kernels.h"

#include <cmath>

namespace net2net::kernels {
using torch::Tensor;

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
          cpu::table<scalar_t>().adam(p.data_ptr<scalar_t>(), grad.data_ptr<scalar_t>(), st.exp_avg().data_ptr<scalar_t>(),
                                      st.exp_avg_sq().data_ptr<scalar_t>(),
                                      o.amsgrad() ? st.max_exp_avg_sq().data_ptr<scalar_t>() : nullptr, p.numel(), b1,
                                      b2, o.eps(), o.weight_decay(), step_size, std::sqrt(bc2));
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

void FusedAdam::clear_grads() {
  for (auto& group : param_groups_)
    for (auto& p : group.params()) p.mutable_grad().reset();
}

}  // namespace net2net::kernels
