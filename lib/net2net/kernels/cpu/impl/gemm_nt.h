// c = a b^T for a short batch (Table::matmul_nt): register-blocked dot products.
#pragma once
#include "net2net/kernels/cpu/impl/common.h"

namespace net2net::kernels::cpu::NET2NET_KERNEL_NS {

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

}  // namespace net2net::kernels::cpu::NET2NET_KERNEL_NS
