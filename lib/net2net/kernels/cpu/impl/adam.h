// One Adam / AMSGrad step over one or many tensors, and sums of squares (Table::adam*, sum_squares_many).
#pragma once
#include "net2net/kernels/cpu/impl/common.h"

namespace net2net::kernels::cpu::NET2NET_KERNEL_NS {

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

}  // namespace net2net::kernels::cpu::NET2NET_KERNEL_NS
