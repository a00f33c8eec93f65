#include "net2net/kernels/affine_coupling.h"

#include "net2net/kernels/cpu/kernels.h"
#ifdef NET2NET_TORCH_CUDA
#include "net2net/kernels/cuda/ops.h"
#endif

namespace net2net::kernels {
using torch::Tensor;
using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

namespace {
// The kernels for these tensors: same 2-D shape, then as kernels/dispatch.h decides.
KernelPath path_of(const Tensor& a, const Tensor& b, const Tensor& c) {
  if (a.dim() != 2 || a.sizes() != b.sizes() || a.sizes() != c.sizes()) return KernelPath::unfused;
  return kernel_path({a, b, c});
}

// a in x's type (bf16 autocast hands the coupling bfloat16 s and t; the coupling stays in x's).
Tensor in_type_of(const Tensor& x, const Tensor& a) { return a.scalar_type() == x.scalar_type() ? a : a.to(x.scalar_type()); }

struct AffineCouplingFn : public torch::autograd::Function<AffineCouplingFn> {
  static variable_list forward(AutogradContext* ctx, Tensor x, Tensor s, Tensor t) {
    x = x.contiguous(), s = s.contiguous(), t = t.contiguous();
    auto y = torch::empty_like(x);
    auto ld = torch::empty({x.size(0)}, x.options());
#ifdef NET2NET_TORCH_CUDA
    if (x.is_cuda()) {
      cuda::coupling_forward(x, s, t, y, ld);
      ctx->save_for_backward({x, s});
      return {y, ld};
    }
#endif
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
#ifdef NET2NET_TORCH_CUDA
    if (x.is_cuda()) {
      cuda::coupling_backward(x, s, gy, gld, gx, gs);
      return {gx, gs, gy};
    }
#endif
    AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "affine_coupling_backward", [&] {
      cpu::table<scalar_t>().coupling_backward(x.data_ptr<scalar_t>(), s.data_ptr<scalar_t>(), gy.data_ptr<scalar_t>(),
                                               gld.defined() ? gld.data_ptr<scalar_t>() : nullptr, gx.data_ptr<scalar_t>(),
                                               gs.data_ptr<scalar_t>(), x.size(0), x.size(1));
    });
    return {gx, gs, gy};
  }
};
}  // namespace

std::pair<Tensor, Tensor> affine_coupling_unfused(const Tensor& x, const Tensor& s, const Tensor& t) {
  return {x * torch::exp(s) + t, s.sum(1)};
}

std::pair<Tensor, Tensor> affine_coupling(const Tensor& x, const Tensor& s_in, const Tensor& t_in) {
  const Tensor s = in_type_of(x, s_in), t = in_type_of(x, t_in);
  if (path_of(x, s, t) == KernelPath::unfused) return affine_coupling_unfused(x, s, t);
  auto out = AffineCouplingFn::apply(x, s, t);
  return {out[0], out[1]};
}

Tensor affine_coupling_inverse(const Tensor& y, const Tensor& s_in, const Tensor& t_in) {
  const Tensor s = in_type_of(y, s_in), t = in_type_of(y, t_in);
  const bool needs_grad = torch::GradMode::is_enabled() && (y.requires_grad() || s.requires_grad() || t.requires_grad());
  const KernelPath path = path_of(y, s, t);
  if (needs_grad || path == KernelPath::unfused) return (y - t) * torch::exp(-s);
  auto yc = y.contiguous(), sc = s.contiguous(), tc = t.contiguous();
  auto x = torch::empty_like(yc);
#ifdef NET2NET_TORCH_CUDA
  if (path == KernelPath::cuda) {
    cuda::coupling_inverse(yc, sc, tc, x);
    return x;
  }
#endif
  AT_DISPATCH_FLOATING_TYPES(y.scalar_type(), "affine_coupling_inverse", [&] {
    cpu::table<scalar_t>().coupling_inverse(yc.data_ptr<scalar_t>(), sc.data_ptr<scalar_t>(), tc.data_ptr<scalar_t>(),
                                            x.data_ptr<scalar_t>(), y.size(0), y.size(1));
  });
  return x;
}

}  // namespace net2net::kernels
