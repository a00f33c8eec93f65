// c = a^T b, the weight gradient of a short batch (Table::matmul_tn), and tn_sum: its blocks over
// a range of rows of c (the flow backward's weight gradients).
#pragma once
#include "net2net/kernels/cpu/impl/common.h"

namespace net2net::kernels::cpu::NET2NET_KERNEL_NS {

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

}  // namespace net2net::kernels::cpu::NET2NET_KERNEL_NS
