#include "net2net/kernels/norm_activation.h"

#include <cmath>

#include "net2net/kernels/cpu/kernels.h"
#include "net2net/kernels/dispatch.h"
#ifdef NET2NET_TORCH_CUDA
#include "net2net/kernels/cuda/ops.h"
#endif

namespace net2net::kernels {
using torch::Tensor;
using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

namespace {
struct NormLeakyReluFn : public torch::autograd::Function<NormLeakyReluFn> {
  static variable_list forward(AutogradContext* ctx, Tensor x, Tensor loc, Tensor scale, double alpha) {
    x = x.contiguous(), loc = loc.contiguous(), scale = scale.contiguous();
    const int64_t n = x.size(0), d = x.size(1);
    auto y = torch::empty_like(x);
    auto negatives = torch::empty({n}, x.options());
#ifdef NET2NET_TORCH_CUDA
    if (x.is_cuda()) cuda::norm_act_forward(x, loc, scale, alpha, y, negatives);
    else
#endif
    AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "norm_act_forward", [&] {
      cpu::table<scalar_t>().norm_act_forward(x.data_ptr<scalar_t>(), loc.data_ptr<scalar_t>(), scale.data_ptr<scalar_t>(),
                                              static_cast<scalar_t>(alpha), y.data_ptr<scalar_t>(),
                                              negatives.data_ptr<scalar_t>(), n, d);
    });
    ctx->save_for_backward({x, loc, scale});
    ctx->saved_data["alpha"] = alpha;
    // The same ops as ActNorm and InvLeakyRelu for the log-det (exact same values).
    auto logdet = torch::log(torch::abs(scale)).sum() + negatives * std::log(alpha);
    return {y, logdet};
  }
  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    auto saved = ctx->get_saved_variables();
    const Tensor &x = saved[0], &loc = saved[1], &scale = saved[2];
    const double alpha = ctx->saved_data["alpha"].toDouble();
    const Tensor gy = grads[0].contiguous();
    auto gx = torch::empty_like(x), g_loc = torch::empty_like(loc), g_scale = torch::empty_like(scale);
#ifdef NET2NET_TORCH_CUDA
    if (x.is_cuda()) cuda::norm_act_backward(x, loc, scale, alpha, gy, gx, g_loc, g_scale);
    else
#endif
    AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "norm_act_backward", [&] {
      cpu::table<scalar_t>().norm_act_backward(x.data_ptr<scalar_t>(), loc.data_ptr<scalar_t>(), scale.data_ptr<scalar_t>(),
                                               static_cast<scalar_t>(alpha), gy.data_ptr<scalar_t>(),
                                               gx.data_ptr<scalar_t>(), g_loc.data_ptr<scalar_t>(),
                                               g_scale.data_ptr<scalar_t>(), x.size(0), x.size(1));
    });
    // d/dscale of sum_r (sum_j log|scale_j|) gld[r] = (sum_r gld[r]) / scale.
    g_scale.add_(grads[1].sum() / scale);
    return {gx, g_loc, g_scale, Tensor()};
  }
};
}  // namespace

bool norm_leaky_relu_fusable(const Tensor& x, const Tensor& loc, const Tensor& scale) {
  return kernel_path({x, loc, scale}) != KernelPath::unfused && x.dim() == 2 && loc.dim() == 1 && scale.dim() == 1 &&
         loc.size(0) == x.size(1) && scale.size(0) == x.size(1);
}

std::pair<Tensor, Tensor> norm_leaky_relu(const Tensor& x, const Tensor& loc, const Tensor& scale, double alpha) {
  TORCH_CHECK(norm_leaky_relu_fusable(x, loc, scale), "norm_leaky_relu: unsupported tensors");
  auto out = NormLeakyReluFn::apply(x, loc, scale, alpha);
  return {out[0], out[1]};
}

Tensor norm_leaky_relu_inverse(const Tensor& y, const Tensor& loc, const Tensor& scale, double alpha) {
  TORCH_CHECK(norm_leaky_relu_fusable(y, loc, scale), "norm_leaky_relu_inverse: unsupported tensors");
  const bool needs_grad =
      torch::GradMode::is_enabled() && (y.requires_grad() || loc.requires_grad() || scale.requires_grad());
  if (needs_grad) return torch::where(y < 0, y / alpha, y) / scale - loc;
  const Tensor yc = y.contiguous(), lc = loc.contiguous(), sc = scale.contiguous();
  auto x = torch::empty_like(yc);
#ifdef NET2NET_TORCH_CUDA
  if (yc.is_cuda()) {
    cuda::norm_act_inverse(yc, lc, sc, alpha, x);
    return x;
  }
#endif
  AT_DISPATCH_FLOATING_TYPES(y.scalar_type(), "norm_act_inverse", [&] {
    cpu::table<scalar_t>().norm_act_inverse(yc.data_ptr<scalar_t>(), lc.data_ptr<scalar_t>(), sc.data_ptr<scalar_t>(),
                                            static_cast<scalar_t>(alpha), x.data_ptr<scalar_t>(), y.size(0), y.size(1));
  });
  return x;
}

}  // namespace net2net::kernels
