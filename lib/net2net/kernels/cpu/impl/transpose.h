// dst = src^T for many small matrices (Table::transpose_many): 8 x 8 tiles in registers.
#pragma once
#include "net2net/kernels/cpu/impl/common.h"

namespace net2net::kernels::cpu::NET2NET_KERNEL_NS {

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

}  // namespace net2net::kernels::cpu::NET2NET_KERNEL_NS
