// What every family of the CPU kernels' bodies shares. These headers (cpu/impl/) are included
// only through kernels_impl.h, once by each per-ISA file (kernels_default.cpp, kernels_avx2.cpp),
// each with its own NET2NET_KERNEL_NS and compile flags: ATen's Vectorized<T> then has that
// variant's width (CPU_CAPABILITY), and everything lands in that variant's namespace. Never
// include them anywhere else.
#pragma once
#ifndef NET2NET_KERNEL_NS
#error "cpu/impl/ headers are included by kernels_default.cpp / kernels_avx2.cpp only (they define NET2NET_KERNEL_NS)"
#endif
#include <ATen/Parallel.h>
#include <ATen/cpu/vec/vec.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdint>
#include <type_traits>
#include <vector>

#include "net2net/kernels/cpu/kernels.h"

namespace net2net::kernels::cpu::NET2NET_KERNEL_NS {

// Rows per parallel task: about 16k elements each.
inline int64_t row_grain(int64_t d) { return std::max<int64_t>(1, 16384 / std::max<int64_t>(d, 1)); }

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

}  // namespace net2net::kernels::cpu::NET2NET_KERNEL_NS
