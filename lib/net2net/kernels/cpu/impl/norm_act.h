// ActNorm then the invertible LeakyReLU of a flow block (Table::norm_act_*; shared with the flow kernels).
#pragma once
#include "net2net/kernels/cpu/impl/common.h"

namespace net2net::kernels::cpu::NET2NET_KERNEL_NS {

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

// Its backward over rows [0, n) (row stride d), the one implementation that norm_act_backward
// and the flow's backward both call: gu = gy f'(u), u = scale (x + loc), f the LeakyReLU of slope
// alpha (alpha 0: none, f' = 1). kGx: gx = gu scale. kSums: g_loc[j] = sum_r gu scale and
// g_scale[j] = sum_r gu (x + loc), zeroed first and summed on this thread over the rows in order
// (d is small: the flow's width); the log-det's share, sum_r gld / scale, is the caller's. The
// two flags are compile-time so that each instance keeps its own arithmetic (a product that is
// only added is contracted into an FMA where the ISA has one).
template <typename T, bool kGx, bool kSums>
inline void norm_act_backward_rows(const T* x, const T* loc, const T* scale, T alpha, const T* gy, T* gx, T* g_loc,
                                   T* g_scale, int64_t n, int64_t d) {
  using Vec = at::vec::Vectorized<T>;
  const Vec zero(T(0)), va(alpha);
  const bool act = alpha != T(0);
  if constexpr (kSums) {
    std::fill_n(g_loc, d, T(0));
    std::fill_n(g_scale, d, T(0));
  }
  for (int64_t r = 0; r < n; ++r) {
    const T *xr = x + r * d, *gyr = gy + r * d;
    int64_t j = 0;
    for (; j + Vec::size() <= d; j += Vec::size()) {
      const Vec sc = Vec::loadu(scale + j), xl = Vec::loadu(xr + j) + Vec::loadu(loc + j), g = Vec::loadu(gyr + j);
      const Vec gu = act ? Vec::blendv(g, g * va, sc * xl < zero) : g;
      if constexpr (kGx) (gu * sc).store(gx + r * d + j);
      if constexpr (kSums) {
        (Vec::loadu(g_loc + j) + gu * sc).store(g_loc + j);
        (Vec::loadu(g_scale + j) + gu * xl).store(g_scale + j);
      }
    }
    for (; j < d; ++j) {
      const T xl = xr[j] + loc[j];
      const T gu = act && scale[j] * xl < 0 ? gyr[j] * alpha : gyr[j];
      if constexpr (kGx) gx[r * d + j] = gu * scale[j];
      if constexpr (kSums) {
        g_loc[j] += gu * scale[j];
        g_scale[j] += gu * xl;
      }
    }
  }
}

// Table::norm_act_backward: gx and both column sums.
template <typename T>
void norm_act_backward(const T* x, const T* loc, const T* scale, T alpha, const T* gy, T* gx, T* g_loc, T* g_scale,
                       int64_t n, int64_t d) {
  norm_act_backward_rows<T, true, true>(x, loc, scale, alpha, gy, gx, g_loc, g_scale, n, d);
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

}  // namespace net2net::kernels::cpu::NET2NET_KERNEL_NS
