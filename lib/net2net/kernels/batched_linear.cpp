#include "net2net/kernels/batched_linear.h"

#include "net2net/kernels/affine_coupling.h"
#include "net2net/kernels/cpu/kernels.h"

namespace net2net::kernels {
using torch::Tensor;
using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

namespace {
// The kernel reduces over `out`: short or ragged reductions cost it more than BLAS (net2net-bench
// gemm-nt, 16 rows, 2 threads: in x out 1024 x 1024 123 vs 55 GFLOP/s, 128 x 128 66 vs 48, but
// 1024 x 134 56 vs 95 and 128 x 32 26 vs 30).
bool use_kernel(const Tensor& x, const Tensor& w, const Tensor& b) {
  const auto type = x.scalar_type();
  return fused() && torch::GradMode::is_enabled() && x.device().is_cpu() && w.device().is_cpu() && b.device().is_cpu() &&
         x.dim() == 3 && w.dim() == 3 && b.dim() == 2 && x.size(1) <= kShortBatchRows && w.size(2) >= 128 &&
         w.size(2) % 16 == 0 && w.scalar_type() == type &&
         b.scalar_type() == type && (type == torch::kFloat32 || type == torch::kFloat64);
}

struct BatchedLinearFn : public torch::autograd::Function<BatchedLinearFn> {
  static Tensor forward(AutogradContext* ctx, Tensor x, Tensor w, Tensor b) {
    ctx->save_for_backward({x, w});
    return torch::baddbmm(b.unsqueeze(1), x, w);
  }
  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    auto saved = ctx->get_saved_variables();
    const Tensor &x = saved[0], &w = saved[1];
    const Tensor g = grads[0].contiguous();  // [J, N, out]
    Tensor gx, gw, gb;
    if (ctx->needs_input_grad(0)) {
      const Tensor wc = w.contiguous();  // [J, in, out]: rows of W^T's columns, read along out
      const int64_t batch = g.size(0), n = g.size(1), in = wc.size(1), out = wc.size(2);
      gx = torch::empty({batch, n, in}, g.options());
      AT_DISPATCH_FLOATING_TYPES(g.scalar_type(), "batched_linear_backward", [&] {
        const auto& k = cpu::table<scalar_t>();
        for (int64_t j = 0; j < batch; ++j)
          k.matmul_nt(g.data_ptr<scalar_t>() + j * n * out, wc.data_ptr<scalar_t>() + j * in * out,
                      gx.data_ptr<scalar_t>() + j * n * in, n, in, out);
      });
    }
    if (ctx->needs_input_grad(1)) gw = torch::bmm(x.transpose(1, 2), g);
    if (ctx->needs_input_grad(2)) gb = g.sum(1);
    return {gx, gw, gb};
  }
};
}  // namespace

Tensor batched_linear(const Tensor& x, const Tensor& w, const Tensor& b) {
  if (!use_kernel(x, w, b)) return torch::baddbmm(b.unsqueeze(1), x, w);
  return BatchedLinearFn::apply(x, w, b);
}

}  // namespace net2net::kernels
