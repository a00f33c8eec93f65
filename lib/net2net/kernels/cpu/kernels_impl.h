// Bodies of the raw CPU kernels (cpu/kernels.h), included once per ISA variant by
// kernels_default.cpp and kernels_avx2.cpp, each with its own NET2NET_KERNEL_NS and compile flags:
// ATen's Vectorized<T> then has that variant's width (CPU_CAPABILITY), parallel over rows or
// chunks with at::parallel_for.
#pragma once
#include <ATen/Parallel.h>
#include <ATen/cpu/vec/vec.h>

#include <algorithm>
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

template <typename T>
Table<T> make_table() {
  return {&coupling_forward<T>, &coupling_backward<T>, &coupling_inverse<T>, &adam<T>};
}

}  // namespace net2net::kernels::cpu::NET2NET_KERNEL_NS
