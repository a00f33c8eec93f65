// The affine coupling y = x exp(s) + t: forward, backward, inverse, by rows (Table::coupling_*).
#pragma once
#include "net2net/kernels/cpu/impl/common.h"

namespace net2net::kernels::cpu::NET2NET_KERNEL_NS {

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

}  // namespace net2net::kernels::cpu::NET2NET_KERNEL_NS
