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

#include "net2net/kernels/cpu/kernels.h"

namespace net2net::kernels::cpu::NET2NET_KERNEL_NS {

// Rows per parallel task: about 16k elements each.
inline int64_t row_grain(int64_t d) { return std::max<int64_t>(1, 16384 / std::max<int64_t>(d, 1)); }

template <typename T>
void coupling_forward(const T* x, const T* s, const T* t, T* y, T* ld, int64_t n, int64_t d) {
  using Vec = at::vec::Vectorized<T>;
  at::parallel_for(0, n, row_grain(d), [&](int64_t begin, int64_t end) {
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

template <typename T>
void coupling_backward(const T* x, const T* s, const T* gy, const T* gld, T* gx, T* gs, int64_t n, int64_t d) {
  using Vec = at::vec::Vectorized<T>;
  at::parallel_for(0, n, row_grain(d), [&](int64_t begin, int64_t end) {
    for (int64_t r = begin; r < end; ++r) {
      const T *xr = x + r * d, *sr = s + r * d, *gyr = gy + r * d;
      T *gxr = gx + r * d, *gsr = gs + r * d;
      const T g = gld ? gld[r] : T(0);
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
  });
}

template <typename T>
void coupling_inverse(const T* y, const T* s, const T* t, T* x, int64_t n, int64_t d) {
  using Vec = at::vec::Vectorized<T>;
  at::parallel_for(0, n, row_grain(d), [&](int64_t begin, int64_t end) {
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

// Torch's order of operations, element by element:
//   g += wd p; m = m b1 + (1 - b1) g; v = v b2 + (1 - b2) g^2; vmax = max(vmax, v);
//   p -= (lr / bc1) m / (sqrt(vmax) / sqrt(bc2) + eps)
template <typename T>
void adam(T* p, const T* g, T* m, T* v, T* vmax, int64_t n, double b1, double b2, double eps, double wd,
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

// One MR x NR block of c = a b^T: MR rows of a against NR rows of b, each of the MR * NR dot
// products kept in its own vector register (4 x 3 = 12 accumulators + 3 b + 1 a = 16 AVX2
// registers), so every load feeds several FMAs.
template <typename T, int MR, int NR>
inline void nt_block(const T* a, const T* b, T* c, int64_t len, int64_t ldc) {
  using Vec = at::vec::Vectorized<T>;
  Vec acc[MR][NR];
  for (int r = 0; r < MR; ++r)
    for (int q = 0; q < NR; ++q) acc[r][q] = Vec(T(0));
  int64_t l = 0;
  for (; l + Vec::size() <= len; l += Vec::size()) {
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
inline void nt_rows(const T* a, const T* b, T* c, int nr, int64_t len, int64_t ldc) {
  if (nr == 3) nt_block<T, MR, 3>(a, b, c, len, ldc);
  else if (nr == 2) nt_block<T, MR, 2>(a, b, c, len, ldc);
  else nt_block<T, MR, 1>(a, b, c, len, ldc);
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
        switch (std::min<int64_t>(MR, m - r0)) {
          case 4: nt_rows<T, 4>(ar, br, cr, nr, len, n); break;
          case 3: nt_rows<T, 3>(ar, br, cr, nr, len, n); break;
          case 2: nt_rows<T, 2>(ar, br, cr, nr, len, n); break;
          default: nt_rows<T, 1>(ar, br, cr, nr, len, n); break;
        }
      }
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
  return {&coupling_forward<T>, &coupling_backward<T>, &coupling_inverse<T>, &adam<T>, &matmul_nt<T>, &parallel_threads};
}

}  // namespace net2net::kernels::cpu::NET2NET_KERNEL_NS
