#include "net2net/kernels/batched_linear.h"

#include "net2net/kernels/dispatch.h"
#include "net2net/kernels/cpu/kernels.h"
#include "net2net/kernels/fused_adam.h"

namespace net2net::kernels {
using torch::Tensor;
using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

namespace {
// Which of the three GEMMs our kernels take, from `net2net-bench gemm` (16 rows, 2 threads, W in
// cache; GFLOP/s ours vs torch, two runs on a noisy machine; W [in, out]):
//   forward b + x W (nn):   1024 x 1024 91-98 vs 75-95, 1024 x 134 64-94 vs 56-74, but
//                           128 x 128 44-62 vs 69 and 128 x 32 34 vs 37
//   input grad g W^T (nt):  1024 x 1024 96-119 vs 45-55, 128 x 128 66-71 vs 47-57, but
//                           1024 x 134 44-56 vs 74-82 and 128 x 32 23 vs 29-41 (it reduces over
//                           `out`: short or ragged reductions cost it horizontal sums and tails)
//   weight grad x^T g (tn): 1024 x 1024 77-103 vs 70-75, 1024 x 134 55-58 vs 46-47, but
//                           128 x 128 40-47 vs 66
// With W streaming from memory, as in a text2biggan step (1 GB of weights), ours lead by more
// (16 x 1024 x 1024: nn 51-69 vs 43-50, nt 72 vs 51, tn 83-101 vs 46-51).
bool kernel_forward(int64_t in, int64_t /*out*/) { return in >= 512; }
bool kernel_input_grad(int64_t /*in*/, int64_t out) { return out >= 128 && out % 16 == 0; }
bool kernel_weight_grad(int64_t in, int64_t /*out*/) { return in >= 512; }

bool use_function(const Tensor& x, const Tensor& w, const Tensor& b) {
  return fused_cpu({x, w, b}) && x.dim() == 3 && w.dim() == 3 && b.dim() == 2 && x.size(1) <= kShortBatchRows;
}

// Fills the weight gradient gw by write(j, squares) for each of its `matrices` matrices (squares:
// null, or where the tn kernel puts matrix j's sum of squares); while a GradientSquares lives,
// gw's sum of squares is recorded for the gradient norm.
template <typename Write>
void write_weight_gradient(const Tensor& gw, int64_t matrices, const Write& write) {
  const bool record = recording_gradient_squares();
  double squares = 0;
  for (int64_t j = 0; j < matrices; ++j) {
    double part = 0;
    write(j, record ? &part : nullptr);
    squares += part;
  }
  if (record) record_gradient_squares(gw, squares);
}

struct BatchedLinearFn : public torch::autograd::Function<BatchedLinearFn> {
  static Tensor forward(AutogradContext* ctx, Tensor x, Tensor w, Tensor b) {
    ctx->save_for_backward({x, w});
    const int64_t batch = x.size(0), n = x.size(1), in = w.size(1), out = w.size(2);
    if (!kernel_forward(in, out)) return torch::baddbmm(b.unsqueeze(1), x, w);
    // x may be a view with strided rows (SubnetPair's transposed [N, 2H]); its columns must be dense.
    const Tensor xs = x.stride(2) == 1 ? x : x.contiguous();
    const Tensor wc = w.contiguous(), bc = b.contiguous();
    Tensor y = torch::empty({batch, n, out}, x.options());
    AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "batched_linear_forward", [&] {
      const auto& k = cpu::table<scalar_t>();
      for (int64_t j = 0; j < batch; ++j)
        k.matmul_nn(xs.data_ptr<scalar_t>() + j * xs.stride(0), xs.stride(1), wc.data_ptr<scalar_t>() + j * in * out,
                    bc.data_ptr<scalar_t>() + j * out, y.data_ptr<scalar_t>() + j * n * out, n, out, in);
    });
    return y;
  }
  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    auto saved = ctx->get_saved_variables();
    const Tensor &x = saved[0], &w = saved[1];
    const Tensor g = grads[0].contiguous();  // [J, N, out]
    const int64_t batch = g.size(0), n = g.size(1), in = w.size(1), out = w.size(2);
    Tensor gx, gw, gb;
    if (ctx->needs_input_grad(0)) {
      if (kernel_input_grad(in, out)) {
        const Tensor wc = w.contiguous();  // [J, in, out]: rows of W^T's columns, read along out
        gx = torch::empty({batch, n, in}, g.options());
        AT_DISPATCH_FLOATING_TYPES(g.scalar_type(), "batched_linear_input_grad", [&] {
          const auto& k = cpu::table<scalar_t>();
          for (int64_t j = 0; j < batch; ++j)
            k.matmul_nt(g.data_ptr<scalar_t>() + j * n * out, wc.data_ptr<scalar_t>() + j * in * out,
                        gx.data_ptr<scalar_t>() + j * n * in, n, in, out);
        });
      } else {
        gx = torch::bmm(g, w.transpose(1, 2));
      }
    }
    if (ctx->needs_input_grad(1)) {
      if (kernel_weight_grad(in, out)) {
        const Tensor xs = x.stride(2) == 1 ? x : x.contiguous();
        gw = torch::empty({batch, in, out}, g.options());
        AT_DISPATCH_FLOATING_TYPES(g.scalar_type(), "batched_linear_weight_grad", [&] {
          const auto& k = cpu::table<scalar_t>();
          write_weight_gradient(gw, batch, [&](int64_t j, double* squares) {
            k.matmul_tn(xs.data_ptr<scalar_t>() + j * xs.stride(0), xs.stride(1), g.data_ptr<scalar_t>() + j * n * out,
                        gw.data_ptr<scalar_t>() + j * in * out, n, out, in, squares);
          });
        });
      } else {
        gw = torch::bmm(x.transpose(1, 2), g);
      }
    }
    if (ctx->needs_input_grad(2)) gb = g.sum(1);
    return {gx, gw, gb};
  }
};
// y = b + x W^T with W in Linear's layout [out, in] (SubnetPair's first layer, 402 -> 2048 on
// text2biggan): the forward is the nt kernel (rows of x against rows of W), the input gradient
// g W the nn kernel, the weight gradient g^T x the tn kernel. net2net-bench gemm, 16 rows, W
// 2048 x 402 in cache: nt 91-103 vs 83-97 GFLOP/s, nn 74-104 vs 69-99, tn 83-85 vs 89-91 (its
// 402-wide rows are ragged); with W streaming from memory (--stream, as in a step), where it
// counts: nt 46-54 vs 42-51, tn 58 vs 44 (the gradient is written around the cache).
struct LinearFn : public torch::autograd::Function<LinearFn> {
  static Tensor forward(AutogradContext* ctx, Tensor x, Tensor w, Tensor b) {
    const Tensor xc = x.contiguous(), wc = w.contiguous();
    ctx->save_for_backward({xc, wc});
    const int64_t n = xc.size(0), in = wc.size(1), out = wc.size(0);
    Tensor y = torch::empty({n, out}, x.options());
    AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "linear_forward", [&] {
      cpu::table<scalar_t>().matmul_nt(xc.data_ptr<scalar_t>(), wc.data_ptr<scalar_t>(), y.data_ptr<scalar_t>(), n, out, in);
    });
    return y.add_(b);
  }
  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    auto saved = ctx->get_saved_variables();
    const Tensor &x = saved[0], &w = saved[1];
    const Tensor g = grads[0].contiguous();  // [N, out]
    const int64_t n = g.size(0), in = w.size(1), out = w.size(0);
    Tensor gx, gw, gb;
    if (ctx->needs_input_grad(0)) {
      gx = torch::empty({n, in}, g.options());
      AT_DISPATCH_FLOATING_TYPES(g.scalar_type(), "linear_input_grad", [&] {
        cpu::table<scalar_t>().matmul_nn(g.data_ptr<scalar_t>(), out, w.data_ptr<scalar_t>(), nullptr,
                                         gx.data_ptr<scalar_t>(), n, in, out);
      });
    }
    if (ctx->needs_input_grad(1)) {
      gw = torch::empty({out, in}, g.options());
      AT_DISPATCH_FLOATING_TYPES(g.scalar_type(), "linear_weight_grad", [&] {
        write_weight_gradient(gw, 1, [&](int64_t, double* squares) {
          cpu::table<scalar_t>().matmul_tn(g.data_ptr<scalar_t>(), out, x.data_ptr<scalar_t>(), gw.data_ptr<scalar_t>(), n,
                                           in, out, squares);
        });
      });
    }
    if (ctx->needs_input_grad(2)) gb = g.sum(0);
    return {gx, gw, gb};
  }
};

bool use_linear_function(const Tensor& x, const Tensor& w, const Tensor& b) {
  return fused_cpu({x, w, b}) && x.dim() == 2 && w.dim() == 2 && b.dim() == 1 && x.size(0) <= kShortBatchRows &&
         w.size(0) >= 512 && w.size(1) >= 128;
}
}  // namespace

Tensor batched_linear(const Tensor& x, const Tensor& w, const Tensor& b) {
  if (!use_function(x, w, b)) return torch::baddbmm(b.unsqueeze(1), x, w);
  return BatchedLinearFn::apply(x, w, b);
}

Tensor linear(const Tensor& x, const Tensor& w, const Tensor& b) {
  if (!use_linear_function(x, w, b)) return torch::addmm(b, x, w.t());
  return LinearFn::apply(x, w, b);
}

}  // namespace net2net::kernels
