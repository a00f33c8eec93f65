// The s and t subnets of a coupling half, all layers of a block of rows at a time
// (Table::subnet_pair_forward / _backward; shared with the flow kernels).
#pragma once
#include "net2net/kernels/cpu/impl/gemm_nn.h"

namespace net2net::kernels::cpu::NET2NET_KERNEL_NS {

// (s, t) of one SubnetPair for `rows` rows of x (row stride ldx) on this thread: the first layer
// into `first` [rows, 2H], hidden layer k of subnet j into hidden_out(k, j) [rows, H] (contiguous),
// s = tanh(subnet 0) and t = subnet 1 into [rows, out] (row stride ldst).
template <typename T, typename HiddenOut>
inline void pair_rows(const T* x, int64_t ldx, int64_t rows, const PairWeights<T>& p, T* first,
                      const HiddenOut& hidden_out, T* s, T* t, int64_t ldst) {
  using Vec = at::vec::Vectorized<T>;
  const int64_t hidden = p.hidden, out = p.out;
  dense_rows<T, true>(x, ldx, p.w_in, p.b_in, first, 2 * hidden, rows, p.in, 2 * hidden);
  for (int64_t j = 0; j < 2; ++j) {
    const T* cur = first + j * hidden;
    int64_t ld = 2 * hidden;
    for (int64_t k = 0; k < p.depth; ++k) {
      T* next = hidden_out(k, j);
      dense_rows<T, true>(cur, ld, p.w_hidden[k] + j * hidden * hidden, p.b_hidden[k] + j * hidden, next, hidden, rows,
                          hidden, hidden);
      cur = next, ld = hidden;
    }
    T* dst = j == 0 ? s : t;
    dense_rows<T, false>(cur, ld, p.w_out + j * hidden * out, p.b_out + j * out, dst, ldst, rows, hidden, out);
    if (j == 0)
      for (int64_t r = 0; r < rows; ++r)
        for (int64_t i = 0; i < out; i += Vec::size()) Vec::loadu(dst + r * ldst + i).tanh().store(dst + r * ldst + i);
  }
}

// The s and t subnets of a coupling half (inn::SubnetPair), all layers of a block of rows at a
// time while its activations stay in cache, the blocks in parallel: one pass and no intermediate
// tensors instead of ~10 ops over the whole batch. x [n, in]; w_in [in, 2H] (Linear's layout
// transposed), b_in [2H]; hidden layer k: w_hidden[k] [2, H, H] ([in, out]), b_hidden[k] [2, H];
// w_out [2, H, out], b_out [2, out]. s = tanh(subnet 0), t = subnet 1, each [n, out]. For
// training, a0 [n, 2H] and acts[k] [2, n, H] (non-null) receive the activations after each
// LeakyReLU (the backward pass needs them). 2H, H and out must be multiples of the vector width.
template <typename T>
void subnet_pair_forward(const T* x, int64_t n, int64_t in, const T* w_in, const T* b_in, int64_t hidden, int64_t depth,
                         const T* const* w_hidden, const T* const* b_hidden, const T* w_out, const T* b_out, int64_t out,
                         T* s, T* t, T* a0, T* const* acts) {
  constexpr int64_t rb = 32;  // rows per block: [32, 2H] of activations stays in L1 / L2
  const int64_t blocks = (n + rb - 1) / rb;
  const PairWeights<T> p{w_in, b_in, w_hidden, b_hidden, w_out, b_out, in, hidden, depth, out};
  at::parallel_for(0, blocks, 1, [&](int64_t begin, int64_t end) {
    std::vector<T> h0(static_cast<size_t>(a0 ? 0 : rb * 2 * hidden)), h1(static_cast<size_t>(acts ? 0 : rb * hidden)),
        h2(static_cast<size_t>(acts ? 0 : rb * hidden));
    for (int64_t blk = begin; blk < end; ++blk) {
      const int64_t r0 = blk * rb, rows = std::min(rb, n - r0);
      auto hidden_out = [&](int64_t k, int64_t j) {
        return acts ? acts[k] + (j * n + r0) * hidden : (k % 2 == 0 ? h1 : h2).data();
      };
      pair_rows(x + r0 * in, in, rows, p, a0 ? a0 + r0 * 2 * hidden : h0.data(), hidden_out, s + r0 * out, t + r0 * out,
                out);
    }
  });
}

// c[r, :] = g[r, :] W^T for `rows` rows, with W^T given row-major [len, n] (g's row length is
// len, c's row stride ldc, n a multiple of the vector width), on this thread; then
// c *= LeakyReLU'(act) (1 where act > 0, else 0.01; act has c's layout): the gradient at a
// LeakyReLU's input from the gradient g at the next layer's pre-activation.
template <typename T>
inline void back_through(const T* g, const T* w_t, T* c, int64_t ldc, const T* act, int64_t rows, int64_t n,
                         int64_t len) {
  using Vec = at::vec::Vectorized<T>;
  constexpr int V = Vec::size();
  dense_rows<T, false>(g, len, w_t, nullptr, c, ldc, rows, len, n);
  const Vec zero(T(0)), slope(T(0.01)), one(T(1));
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t q = 0; q < n; q += V) {
      const Vec factor = Vec::blendv(slope, one, Vec::loadu(act + r * ldc + q) > zero);
      (Vec::loadu(c + r * ldc + q) * factor).store(c + r * ldc + q);
    }
}

// One block of rows [r0, r0 + rows) of that pass, on this thread: s, a0, acts and the outputs
// g_out, g_hidden, g_a0 in their whole-batch layouts (n rows); gs, gt: this block's rows [rows, out].
template <typename T>
inline void pair_backward_rows(int64_t n, int64_t r0, int64_t rows, int64_t hidden, int64_t depth,
                               const T* const* w_hidden_t, const T* w_out_t, int64_t out, const T* s, const T* a0,
                               const T* const* acts, const T* gs, const T* gt, T* g_out, T* const* g_hidden, T* g_a0) {
  using Vec = at::vec::Vectorized<T>;
  // tanh' = 1 - s^2 for s; t's gradient as it is.
  for (int64_t i = 0; i < rows * out; i += Vec::size()) {
    const Vec sv = Vec::loadu(s + r0 * out + i);
    (Vec::loadu(gs + i) * (Vec(T(1)) - sv * sv)).store(g_out + r0 * out + i);
    Vec::loadu(gt + i).store(g_out + (n + r0) * out + i);
  }
  for (int64_t j = 0; j < 2; ++j) {
    // Layer by layer down: the gradient g at a layer's pre-activation [rows, width] times its
    // weight W[j] [in, width] gives the gradient at its input, through the LeakyReLU below.
    const T* g = g_out + (j * n + r0) * out;
    int64_t width = out;
    const T* w = w_out_t + j * hidden * out;
    for (int64_t k = depth; k >= 0; --k) {
      T* dst = k > 0 ? g_hidden[k - 1] + (j * n + r0) * hidden : g_a0 + r0 * 2 * hidden + j * hidden;
      const T* act = k > 0 ? acts[k - 1] + (j * n + r0) * hidden : a0 + r0 * 2 * hidden + j * hidden;
      const int64_t ld = k > 0 ? hidden : 2 * hidden;
      back_through(g, w, dst, ld, act, rows, hidden, width);
      if (k > 0) g = dst, width = hidden, w = w_hidden_t[k - 1] + j * hidden * hidden;
    }
  }
}

// The backward pass of subnet_pair_forward (training), the part that runs along the rows: from
// gs, gt [n, out] and the saved s, a0, acts, the gradients at every layer's pre-activation:
// g_out [2, n, out] (s's through tanh), g_hidden[k] [2, n, H], g_a0 [n, 2H]. The weights come
// transposed ([2, out, H], [2, H, H] as [out, in]), so that every product is the nn kernel's.
// Blocks of rows in parallel. The weight gradients (sums over all rows) are then one GEMM each.
template <typename T>
void subnet_pair_backward(int64_t n, int64_t hidden, int64_t depth, const T* const* w_hidden_t, const T* w_out_t,
                          int64_t out, const T* s, const T* a0, const T* const* acts, const T* gs, const T* gt, T* g_out,
                          T* const* g_hidden, T* g_a0) {
  constexpr int64_t rb = 32;
  const int64_t blocks = (n + rb - 1) / rb;
  at::parallel_for(0, blocks, 1, [&](int64_t begin, int64_t end) {
    for (int64_t blk = begin; blk < end; ++blk) {
      const int64_t r0 = blk * rb, rows = std::min(rb, n - r0);
      pair_backward_rows(n, r0, rows, hidden, depth, w_hidden_t, w_out_t, out, s, a0, acts, gs + r0 * out, gt + r0 * out,
                         g_out, g_hidden, g_a0);
    }
  });
}

}  // namespace net2net::kernels::cpu::NET2NET_KERNEL_NS
