// c = bias + a b for a short batch against a large b (Table::matmul_nn), and dense_rows: the same
// against a small W read from cache (the subnet and flow kernels).
#pragma once
#include "net2net/kernels/cpu/impl/common.h"

namespace net2net::kernels::cpu::NET2NET_KERNEL_NS {

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

}  // namespace net2net::kernels::cpu::NET2NET_KERNEL_NS
