// The whole flow (Table::flow_forward / _backward / _inverse): every row through all blocks on
// one thread; the weight gradients as sums over all rows, as independent tasks.
#pragma once
#include "net2net/kernels/cpu/impl/coupling.h"
#include "net2net/kernels/cpu/impl/gemm_nn.h"
#include "net2net/kernels/cpu/impl/gemm_tn.h"
#include "net2net/kernels/cpu/impl/subnet.h"
#include "net2net/kernels/cpu/impl/norm_act.h"

namespace net2net::kernels::cpu::NET2NET_KERNEL_NS {

// The widest input, hidden layer, output and depth over all pairs of the flow (scratch sizes).
struct PairMaxima {
  int64_t in = 0, hidden = 0, out = 0, depth = 0;
};
template <typename T>
PairMaxima pair_maxima(const FlowBlockWeights<T>* blocks, int64_t count) {
  PairMaxima m;
  for (int64_t i = 0; i < count; ++i)
    for (const PairWeights<T>* p : {&blocks[i].st0, &blocks[i].st1})
      m.in = std::max(m.in, p->in), m.hidden = std::max(m.hidden, p->hidden), m.out = std::max(m.out, p->out),
      m.depth = std::max(m.depth, p->depth);
  return m;
}

// The whole flow's inverse (see Table::flow_inverse): each thread takes one stretch of rows
// through every flow block. Per flow block: g = unshuffle(h) = [x2', x1']; (s1, t1) = st1([x2',
// c]); x1 = (x1' - t1) exp(-s1); (s0, t0) = st0([x1, c]); x2 = (x2' - t0) exp(-s0); h = [x1, x2]
// through the inverse LeakyReLU and ActNorm: the steps of inn::FlowBlock::inverse with the same
// row kernels, so the values are those of the op-by-op path. A subnet pair runs over all of the
// thread's rows in blocks of 32 before the next pair: its weights (~350 KB at H = 128; the whole
// flow's are ~8 MB) are read into L2 once per pair, not once per 32 rows.
template <typename T>
void flow_inverse(const T* v, int64_t n, int64_t d, int64_t a, const FlowBlockWeights<T>* blocks, int64_t count,
                  T* x) {
  constexpr int64_t rb = 32;
  const int64_t b = d - a;
  const PairMaxima mx = pair_maxima(blocks, count);
  const int64_t max_in = mx.in, max_hidden = mx.hidden, max_out = mx.out;
  const int64_t row_blocks = (n + rb - 1) / rb;
  at::parallel_for(0, row_blocks, 1, [&](int64_t begin, int64_t end) {
    const int64_t first_row = begin * rb, rows_here = std::min(end * rb, n) - first_row;
    std::vector<T> h(rows_here * d), g(rows_here * d), in(rb * max_in), first(rb * 2 * max_hidden), h1(rb * max_hidden),
        h2(rb * max_hidden), s(rb * max_out), t(rb * max_out);
    auto hidden_out = [&](int64_t k, int64_t) { return (k % 2 == 0 ? h1 : h2).data(); };
    // One coupling half over all rows here: (s, t) = pair([src (w wide, row stride d), c]), then
    // dst = (y - t) exp(-s) (out wide; src, y and dst are columns of g or h).
    auto half = [&](const FlowBlockWeights<T>& blk, const PairWeights<T>& pair, const T* src, int64_t w, const T* y,
                    T* dst) {
      const int64_t e = blk.cond_dim, out = pair.out;
      for (int64_t r0 = 0; r0 < rows_here; r0 += rb) {
        const int64_t rows = std::min(rb, rows_here - r0);
        for (int64_t r = 0; r < rows; ++r) {
          std::copy_n(src + (r0 + r) * d, w, in.data() + r * (w + e));
          std::copy_n(blk.cond + (first_row + r0 + r) * e, e, in.data() + r * (w + e) + w);
        }
        pair_rows(in.data(), w + e, rows, pair, first.data(), hidden_out, s.data(), t.data(), out);
        for (int64_t r = 0; r < rows; ++r)
          coupling_inverse_row(y + (r0 + r) * d, s.data() + r * out, t.data() + r * out, dst + (r0 + r) * d, out);
      }
    };
    std::copy_n(v + first_row * d, rows_here * d, h.data());
    for (int64_t i = count - 1; i >= 0; --i) {
      const FlowBlockWeights<T>& blk = blocks[i];
      for (int64_t r = 0; r < rows_here; ++r)
        for (int64_t j = 0; j < d; ++j) g[r * d + j] = h[r * d + blk.unshuffle[j]];
      half(blk, blk.st1, g.data(), b, g.data() + b, h.data());      // x1 into h[:, :a]
      half(blk, blk.st0, h.data(), a, g.data(), h.data() + a);      // x2 into h[:, a:]
      for (int64_t r = 0; r < rows_here; ++r)
        norm_act_inverse_row(h.data() + r * d, blk.loc, blk.scale, blk.alpha, h.data() + r * d, d);
    }
    std::copy_n(h.data(), rows_here * d, x + first_row * d);
  });
}

// Where one pair's state lies in flow_forward's `saved` (in, a0, acts [depth][2, n, H], s) and
// in flow_backward's `work` (g_a0, g_hidden [depth][2, n, H], g_out [2, n, out]).
template <typename T>
struct PairState {
  T *in, *a0, *acts, *s;
  T *g_a0 = nullptr, *g_hidden = nullptr, *g_out = nullptr;
};
template <typename T>
struct BlockState {
  T *x, *y, *gy = nullptr;
  PairState<T> st0, st1;
};

// Carves saved / work for every block in the layout of flow_saved_elements / flow_work_elements.
template <typename T>
std::vector<BlockState<T>> block_states(int64_t n, int64_t d, const FlowBlockWeights<T>* blocks, int64_t count,
                                        T* saved, T* work) {
  std::vector<BlockState<T>> out(static_cast<size_t>(count));
  for (int64_t i = 0; i < count; ++i) {
    BlockState<T>& b = out[i];
    b.x = saved, b.y = saved + n * d, saved += 2 * n * d;
    if (work) b.gy = work, work += n * d;
    for (int j = 0; j < 2; ++j) {
      const PairWeights<T>& w = j == 0 ? blocks[i].st0 : blocks[i].st1;
      PairState<T>& p = j == 0 ? b.st0 : b.st1;
      const int64_t h2 = 2 * w.hidden;
      p.in = saved, p.a0 = saved + n * w.in, p.acts = p.a0 + n * h2, p.s = p.acts + n * h2 * w.depth;
      saved = p.s + n * w.out;
      if (!work) continue;
      p.g_a0 = work, p.g_hidden = work + n * h2, p.g_out = p.g_hidden + n * h2 * w.depth;
      work = p.g_out + 2 * n * w.out;
    }
  }
  return out;
}

// The flow's forward pass (Table::flow_forward), each thread one stretch of rows through every
// block, each pair over all of the stretch's rows before the next (its weights stay in L2).
template <typename T>
void flow_forward(const T* x, int64_t n, int64_t d, int64_t a, const FlowBlockWeights<T>* blocks, int64_t count, T* v,
                  T* logdet, T* saved) {
  constexpr int64_t rb = 32;
  const int64_t b = d - a;
  const PairMaxima mx = pair_maxima(blocks, count);
  const int64_t max_in = mx.in, max_hidden = mx.hidden, max_out = mx.out;
  const auto states = saved ? block_states<T>(n, d, blocks, count, saved, nullptr) : std::vector<BlockState<T>>();
  const int64_t row_blocks = (n + rb - 1) / rb;
  at::parallel_for(0, row_blocks, 1, [&](int64_t begin, int64_t end) {
    const int64_t first_row = begin * rb, rows_here = std::min(end * rb, n) - first_row;
    std::vector<T> h(rows_here * d), o(rows_here * d), ld(rows_here, T(0)), y_local(saved ? 0 : rows_here * d),
        in(rb * max_in), first(rb * 2 * max_hidden), h1(rb * max_hidden), h2(rb * max_hidden), s(rb * max_out),
        t(rb * max_out);
    // One coupling half over the stretch: (s, t) = pair([src (w wide), c]), dst = y exp(s) + t
    // (out wide); src, y, dst: row stride d. With st (training) the pair's state is kept there.
    auto half = [&](const FlowBlockWeights<T>& blk, const PairWeights<T>& pair, const PairState<T>* st, const T* src,
                    int64_t w, const T* y, T* dst) {
      const int64_t e = blk.cond_dim, out = pair.out, hidden = pair.hidden;
      for (int64_t r0 = 0; r0 < rows_here; r0 += rb) {
        const int64_t rows = std::min(rb, rows_here - r0), g0 = first_row + r0;
        T* inp = st ? st->in + g0 * (w + e) : in.data();
        for (int64_t r = 0; r < rows; ++r) {
          std::copy_n(src + (r0 + r) * d, w, inp + r * (w + e));
          std::copy_n(blk.cond + (g0 + r) * e, e, inp + r * (w + e) + w);
        }
        auto hidden_out = [&](int64_t k, int64_t j) {
          return st ? st->acts + (k * 2 * n + j * n + g0) * hidden : (k % 2 == 0 ? h1 : h2).data();
        };
        T* sp = st ? st->s + g0 * out : s.data();
        pair_rows(inp, w + e, rows, pair, st ? st->a0 + g0 * 2 * hidden : first.data(), hidden_out, sp, t.data(), out);
        for (int64_t r = 0; r < rows; ++r)
          ld[r0 + r] += coupling_forward_row(y + (r0 + r) * d, sp + r * out, t.data() + r * out, dst + (r0 + r) * d, out);
      }
    };
    std::copy_n(x + first_row * d, rows_here * d, h.data());
    for (int64_t i = 0; i < count; ++i) {
      const FlowBlockWeights<T>& blk = blocks[i];
      const BlockState<T>* st = saved ? &states[i] : nullptr;
      T log_scale = 0;
      for (int64_t j = 0; j < d; ++j) log_scale += std::log(std::abs(blk.scale[j]));
      const T log_alpha = blk.alpha != T(0) ? std::log(blk.alpha) : T(0);
      T* y = st ? st->y + first_row * d : y_local.data();
      if (st) std::copy_n(h.data(), rows_here * d, st->x + first_row * d);
      for (int64_t r = 0; r < rows_here; ++r)
        ld[r] += log_scale + log_alpha * norm_act_forward_row(h.data() + r * d, blk.loc, blk.scale, blk.alpha, y + r * d, d);
      half(blk, blk.st0, st ? &st->st0 : nullptr, y, a, y + a, o.data());      // x2' into o[:, :b]
      half(blk, blk.st1, st ? &st->st1 : nullptr, o.data(), b, y, o.data() + b);  // x1' into o[:, b:]
      for (int64_t r = 0; r < rows_here; ++r)
        for (int64_t j = 0; j < d; ++j) h[r * d + j] = o[r * d + blk.shuffle[j]];
    }
    std::copy_n(h.data(), rows_here * d, v + first_row * d);
    std::copy_n(ld.data(), rows_here, logdet + first_row);
  });
}

// c[q] = sum_{i < m} b[i, q] (a bias gradient), Q in whole vectors.
template <typename T>
void column_sums(const T* b, int64_t ldb, T* c, int64_t m, int64_t q_total) {
  using Vec = at::vec::Vectorized<T>;
  for (int64_t q = 0; q < q_total; q += Vec::size()) {
    Vec acc(T(0));
    for (int64_t i = 0; i < m; ++i) acc = acc + Vec::loadu(b + i * ldb + q);
    acc.store(c + q);
  }
}

// The flow's backward pass (Table::flow_backward). Along the rows, each thread its stretch, block
// by block down: the shuffle's gradient; each coupling half as y = x exp(s) + t (gx, gs), the
// pair's pre-activation gradients (pair_backward_rows) and its input's gradient g_a0 W_in, split
// into the coupled half's and the condition's; then ActNorm + LeakyReLU. Then every parameter's
// gradient (sums over all rows) as independent tasks in parallel.
template <typename T>
void flow_backward(int64_t n, int64_t d, int64_t a, const FlowBlockWeights<T>* blocks, int64_t count, const T* saved,
                   const T* gv, const T* gld, T* work, T* gx, const FlowBlockGrads<T>* grads) {
  constexpr int64_t rb = 32;
  const int64_t b = d - a;
  const PairMaxima mx = pair_maxima(blocks, count);
  const int64_t max_in = mx.in, max_out = mx.out, max_depth = mx.depth;
  const auto states = block_states<T>(n, d, blocks, count, const_cast<T*>(saved), work);
  const int64_t row_blocks = (n + rb - 1) / rb;
  at::parallel_for(0, row_blocks, 1, [&](int64_t begin, int64_t end) {
    const int64_t first_row = begin * rb, rows_here = std::min(end * rb, n) - first_row;
    std::vector<T> g(rows_here * d), go(rows_here * d), g_in(rb * max_in), gs(rb * max_out), gt(rb * max_out);
    std::vector<const T*> acts(static_cast<size_t>(max_depth));
    std::vector<T*> g_hidden(static_cast<size_t>(max_depth));
    // One coupling half, dst' = x exp(s) + t with x = xs (row stride d): from gy (the gradient at
    // dst', row stride d) the gradient at x into gxs (row stride d); the pair's input gradient
    // then goes to gsrc (its first w columns; row stride d, added) and the condition's gradient
    // (written when `first_cond`, else added).
    auto half = [&](const FlowBlockWeights<T>& blk, const FlowBlockGrads<T>& grd, const PairWeights<T>& pair,
                    const PairState<T>& st, const T* xs, const T* gy, T* gxs, T* gsrc, int64_t w, bool first_cond) {
      const int64_t e = blk.cond_dim, out = pair.out, hidden = pair.hidden, in = pair.in;
      for (int64_t k = 0; k < pair.depth; ++k)
        acts[k] = st.acts + k * 2 * n * hidden, g_hidden[k] = st.g_hidden + k * 2 * n * hidden;
      for (int64_t r0 = 0; r0 < rows_here; r0 += rb) {
        const int64_t rows = std::min(rb, rows_here - r0), g0 = first_row + r0;
        for (int64_t r = 0; r < rows; ++r) {
          const int64_t i = r0 + r;
          coupling_backward_row(xs + i * d, st.s + (g0 + r) * out, gy + i * d, gld[g0 + r], gxs + i * d,
                                gs.data() + r * out, out);
          std::copy_n(gy + i * d, out, gt.data() + r * out);
        }
        pair_backward_rows(n, g0, rows, hidden, pair.depth, pair.w_hidden_t, pair.w_out_t, out, st.s, st.a0, acts.data(),
                           gs.data(), gt.data(), st.g_out, g_hidden.data(), st.g_a0);
        dense_rows<T, false>(st.g_a0 + g0 * 2 * hidden, 2 * hidden, pair.w_in_t, nullptr, g_in.data(), in, rows,
                             2 * hidden, in);
        for (int64_t r = 0; r < rows; ++r) {
          T* dst = gsrc + (r0 + r) * d;
          const T* src = g_in.data() + r * in;
          for (int64_t j = 0; j < w; ++j) dst[j] += src[j];
          T* gc = grd.cond + (g0 + r) * e;
          if (first_cond) std::copy_n(src + w, e, gc);
          else
            for (int64_t j = 0; j < e; ++j) gc[j] += src[w + j];
        }
      }
    };
    std::copy_n(gv + first_row * d, rows_here * d, g.data());
    for (int64_t i = count - 1; i >= 0; --i) {
      const FlowBlockWeights<T>& blk = blocks[i];
      const BlockState<T>& st = states[i];
      for (int64_t r = 0; r < rows_here; ++r)
        for (int64_t j = 0; j < d; ++j) go[r * d + blk.shuffle[j]] = g[r * d + j];
      const T* y = st.y + first_row * d;
      T* gy = st.gy + first_row * d;
      // x1' = x1 exp(s1) + t1 (go[:, b:]): x1's gradient into gy[:, :a]; st1's input [x2', c]
      // adds to x2''s gradient go[:, :b].
      half(blk, grads[i], blk.st1, st.st1, y, go.data() + b, gy, go.data(), b, true);
      // x2' = x2 exp(s0) + t0 (go[:, :b]): x2's gradient into gy[:, a:]; st0's input [x1, c] adds
      // to gy[:, :a].
      half(blk, grads[i], blk.st0, st.st0, y + a, go.data(), gy + a, gy, a, false);
      // ActNorm + LeakyReLU: gx = gy f'(u) scale, u = scale (x + loc).
      norm_act_backward_rows<T, true, false>(st.x + first_row * d, blk.loc, blk.scale, blk.alpha, gy, g.data(), nullptr,
                                             nullptr, rows_here, d);
    }
    std::copy_n(g.data(), rows_here * d, gx + first_row * d);
  });

  // Parameter gradients: sums over all n rows, as independent tasks.
  T gld_sum = 0;
  for (int64_t r = 0; r < n; ++r) gld_sum += gld[r];
  // weight: rows [p0, p1) of c = a^T b (tn_sum), weight_transposed: of c^T; bias: c = the column
  // sums of b; actnorm: block `block`'s g_loc and g_scale. Each task writes its own output.
  enum class Kind { weight, weight_transposed, bias, actnorm };
  struct Task {
    Kind kind;
    const T *a = nullptr, *b = nullptr;
    int64_t lda = 0, ldb = 0;
    T* c = nullptr;
    int64_t ldc = 0, p0 = 0, p1 = 0, q = 0, block = 0;
  };
  std::vector<Task> tasks;
  auto gemm = [&](const T* a_, int64_t lda, const T* b_, int64_t ldb, T* c, int64_t ldc, int64_t p, int64_t q,
                  bool transposed) {
    constexpr int64_t chunk = 16;
    for (int64_t p0 = 0; p0 < p; p0 += chunk)
      tasks.push_back({transposed ? Kind::weight_transposed : Kind::weight, a_, b_, lda, ldb, c, ldc, p0,
                       std::min(p, p0 + chunk), q});
  };
  auto bias = [&](const T* g_, int64_t ldg, T* c, int64_t q) {
    Task t{Kind::bias};
    t.b = g_, t.ldb = ldg, t.c = c, t.q = q;
    tasks.push_back(t);
  };
  auto actnorm = [&](int64_t block) {
    Task t{Kind::actnorm};
    t.block = block;
    tasks.push_back(t);
  };
  for (int64_t i = 0; i < count; ++i) {
    for (int j = 0; j < 2; ++j) {
      const PairWeights<T>& w = j == 0 ? blocks[i].st0 : blocks[i].st1;
      const PairState<T>& st = j == 0 ? states[i].st0 : states[i].st1;
      const PairGrads<T>& gr = j == 0 ? grads[i].st0 : grads[i].st1;
      const int64_t hd = w.hidden;
      gemm(st.in, w.in, st.g_a0, 2 * hd, gr.w_in, w.in, w.in, 2 * hd, true);  // [2H, in] = g_a0^T in
      bias(st.g_a0, 2 * hd, gr.b_in, 2 * hd);
      for (int64_t sub = 0; sub < 2; ++sub) {
        for (int64_t k = 0; k <= w.depth; ++k) {
          // Layer k + 1's input: a0's half or hidden activation k - 1 ... as [n, H].
          const T* act = k == 0 ? st.a0 + sub * hd : st.acts + ((k - 1) * 2 * n + sub * n) * hd;
          const int64_t lda = k == 0 ? 2 * hd : hd;
          if (k < w.depth) {
            const T* gk = st.g_hidden + (k * 2 * n + sub * n) * hd;
            gemm(act, lda, gk, hd, gr.w_hidden[k] + sub * hd * hd, hd, hd, hd, false);
            bias(gk, hd, gr.b_hidden[k] + sub * hd, hd);
          } else {
            const T* go = st.g_out + sub * n * w.out;
            gemm(act, lda, go, w.out, gr.w_out + sub * hd * w.out, w.out, hd, w.out, false);
            bias(go, w.out, gr.b_out + sub * w.out, w.out);
          }
        }
      }
    }
    actnorm(i);
  }
  at::parallel_for(0, static_cast<int64_t>(tasks.size()), 1, [&](int64_t begin, int64_t end) {
    for (int64_t k = begin; k < end; ++k) {
      const Task& t = tasks[k];
      switch (t.kind) {
        case Kind::weight:
        case Kind::weight_transposed:
          tn_sum(t.a, t.lda, t.b, t.ldb, t.c, t.ldc, n, t.p0, t.p1, t.q, t.kind == Kind::weight_transposed);
          break;
        case Kind::bias:
          column_sums(t.b, t.ldb, t.c, n, t.q);
          break;
        case Kind::actnorm: {  // g_loc = sum_r gu scale, g_scale = sum_r gu (x + loc) + sum_r gld / scale
          const FlowBlockWeights<T>& blk = blocks[t.block];
          const BlockState<T>& st = states[t.block];
          T *g_loc = grads[t.block].loc, *g_scale = grads[t.block].scale;
          norm_act_backward_rows<T, false, true>(st.x, blk.loc, blk.scale, blk.alpha, st.gy, nullptr, g_loc, g_scale, n, d);
          for (int64_t j = 0; j < d; ++j) g_scale[j] += gld_sum / blk.scale[j];
          break;
        }
      }
    }
  });
}

}  // namespace net2net::kernels::cpu::NET2NET_KERNEL_NS
