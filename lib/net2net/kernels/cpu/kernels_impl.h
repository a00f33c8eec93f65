// Bodies of the raw CPU kernels (cpu/kernels.h), included once per ISA variant by
// kernels_default.cpp and kernels_avx2.cpp, each with its own NET2NET_KERNEL_NS and compile flags:
// ATen's Vectorized<T> then has that variant's width (CPU_CAPABILITY), parallel over rows or
// chunks with at::parallel_for.
#pragma once
#include <ATen/Parallel.h>
#include <ATen/cpu/vec/vec.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <type_traits>
#include <vector>

#include "net2net/kernels/cpu/kernels.h"

namespace net2net::kernels::cpu::NET2NET_KERNEL_NS {

// Rows per parallel task: about 16k elements each.
inline int64_t row_grain(int64_t d) { return std::max<int64_t>(1, 16384 / std::max<int64_t>(d, 1)); }

// One row of the coupling, y = x exp(s) + t, d wide; returns sum_j s[j] (its log-det).
template <typename T>
inline T coupling_forward_row(const T* xr, const T* sr, const T* tr, T* yr, int64_t d) {
  using Vec = at::vec::Vectorized<T>;
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
  return sum;
}

template <typename T>
void coupling_forward(const T* x, const T* s, const T* t, T* y, T* ld, int64_t n, int64_t d) {
  at::parallel_for(0, n, row_grain(d), [&](int64_t begin, int64_t end) {
    for (int64_t r = begin; r < end; ++r) ld[r] = coupling_forward_row(x + r * d, s + r * d, t + r * d, y + r * d, d);
  });
}

// One row of its backward: gx = gy exp(s), gs = gx x + g (g: the row's log-det gradient).
template <typename T>
inline void coupling_backward_row(const T* xr, const T* sr, const T* gyr, T g, T* gxr, T* gsr, int64_t d) {
  using Vec = at::vec::Vectorized<T>;
  const Vec gv(g);
  int64_t j = 0;
  for (; j + Vec::size() <= d; j += Vec::size()) {
    Vec gxv = Vec::loadu(gyr + j) * Vec::loadu(sr + j).exp();
    gxv.store(gxr + j);
    (gxv * Vec::loadu(xr + j) + gv).store(gsr + j);
  }
  for (; j < d; ++j) {
    T gxv = gyr[j] * std::exp(sr[j]);
    gxr[j] = gxv;
    gsr[j] = gxv * xr[j] + g;
  }
}

template <typename T>
void coupling_backward(const T* x, const T* s, const T* gy, const T* gld, T* gx, T* gs, int64_t n, int64_t d) {
  at::parallel_for(0, n, row_grain(d), [&](int64_t begin, int64_t end) {
    for (int64_t r = begin; r < end; ++r)
      coupling_backward_row(x + r * d, s + r * d, gy + r * d, gld ? gld[r] : T(0), gx + r * d, gs + r * d, d);
  });
}

// One row of the coupling's inverse, x = (y - t) exp(-s), d wide (shared with flow_inverse).
template <typename T>
inline void coupling_inverse_row(const T* yr, const T* sr, const T* tr, T* xr, int64_t d) {
  using Vec = at::vec::Vectorized<T>;
  int64_t j = 0;
  for (; j + Vec::size() <= d; j += Vec::size())
    ((Vec::loadu(yr + j) - Vec::loadu(tr + j)) * Vec::loadu(sr + j).neg().exp()).store(xr + j);
  for (; j < d; ++j) xr[j] = (yr[j] - tr[j]) * std::exp(-sr[j]);
}

template <typename T>
void coupling_inverse(const T* y, const T* s, const T* t, T* x, int64_t n, int64_t d) {
  at::parallel_for(0, n, row_grain(d), [&](int64_t begin, int64_t end) {
    for (int64_t r = begin; r < end; ++r) coupling_inverse_row(y + r * d, s + r * d, t + r * d, x + r * d, d);
  });
}

// Torch's order of operations, element by element, on elements [begin, end) of one tensor:
//   g += wd p; m = m b1 + (1 - b1) g; v = v b2 + (1 - b2) g^2; vmax = max(vmax, v);
//   p -= (lr / bc1) m / (sqrt(vmax) / sqrt(bc2) + eps)
template <typename T>
inline void adam_range(const AdamTensor<T>& a, int64_t begin, int64_t end) {
  using Vec = at::vec::Vectorized<T>;
  T *p = a.p, *m = a.m, *v = a.v, *vmax = a.vmax;
  const T* g = a.g;
  const T b1t = a.b1, b2t = a.b2, one_b1 = 1 - a.b1, one_b2 = 1 - a.b2, epst = a.eps, wdt = a.wd, ss = a.step_size,
          sb = a.sqrt_bc2;
  const bool wd = a.wd != 0;
  int64_t i = begin;
  const Vec vb1(b1t), vb2(b2t), v1b1(one_b1), v1b2(one_b2), veps(epst), vwd(wdt), vss(ss), vsb(sb);
  for (; i + Vec::size() <= end; i += Vec::size()) {
    Vec gi = Vec::loadu(g + i);
    if (wd) gi = gi + Vec::loadu(p + i) * vwd;
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
    if (wd) gi = gi + p[i] * wdt;
    m[i] = m[i] * b1t + gi * one_b1;
    v[i] = v[i] * b2t + gi * gi * one_b2;
    T d = v[i];
    if (vmax) d = vmax[i] = std::max(vmax[i], v[i]);
    p[i] = p[i] - ss * m[i] / (std::sqrt(d) / sb + epst);
  }
}

template <typename T>
void adam(T* p, const T* g, T* m, T* v, T* vmax, int64_t n, double b1, double b2, double eps, double wd,
          double step_size, double sqrt_bc2) {
  const AdamTensor<T> a{p, g, m, v, vmax, n, b1, b2, eps, wd, step_size, sqrt_bc2};
  at::parallel_for(0, n, 32768, [&](int64_t begin, int64_t end) { adam_range(a, begin, end); });
}

// Calls f(i, lo, hi) for the parts [lo, hi) of arrays i = 0, 1, ... (sizes[i] elements) that
// fall into [begin, end) of their concatenation (offsets: its prefix sums, count + 1 entries).
template <typename F>
inline void for_each_part(const std::vector<int64_t>& offsets, int64_t begin, int64_t end, const F& f) {
  const int64_t count = static_cast<int64_t>(offsets.size()) - 1;
  int64_t i = std::upper_bound(offsets.begin(), offsets.end(), begin) - offsets.begin() - 1;
  for (; i < count && offsets[i] < end; ++i) {
    const int64_t lo = std::max(begin, offsets[i]) - offsets[i], hi = std::min(end, offsets[i + 1]) - offsets[i];
    if (lo < hi) f(i, lo, hi);
  }
}

template <typename T>
void adam_many(const AdamTensor<T>* tensors, int64_t count) {
  std::vector<int64_t> offsets(static_cast<size_t>(count) + 1, 0);
  for (int64_t i = 0; i < count; ++i) offsets[i + 1] = offsets[i] + tensors[i].n;
  at::parallel_for(0, offsets.back(), 32768, [&](int64_t begin, int64_t end) {
    for_each_part(offsets, begin, end, [&](int64_t i, int64_t lo, int64_t hi) { adam_range(tensors[i], lo, hi); });
  });
}

template <typename T>
double sum_squares_many(const T* const* data, const int64_t* sizes, int64_t count) {
  using Vec = at::vec::Vectorized<T>;
  constexpr int64_t chunk = 16384;
  std::vector<int64_t> offsets(static_cast<size_t>(count) + 1, 0);
  for (int64_t i = 0; i < count; ++i) offsets[i + 1] = offsets[i] + sizes[i];
  const int64_t chunks = (offsets.back() + chunk - 1) / chunk;
  std::vector<double> partial(static_cast<size_t>(chunks), 0.0);
  at::parallel_for(0, chunks, 1, [&](int64_t begin, int64_t end) {
    for (int64_t c = begin; c < end; ++c)
      for_each_part(offsets, c * chunk, std::min(offsets.back(), (c + 1) * chunk), [&](int64_t i, int64_t lo, int64_t hi) {
        Vec acc(T(0));
        int64_t j = lo;
        for (; j + Vec::size() <= hi; j += Vec::size()) {
          const Vec x = Vec::loadu(data[i] + j);
          acc = at::vec::fmadd(x, x, acc);
        }
        T lanes[Vec::size()];
        acc.store(lanes);
        double sum = 0;
        for (int k = 0; k < Vec::size(); ++k) sum += lanes[k];
        for (; j < hi; ++j) sum += static_cast<double>(data[i][j]) * data[i][j];
        partial[c] += sum;
      });
  });
  double total = 0;
  for (double p : partial) total += p;
  return total;
}

// One MR x NR block of c = a b^T: MR rows of a against NR rows of b, each of the MR * NR dot
// products kept in its own vector register (4 x 3 = 12 accumulators + 3 b + 1 a = 16 AVX2
// registers), so every load feeds several FMAs.
// With `ahead`, also asks for the same stretch of the NR rows at `ahead` (the next block of b,
// which starts a new page: the hardware prefetchers stop at page ends).
template <typename T, int MR, int NR>
inline void nt_block(const T* a, const T* b, T* c, int64_t len, int64_t ldc, const T* ahead = nullptr) {
  using Vec = at::vec::Vectorized<T>;
  constexpr int64_t line = 64 / sizeof(T);
  Vec acc[MR][NR];
  for (int r = 0; r < MR; ++r)
    for (int q = 0; q < NR; ++q) acc[r][q] = Vec(T(0));
  int64_t l = 0;
  for (; l + Vec::size() <= len; l += Vec::size()) {
    if (ahead && l % line == 0)
      for (int q = 0; q < NR; ++q) __builtin_prefetch(ahead + q * len + l, 0, 2);
    Vec bv[NR];
    for (int q = 0; q < NR; ++q) bv[q] = Vec::loadu(b + q * len + l);
    for (int r = 0; r < MR; ++r) {
      const Vec av = Vec::loadu(a + r * len + l);
      for (int q = 0; q < NR; ++q) acc[r][q] = at::vec::fmadd(av, bv[q], acc[r][q]);
    }
  }
  for (int r = 0; r < MR; ++r)
    for (int q = 0; q < NR; ++q) {
      T lanes[Vec::size()];
      acc[r][q].store(lanes);
      T sum = 0;
      for (int k = 0; k < Vec::size(); ++k) sum += lanes[k];
      for (int64_t j = l; j < len; ++j) sum += a[r * len + j] * b[q * len + j];
      c[r * ldc + q] = sum;
    }
}

template <typename T, int MR>
inline void nt_rows(const T* a, const T* b, T* c, int nr, int64_t len, int64_t ldc, const T* ahead) {
  if (nr == 3) nt_block<T, MR, 3>(a, b, c, len, ldc, ahead);
  else if (nr == 2) nt_block<T, MR, 2>(a, b, c, len, ldc, ahead);
  else nt_block<T, MR, 1>(a, b, c, len, ldc, ahead);
}

template <typename T>
void matmul_nt(const T* a, const T* b, T* c, int64_t m, int64_t n, int64_t len) {
  constexpr int MR = 4, NR = 3;
  const int64_t blocks = (n + NR - 1) / NR;
  // Parallel over blocks of b's rows (the large operand, read from memory once); a stays in cache.
  const int64_t grain = std::max<int64_t>(1, 32768 / std::max<int64_t>(m * len * NR, 1));
  at::parallel_for(0, blocks, grain, [&](int64_t begin, int64_t end) {
    for (int64_t blk = begin; blk < end; ++blk) {
      const int64_t q0 = blk * NR;
      const int nr = static_cast<int>(std::min<int64_t>(NR, n - q0));
      for (int64_t r0 = 0; r0 < m; r0 += MR) {
        const T* ar = a + r0 * len;
        const T* br = b + q0 * len;
        T* cr = c + r0 * n + q0;
        // The first pass over this block (from memory) asks for the next (whole) block of the
        // range: net2net-bench gemm --stream, W 2048 x 402: 46-54 GFLOP/s with, 35-39 without.
        const T* ahead = r0 == 0 && blk + 1 < end && (blk + 2) * NR <= n ? br + NR * len : nullptr;
        switch (std::min<int64_t>(MR, m - r0)) {
          case 4: nt_rows<T, 4>(ar, br, cr, nr, len, n, ahead); break;
          case 3: nt_rows<T, 3>(ar, br, cr, nr, len, n, ahead); break;
          case 2: nt_rows<T, 2>(ar, br, cr, nr, len, n, ahead); break;
          default: nt_rows<T, 1>(ar, br, cr, nr, len, n, ahead); break;
        }
      }
    }
  });
}

// One MR x NR-vector block of c = start + a b (nn): each step l broadcasts MR values of a's
// column l and multiplies them with NR vectors of b's row l (b: a packed strip, row stride ldb).
// start: `bias` (NR vectors, or zero when null) when `init`, else the block's current c. Only
// whole vectors are loaded and stored (column tails are padded by the caller), which keeps the
// 12 accumulators in registers.
template <typename T, int MR, int NR, bool LRELU = false>
inline void nn_block(const T* a, int64_t lda, const T* b, int64_t ldb, const T* bias, T* c, int64_t ldc, int64_t k,
                     bool init) {
  using Vec = at::vec::Vectorized<T>;
  constexpr int V = Vec::size();
  Vec acc[MR][NR];
  for (int q = 0; q < NR; ++q)
    for (int r = 0; r < MR; ++r)
      acc[r][q] = init ? (bias ? Vec::loadu(bias + q * V) : Vec(T(0))) : Vec::loadu(c + r * ldc + q * V);
  for (int64_t l = 0; l < k; ++l) {
    Vec bv[NR];
    for (int q = 0; q < NR; ++q) bv[q] = Vec::loadu(b + l * ldb + q * V);
    for (int r = 0; r < MR; ++r) {
      const Vec av(a[r * lda + l]);
      for (int q = 0; q < NR; ++q) acc[r][q] = at::vec::fmadd(av, bv[q], acc[r][q]);
    }
  }
  if constexpr (LRELU) {  // LeakyReLU(0.01) as max(v, 0.01 v): the values of torch's v > 0 ? v : 0.01 v
    const Vec slope(T(0.01));
    for (int r = 0; r < MR; ++r)
      for (int q = 0; q < NR; ++q) acc[r][q] = at::vec::maximum(acc[r][q], acc[r][q] * slope);
  }
  for (int r = 0; r < MR; ++r)
    for (int q = 0; q < NR; ++q) acc[r][q].store(c + r * ldc + q * V);
}

template <typename T, int MR, bool LRELU = false>
inline void nn_rows(const T* a, int64_t lda, const T* b, int64_t ldb, const T* bias, T* c, int64_t ldc, int64_t k,
                    bool init, int nr) {
  if (nr == 3) nn_block<T, MR, 3, LRELU>(a, lda, b, ldb, bias, c, ldc, k, init);
  else if (nr == 2) nn_block<T, MR, 2, LRELU>(a, lda, b, ldb, bias, c, ldc, k, init);
  else nn_block<T, MR, 1, LRELU>(a, lda, b, ldb, bias, c, ldc, k, init);
}

// Copies rows [l0, l0 + kl) of b's columns [j0, j0 + cols) into `packed` strip by strip: strip
// t (columns j0 + t * width ...) at packed + t * kl * width, row l at + l * width; columns past
// `cols` in the last strip are zero.
template <typename T>
inline void pack_strips(const T* b, int64_t ldb, int64_t l0, int64_t kl, int64_t j0, int64_t cols, int64_t width,
                        T* packed) {
  const int64_t n_strips = (cols + width - 1) / width;
  for (int64_t l = 0; l < kl; ++l) {
    const T* row = b + (l0 + l) * ldb + j0;  // read along the row: one sequential stream
    for (int64_t t = 0; t < n_strips; ++t) {
      T* dst = packed + (t * kl + l) * width;
      const int64_t w = std::min<int64_t>(width, cols - t * width);
      for (int64_t q = 0; q < w; ++q) dst[q] = row[t * width + q];
      for (int64_t q = w; q < width; ++q) dst[q] = T(0);
    }
  }
}

// acc[r, q] += sum_{l in [l0, l1)} a[r, l] b[l, q] over all n columns; acc [m, n] contiguous
// (padded columns: acc's row stride is ldacc >= n). b's rows are walked in chunks of kc, each
// chunk (one contiguous stretch of memory) copied strip by strip into `packed`, and every block
// of MR rows of a runs over each strip.
template <typename T>
void nn_accumulate(const T* a, int64_t lda, const T* b, int64_t n, int64_t l0, int64_t l1, T* acc, int64_t ldacc,
                   int64_t m, bool init, const T* bias_padded, T* packed) {
  using Vec = at::vec::Vectorized<T>;
  constexpr int MR = 4, NR = 3, V = Vec::size();
  constexpr int64_t width = NR * V, kc = 64;
  const int64_t strips = (n + width - 1) / width;
  for (int64_t c0 = l0; c0 < std::max(l1, l0 + 1); c0 += kc) {
    const int64_t kl = std::max<int64_t>(0, std::min<int64_t>(kc, l1 - c0));
    const bool first = init && c0 == l0;
    pack_strips(b, n, c0, kl, 0, n, width, packed);
    for (int64_t s = 0; s < strips; ++s) {
      const int64_t j0 = s * width;
      const int nr = static_cast<int>((std::min<int64_t>(width, n - j0) + V - 1) / V);
      const T* bs = packed + s * kl * width;
      const T* bi = bias_padded ? bias_padded + j0 : nullptr;
      // Ask for this strip's columns of the next chunk while this one computes: every row of b
      // is a new page at the usual widths, where the hardware prefetchers stop (--stream: ~10%).
      const int64_t next_rows = std::min<int64_t>(kc, l1 - c0 - kc);
      const int64_t line = 64 / static_cast<int64_t>(sizeof(T));
      for (int64_t l = 0; l < next_rows; ++l) {
        const T* row = b + (c0 + kc + l) * n;
        for (int64_t j = j0 / line * line; j < std::min<int64_t>(j0 + width, n); j += line) __builtin_prefetch(row + j, 0, 2);
      }
      for (int64_t r0 = 0; r0 < m; r0 += MR) {
        const T* ar = a + r0 * lda + c0;
        T* cr = acc + r0 * ldacc + j0;
        switch (std::min<int64_t>(MR, m - r0)) {
          case 4: nn_rows<T, 4>(ar, lda, bs, width, bi, cr, ldacc, kl, first, nr); break;
          case 3: nn_rows<T, 3>(ar, lda, bs, width, bi, cr, ldacc, kl, first, nr); break;
          case 2: nn_rows<T, 2>(ar, lda, bs, width, bi, cr, ldacc, kl, first, nr); break;
          default: nn_rows<T, 1>(ar, lda, bs, width, bi, cr, ldacc, kl, first, nr); break;
        }
      }
    }
  }
}

// c[r, q] = bias[q] + sum_l a[r, l] b[l, q]: a [m, k] with row stride lda, b [k, n] and c [m, n]
// contiguous, bias [n] or null. For short batches (m <= ~32) times a large b, which is read
// once, as a few long sequential streams: the threads split b's rows (k), each summing its part
// into its own [m, n] buffer, added up at the end. (Split by columns, each thread reads short
// pieces of every row, 4 KB apart at the usual widths: every piece a new page and a cache miss
// the prefetcher does not see coming, 5 GB/s instead of 20+.) Columns are padded to whole
// vectors in the buffers, so the kernels only load and store whole vectors.
template <typename T>
void matmul_nn(const T* a, int64_t lda, const T* b, const T* bias, T* c, int64_t m, int64_t n, int64_t k) {
  using Vec = at::vec::Vectorized<T>;
  constexpr int64_t width = 3 * Vec::size(), kc = 64;
  const int64_t ldacc = (n + width - 1) / width * width;
  std::vector<T> bias_padded;
  if (bias) {
    bias_padded.assign(ldacc, T(0));
    std::copy_n(bias, n, bias_padded.data());
  }
  const int64_t chunks = (k + kc - 1) / kc;
  const int threads = std::max<int64_t>(1, std::min<int64_t>(at::get_num_threads(), chunks));
  // One part per thread (few enough rows, one part); part 0 starts from the bias.
  const int64_t parts = m * k * n < (int64_t{1} << 18) ? 1 : threads;
  std::vector<std::vector<T>> acc(static_cast<size_t>(parts));
  at::parallel_for(0, parts, 1, [&](int64_t begin, int64_t end) {
    std::vector<T> packed(static_cast<size_t>(kc * ldacc));
    for (int64_t part = begin; part < end; ++part) {
      const int64_t l0 = chunks * part / parts * kc, l1 = std::min(k, chunks * (part + 1) / parts * kc);
      acc[part].assign(static_cast<size_t>(m * ldacc), T(0));
      nn_accumulate(a, lda, b, n, l0, l1, acc[part].data(), ldacc, m, /*init=*/true,
                    part == 0 && bias ? bias_padded.data() : nullptr, packed.data());
    }
  });
  for (int64_t r = 0; r < m; ++r) {
    T* cr = c + r * n;
    std::copy_n(acc[0].data() + r * ldacc, n, cr);
    for (int64_t part = 1; part < parts; ++part) {
      const T* src = acc[part].data() + r * ldacc;
      for (int64_t q = 0; q < n; ++q) cr[q] += src[q];
    }
  }
}

// Stores v at p, bypassing the cache where the ISA allows and p is aligned: a large output
// written once (a weight gradient: 1 GB a step on text2biggan) is then not first read from
// memory (write-allocate) and does not evict what is reused.
template <typename T>
inline void store_streaming(const at::vec::Vectorized<T>& v, T* p) {
#if defined(CPU_CAPABILITY_AVX2)
  if (reinterpret_cast<uintptr_t>(p) % 32 == 0) {
    if constexpr (std::is_same_v<T, float>) return _mm256_stream_ps(p, v);
    if constexpr (std::is_same_v<T, double>) return _mm256_stream_pd(p, v);
  }
#endif
  v.store(p);
}

// One MR x NR-vector block of c = a^T b (tn), the reduction over the m rows of both: element (r,
// i) of a^T's MR rows at a[r * a_r + i * a_i] (a transposed copy: a_r = its row stride, a_i = 1;
// a itself: a_r = 1, a_i = its row stride), b's rows at stride ldb (a packed strip or b itself).
// Whole vectors only; with `stream` c is written around the cache.
// With `squares`, also adds the block's sum of squares to it (lane-wise).
template <typename T, int MR, int NR>
inline void tn_block(const T* a, int64_t a_r, int64_t a_i, const T* b, int64_t ldb, T* c, int64_t ldc, int64_t m,
                     bool stream, at::vec::Vectorized<T>* squares = nullptr) {
  using Vec = at::vec::Vectorized<T>;
  constexpr int V = Vec::size();
  Vec acc[MR][NR];
  for (int r = 0; r < MR; ++r)
    for (int q = 0; q < NR; ++q) acc[r][q] = Vec(T(0));
  for (int64_t i = 0; i < m; ++i) {
    Vec bv[NR];
    for (int q = 0; q < NR; ++q) bv[q] = Vec::loadu(b + i * ldb + q * V);
    for (int r = 0; r < MR; ++r) {
      const Vec av(a[r * a_r + i * a_i]);
      for (int q = 0; q < NR; ++q) acc[r][q] = at::vec::fmadd(av, bv[q], acc[r][q]);
    }
  }
  for (int r = 0; r < MR; ++r)
    for (int q = 0; q < NR; ++q) {
      if (stream) store_streaming(acc[r][q], c + r * ldc + q * V);
      else acc[r][q].store(c + r * ldc + q * V);
    }
  if (squares) {
    Vec sq(T(0));
    for (int r = 0; r < MR; ++r)
      for (int q = 0; q < NR; ++q) sq = at::vec::fmadd(acc[r][q], acc[r][q], sq);
    *squares = *squares + sq;
  }
}

template <typename T, int MR>
inline void tn_rows(const T* a, int64_t a_r, int64_t a_i, const T* b, int64_t ldb, T* c, int64_t ldc, int64_t m, int nr,
                    bool stream, at::vec::Vectorized<T>* squares = nullptr) {
  if (nr == 3) tn_block<T, MR, 3>(a, a_r, a_i, b, ldb, c, ldc, m, stream, squares);
  else if (nr == 2) tn_block<T, MR, 2>(a, a_r, a_i, b, ldb, c, ldc, m, stream, squares);
  else tn_block<T, MR, 1>(a, a_r, a_i, b, ldb, c, ldc, m, stream, squares);
}

// c[p, q] = sum_i a[i, p] b[i, q]: a [m, k] with row stride lda, b [m, n] contiguous, c [k, n]
// contiguous. The weight gradient x^T g of a short batch (m <= ~32): c is written once, a and b
// stay in cache. a is transposed once to [k, m]; each thread packs b's part of its range of
// columns strip by strip (pack_strips) and writes c block row by block row along the range
// (written strip by strip down the rows instead, every store would open a new page). A narrower
// last strip is computed into a scratch tile (its padded columns come out 0). With
// `sum_squares`, also returns sum c^2, from the registers: the gradient norm then need not read
// c back from memory (1 GB a step on text2biggan).
template <typename T>
void matmul_tn(const T* a, int64_t lda, const T* b, T* c, int64_t m, int64_t n, int64_t k, double* sum_squares) {
  using Vec = at::vec::Vectorized<T>;
  constexpr int MR = 4, NR = 3, V = Vec::size();
  constexpr int64_t width = NR * V;
  const int64_t strips = (n + width - 1) / width;
  const int64_t grain = std::max<int64_t>(1, 32768 / std::max<int64_t>(m * k * NR, 1));
  std::vector<T> a_t(static_cast<size_t>(k * m));
  for (int64_t i = 0; i < m; ++i)
    for (int64_t p = 0; p < k; ++p) a_t[p * m + i] = a[i * lda + p];
  // Streaming stores only where c's rows are whole cache lines: a line written partly by them
  // and partly by ordinary stores (ragged rows) is read back from memory, slower than without.
  const bool stream_rows = (n * static_cast<int64_t>(sizeof(T))) % 64 == 0 && reinterpret_cast<uintptr_t>(c) % 64 == 0;
  // Sums of squares per range of strips (at its first strip), added in order: one value for a
  // thread count. Lanes collect a block row at a time, then go into a double.
  std::vector<double> partial(static_cast<size_t>(sum_squares ? strips : 0), 0.0);
  at::parallel_for(0, strips, grain, [&](int64_t begin, int64_t end) {
    Vec squares(T(0));
    Vec* sq = sum_squares ? &squares : nullptr;
    double total = 0;
    const int64_t j_begin = begin * width, cols = std::min<int64_t>(end * width, n) - j_begin;
    std::vector<T> packed(static_cast<size_t>(m * (end - begin) * width));
    pack_strips(b, n, 0, m, j_begin, cols, width, packed.data());
    alignas(64) T tile[MR * width];
    for (int64_t p0 = 0; p0 < k; p0 += MR) {
      const T* ap = a_t.data() + p0 * m;
      const int rows = static_cast<int>(std::min<int64_t>(MR, k - p0));
      for (int64_t s = begin; s < end; ++s) {
        const int64_t j0 = s * width, w = std::min<int64_t>(width, n - j0);
        const int nr = static_cast<int>((w + V - 1) / V);
        const bool narrow = w % V != 0;
        const T* bs = packed.data() + (s - begin) * m * width;
        T* cp = narrow ? tile : c + p0 * n + j0;
        const int64_t ldc = narrow ? width : n;
        switch (rows) {
          case 4: tn_rows<T, 4>(ap, m, 1, bs, width, cp, ldc, m, nr, stream_rows && !narrow, sq); break;
          case 3: tn_rows<T, 3>(ap, m, 1, bs, width, cp, ldc, m, nr, stream_rows && !narrow, sq); break;
          case 2: tn_rows<T, 2>(ap, m, 1, bs, width, cp, ldc, m, nr, stream_rows && !narrow, sq); break;
          default: tn_rows<T, 1>(ap, m, 1, bs, width, cp, ldc, m, nr, stream_rows && !narrow, sq); break;
        }
        if (narrow)
          for (int r = 0; r < rows; ++r) std::copy_n(tile + r * width, w, c + (p0 + r) * n + j0);
      }
      if (sq) {
        T lanes[V];
        squares.store(lanes);
        for (int q = 0; q < V; ++q) total += lanes[q];
        squares = Vec(T(0));
      }
    }
    if (sq) partial[begin] = total;
#if defined(CPU_CAPABILITY_AVX2)
    _mm_sfence();  // streaming stores are weakly ordered: visible before the loop's end
#endif
  });
  if (sum_squares) {
    double sum = 0;
    for (double v : partial) sum += v;
    *sum_squares = sum;
  }
}

// c[r, :] = bias + a[r, :] W for `rows` rows: W [k, n] row-major and small (read from cache, no
// packing), n a multiple of the vector width, bias [n] or null; LeakyReLU(0.01) applied in
// registers when LRELU.
template <typename T, bool LRELU>
inline void dense_rows(const T* a, int64_t lda, const T* w, const T* bias, T* c, int64_t ldc, int64_t rows, int64_t k,
                       int64_t n) {
  using Vec = at::vec::Vectorized<T>;
  constexpr int MR = 4, NR = 3, V = Vec::size();
  constexpr int64_t width = NR * V;
  for (int64_t j0 = 0; j0 < n; j0 += width) {
    const int nr = static_cast<int>(std::min<int64_t>(width, n - j0) / V);
    const T* bi = bias ? bias + j0 : nullptr;
    for (int64_t r0 = 0; r0 < rows; r0 += MR) {
      const T* ar = a + r0 * lda;
      T* cr = c + r0 * ldc + j0;
      switch (std::min<int64_t>(MR, rows - r0)) {
        case 4: nn_rows<T, 4, LRELU>(ar, lda, w + j0, n, bi, cr, ldc, k, true, nr); break;
        case 3: nn_rows<T, 3, LRELU>(ar, lda, w + j0, n, bi, cr, ldc, k, true, nr); break;
        case 2: nn_rows<T, 2, LRELU>(ar, lda, w + j0, n, bi, cr, ldc, k, true, nr); break;
        default: nn_rows<T, 1, LRELU>(ar, lda, w + j0, n, bi, cr, ldc, k, true, nr); break;
      }
    }
  }
}

// The s and t subnets of a coupling half (inn::SubnetPair), all layers of a block of rows at a
// time while its activations stay in cache, the blocks in parallel: one pass and no intermediate
// tensors instead of ~10 ops over the whole batch. x [n, in]; w_in [in, 2H] (Linear's layout
// transposed), b_in [2H]; hidden layer k: w_hidden[k] [2, H, H] ([in, out]), b_hidden[k] [2, H];
// w_out [2, H, out], b_out [2, out]. s = tanh(subnet 0), t = subnet 1, each [n, out]. For
// training, a0 [n, 2H] and acts[k] [2, n, H] (non-null) receive the activations after each
// LeakyReLU (the backward pass needs them). 2H, H and out must be multiples of the vector width.
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

// The backward pass of subnet_pair_forward (training), the part that runs along the rows: from
// gs, gt [n, out] and the saved s, a0, acts, the gradients at every layer's pre-activation:
// g_out [2, n, out] (s's through tanh), g_hidden[k] [2, n, H], g_a0 [n, 2H]. The weights come
// transposed ([2, out, H], [2, H, H] as [out, in]), so that every product is the nn kernel's.
// Blocks of rows in parallel. The weight gradients (sums over all rows) are then one GEMM each.
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

// ActNorm then the invertible LeakyReLU of a flow block (inn::FlowBlock), fused: u = scale (x +
// loc), y = u >= 0 ? u : alpha u (torch's where(u < 0, u alpha, u)), negatives[r] = the number of
// u < 0 in row r (the LeakyReLU's log-det is that times log alpha). x, y [n, d]; loc, scale [d].
// One row of it (alpha 0: no LeakyReLU, y = u); returns the count of u < 0 (0 without LeakyReLU).
template <typename T>
inline T norm_act_forward_row(const T* xr, const T* loc, const T* scale, T alpha, T* yr, int64_t d) {
  using Vec = at::vec::Vectorized<T>;
  const Vec zero(T(0)), va(alpha), one(T(1));
  const bool act = alpha != T(0);
  Vec count(T(0));
  int64_t j = 0;
  for (; j + Vec::size() <= d; j += Vec::size()) {
    const Vec u = Vec::loadu(scale + j) * (Vec::loadu(xr + j) + Vec::loadu(loc + j));
    if (!act) {
      u.store(yr + j);
      continue;
    }
    const Vec neg = u < zero;  // all-ones lanes where negative
    Vec::blendv(u, u * va, neg).store(yr + j);
    count = count + Vec::blendv(zero, one, neg);
  }
  T lanes[Vec::size()];
  count.store(lanes);
  T c = 0;
  for (int k = 0; k < Vec::size(); ++k) c += lanes[k];
  for (; j < d; ++j) {
    const T u = scale[j] * (xr[j] + loc[j]);
    const bool neg = act && u < 0;
    yr[j] = neg ? u * alpha : u;
    c += neg ? T(1) : T(0);
  }
  return c;
}

template <typename T>
void norm_act_forward(const T* x, const T* loc, const T* scale, T alpha, T* y, T* negatives, int64_t n, int64_t d) {
  at::parallel_for(0, n, row_grain(d), [&](int64_t begin, int64_t end) {
    for (int64_t r = begin; r < end; ++r) negatives[r] = norm_act_forward_row(x + r * d, loc, scale, alpha, y + r * d, d);
  });
}

// Its backward: gu = gy (1 or alpha where u < 0), gx = gu scale, g_loc[j] = sum_r gu scale,
// g_scale[j] = sum_r gu (x + loc) (the log-det's share, sum_r gld / scale, is the caller's). The
// column sums run on this thread over the rows (d is small: the flow's width).
template <typename T>
void norm_act_backward(const T* x, const T* loc, const T* scale, T alpha, const T* gy, T* gx, T* g_loc, T* g_scale,
                       int64_t n, int64_t d) {
  using Vec = at::vec::Vectorized<T>;
  const Vec zero(T(0)), va(alpha);
  std::fill_n(g_loc, d, T(0));
  std::fill_n(g_scale, d, T(0));
  for (int64_t r = 0; r < n; ++r) {
    const T *xr = x + r * d, *gyr = gy + r * d;
    T* gxr = gx + r * d;
    int64_t j = 0;
    for (; j + Vec::size() <= d; j += Vec::size()) {
      const Vec sc = Vec::loadu(scale + j), xl = Vec::loadu(xr + j) + Vec::loadu(loc + j), g = Vec::loadu(gyr + j);
      const Vec gu = Vec::blendv(g, g * va, sc * xl < zero);
      (gu * sc).store(gxr + j);
      (Vec::loadu(g_loc + j) + gu * sc).store(g_loc + j);
      (Vec::loadu(g_scale + j) + gu * xl).store(g_scale + j);
    }
    for (; j < d; ++j) {
      const T xl = xr[j] + loc[j];
      const T gu = scale[j] * xl < 0 ? gyr[j] * alpha : gyr[j];
      gxr[j] = gu * scale[j];
      g_loc[j] += gu * scale[j];
      g_scale[j] += gu * xl;
    }
  }
}

// One row of the inverse: u = y >= 0 ? y : y / alpha (alpha 0: no LeakyReLU, u = y), x = u /
// scale - loc (shared with flow_inverse).
template <typename T>
inline void norm_act_inverse_row(const T* yr, const T* loc, const T* scale, T alpha, T* xr, int64_t d) {
  using Vec = at::vec::Vectorized<T>;
  const Vec zero(T(0)), va(alpha);
  int64_t j = 0;
  for (; j + Vec::size() <= d; j += Vec::size()) {
    Vec u = Vec::loadu(yr + j);
    if (alpha != T(0)) u = Vec::blendv(u, u / va, u < zero);
    (u / Vec::loadu(scale + j) - Vec::loadu(loc + j)).store(xr + j);
  }
  for (; j < d; ++j) {
    const T u = alpha != T(0) && yr[j] < 0 ? yr[j] / alpha : yr[j];
    xr[j] = u / scale[j] - loc[j];
  }
}

template <typename T>
void norm_act_inverse(const T* y, const T* loc, const T* scale, T alpha, T* x, int64_t n, int64_t d) {
  at::parallel_for(0, n, row_grain(d), [&](int64_t begin, int64_t end) {
    for (int64_t r = begin; r < end; ++r) norm_act_inverse_row(y + r * d, loc, scale, alpha, x + r * d, d);
  });
}

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

// Rows [p0, p1) of c = a^T b over m rows (a [m, P] row stride lda, b [m, Q] row stride ldb, Q in
// whole vectors); c [P, Q] row stride ldc, or with `transposed` c^T: c[q * ldc + p].
template <typename T>
void tn_sum(const T* a, int64_t lda, const T* b, int64_t ldb, T* c, int64_t ldc, int64_t m, int64_t p0, int64_t p1,
            int64_t q_total, bool transposed) {
  using Vec = at::vec::Vectorized<T>;
  constexpr int MR = 4, NR = 3, V = Vec::size();
  T tile[MR * NR * V];
  for (int64_t q0 = 0; q0 < q_total; q0 += NR * V) {
    const int nr = static_cast<int>(std::min<int64_t>(NR * V, q_total - q0) / V);
    for (int64_t p = p0; p < p1; p += MR) {
      const int rows = static_cast<int>(std::min<int64_t>(MR, p1 - p));
      T* cp = transposed ? tile : c + p * ldc + q0;
      const int64_t ldt = transposed ? NR * V : ldc;
      switch (rows) {
        case 4: tn_rows<T, 4>(a + p, 1, lda, b + q0, ldb, cp, ldt, m, nr, false); break;
        case 3: tn_rows<T, 3>(a + p, 1, lda, b + q0, ldb, cp, ldt, m, nr, false); break;
        case 2: tn_rows<T, 2>(a + p, 1, lda, b + q0, ldb, cp, ldt, m, nr, false); break;
        default: tn_rows<T, 1>(a + p, 1, lda, b + q0, ldb, cp, ldt, m, nr, false); break;
      }
      if (transposed)
        for (int r = 0; r < rows; ++r)
          for (int64_t q = 0; q < nr * V; ++q) c[(q0 + q) * ldc + p + r] = tile[r * NR * V + q];
    }
  }
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
  using Vec = at::vec::Vectorized<T>;
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
      const Vec zero(T(0)), va(blk.alpha);
      for (int64_t r = 0; r < rows_here; ++r) {
        const T *xr = st.x + (first_row + r) * d, *gyr = gy + r * d;
        T* gr = g.data() + r * d;
        int64_t j = 0;
        for (; j + Vec::size() <= d; j += Vec::size()) {
          const Vec sc = Vec::loadu(blk.scale + j), gyv = Vec::loadu(gyr + j);
          const Vec gu = blk.alpha != T(0)
                             ? Vec::blendv(gyv, gyv * va, sc * (Vec::loadu(xr + j) + Vec::loadu(blk.loc + j)) < zero)
                             : gyv;
          (gu * sc).store(gr + j);
        }
        for (; j < d; ++j) {
          const T u = blk.scale[j] * (xr[j] + blk.loc[j]);
          gr[j] = (blk.alpha != T(0) && u < 0 ? gyr[j] * blk.alpha : gyr[j]) * blk.scale[j];
        }
      }
    }
    std::copy_n(g.data(), rows_here * d, gx + first_row * d);
  });

  // Parameter gradients: sums over all n rows, as independent tasks.
  T gld_sum = 0;
  for (int64_t r = 0; r < n; ++r) gld_sum += gld[r];
  struct Task {
    const T *a, *b;
    int64_t lda, ldb;
    T* c;
    int64_t ldc, p0, p1, q;
    int kind;  // 0: tn_sum, 1: tn_sum transposed, 2: column_sums, 3: ActNorm of block p0
  };
  std::vector<Task> tasks;
  auto gemm = [&](const T* a_, int64_t lda, const T* b_, int64_t ldb, T* c, int64_t ldc, int64_t p, int64_t q,
                  bool transposed) {
    constexpr int64_t chunk = 16;
    for (int64_t p0 = 0; p0 < p; p0 += chunk)
      tasks.push_back({a_, b_, lda, ldb, c, ldc, p0, std::min(p, p0 + chunk), q, transposed ? 1 : 0});
  };
  for (int64_t i = 0; i < count; ++i) {
    for (int j = 0; j < 2; ++j) {
      const PairWeights<T>& w = j == 0 ? blocks[i].st0 : blocks[i].st1;
      const PairState<T>& st = j == 0 ? states[i].st0 : states[i].st1;
      const PairGrads<T>& gr = j == 0 ? grads[i].st0 : grads[i].st1;
      const int64_t hd = w.hidden;
      gemm(st.in, w.in, st.g_a0, 2 * hd, gr.w_in, w.in, w.in, 2 * hd, true);  // [2H, in] = g_a0^T in
      tasks.push_back({nullptr, st.g_a0, 0, 2 * hd, gr.b_in, 0, 0, 0, 2 * hd, 2});
      for (int64_t sub = 0; sub < 2; ++sub) {
        for (int64_t k = 0; k <= w.depth; ++k) {
          // Layer k + 1's input: a0's half or hidden activation k - 1 ... as [n, H].
          const T* act = k == 0 ? st.a0 + sub * hd : st.acts + ((k - 1) * 2 * n + sub * n) * hd;
          const int64_t lda = k == 0 ? 2 * hd : hd;
          if (k < w.depth) {
            const T* gk = st.g_hidden + (k * 2 * n + sub * n) * hd;
            gemm(act, lda, gk, hd, gr.w_hidden[k] + sub * hd * hd, hd, hd, hd, false);
            tasks.push_back({nullptr, gk, 0, hd, gr.b_hidden[k] + sub * hd, 0, 0, 0, hd, 2});
          } else {
            const T* go = st.g_out + sub * n * w.out;
            gemm(act, lda, go, w.out, gr.w_out + sub * hd * w.out, w.out, hd, w.out, false);
            tasks.push_back({nullptr, go, 0, w.out, gr.b_out + sub * w.out, 0, 0, 0, w.out, 2});
          }
        }
      }
    }
    tasks.push_back({nullptr, nullptr, 0, 0, nullptr, 0, i, 0, 0, 3});
  }
  at::parallel_for(0, static_cast<int64_t>(tasks.size()), 1, [&](int64_t begin, int64_t end) {
    for (int64_t k = begin; k < end; ++k) {
      const Task& t = tasks[k];
      if (t.kind <= 1) {
        tn_sum(t.a, t.lda, t.b, t.ldb, t.c, t.ldc, n, t.p0, t.p1, t.q, t.kind == 1);
      } else if (t.kind == 2) {
        column_sums(t.b, t.ldb, t.c, n, t.q);
      } else {  // ActNorm: g_loc = sum_r gu scale, g_scale = sum_r gu (x + loc) + sum_r gld / scale
        const FlowBlockWeights<T>& blk = blocks[t.p0];
        const BlockState<T>& st = states[t.p0];
        T *g_loc = grads[t.p0].loc, *g_scale = grads[t.p0].scale;
        std::fill_n(g_loc, d, T(0));
        std::fill_n(g_scale, d, T(0));
        for (int64_t r = 0; r < n; ++r)
          for (int64_t j = 0; j < d; ++j) {
            const T xl = st.x[r * d + j] + blk.loc[j], gyv = st.gy[r * d + j];
            const T gu = blk.alpha != T(0) && blk.scale[j] * xl < 0 ? gyv * blk.alpha : gyv;
            g_loc[j] += gu * blk.scale[j];
            g_scale[j] += gu * xl;
          }
        for (int64_t j = 0; j < d; ++j) g_scale[j] += gld_sum / blk.scale[j];
      }
    }
  });
}

// One 8 x 8 tile: d[c * ldd + r] = s[r * lds + c]; with AVX2 for float as three rounds of
// shuffles in registers (the scalar loop ran at ~1 GB/s: strided single-element accesses).
template <typename T>
inline void transpose_tile8(const T* s, int64_t lds, T* d, int64_t ldd) {
#if defined(CPU_CAPABILITY_AVX2)
  if constexpr (std::is_same_v<T, float>) {
    __m256 r[8], t[8];
    for (int i = 0; i < 8; ++i) r[i] = _mm256_loadu_ps(s + i * lds);
    for (int i = 0; i < 8; i += 2) t[i] = _mm256_unpacklo_ps(r[i], r[i + 1]), t[i + 1] = _mm256_unpackhi_ps(r[i], r[i + 1]);
    for (int i = 0; i < 8; i += 4)
      for (int j = 0; j < 2; ++j) {
        r[i + j] = _mm256_shuffle_ps(t[i + j], t[i + j + 2], _MM_SHUFFLE(1, 0, 1, 0));
        r[i + j + 2] = _mm256_shuffle_ps(t[i + j], t[i + j + 2], _MM_SHUFFLE(3, 2, 3, 2));
      }
    // r[0..3] hold columns {0, 4}, {2, 6}, {1, 5}, {3, 7} of rows 0-3 (lo / hi lanes), r[4..7] of rows 4-7.
    const int col[4] = {0, 2, 1, 3};
    for (int k = 0; k < 4; ++k) {
      _mm256_storeu_ps(d + col[k] * ldd, _mm256_permute2f128_ps(r[k], r[k + 4], 0x20));
      _mm256_storeu_ps(d + (col[k] + 4) * ldd, _mm256_permute2f128_ps(r[k], r[k + 4], 0x31));
    }
    return;
  }
#endif
  for (int c = 0; c < 8; ++c)
    for (int r = 0; r < 8; ++r) d[c * ldd + r] = s[r * lds + c];
}

// dst = src^T for each of `count` matrices (Table::transpose_many): 8 x 8 tiles, then the edges.
template <typename T>
void transpose_many(const T* const* src, T* const* dst, const int64_t* rows, const int64_t* cols, int64_t count) {
  at::parallel_for(0, count, 1, [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) {
      const int64_t m = rows[i], n = cols[i], m8 = m / 8 * 8, n8 = n / 8 * 8;
      const T* s = src[i];
      T* d = dst[i];
      for (int64_t r = 0; r < m8; r += 8)
        for (int64_t c = 0; c < n8; c += 8) transpose_tile8(s + r * n + c, n, d + c * m + r, m);
      for (int64_t r = 0; r < m; ++r)
        for (int64_t c = r < m8 ? n8 : 0; c < n; ++c) d[c * m + r] = s[r * n + c];
    }
  });
}

inline int parallel_threads() {
  std::atomic<int> seen{0};
  at::parallel_for(0, 1 << 16, 1, [&](int64_t, int64_t) { seen.fetch_or(1 << std::min(at::get_thread_num(), 30)); });
  return __builtin_popcount(seen.load());
}

template <typename T>
Table<T> make_table() {
  return {&coupling_forward<T>, &coupling_backward<T>, &coupling_inverse<T>, &adam<T>, &adam_many<T>,
          &sum_squares_many<T>, &matmul_nt<T>, &matmul_nn<T>,
          &matmul_tn<T>, &subnet_pair_forward<T>, &subnet_pair_backward<T>,
          &norm_act_forward<T>, &norm_act_backward<T>, &norm_act_inverse<T>, &flow_inverse<T>, &flow_forward<T>,
          &flow_backward<T>, &transpose_many<T>, &parallel_threads,
          static_cast<int>(at::vec::Vectorized<T>::size())};
}

}  // namespace net2net::kernels::cpu::NET2NET_KERNEL_NS
