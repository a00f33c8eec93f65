// ActNorm + invertible LeakyReLU kernels for CUDA (sm_80, sm_90). Forward and inverse: one block
// per row (the forward counts the row's negatives with a block reduction). Backward: a block of
// 32 columns x 8 row lanes; each lane walks its rows, then the 8 partial column sums are added in
// shared memory in a fixed order, so the parameter gradients are deterministic.
#include <cuda_runtime.h>

#include "net2net/kernels/cuda/launchers.h"
#include "net2net/kernels/cuda/reduce.cuh"

namespace net2net::kernels::cuda {
namespace {

constexpr int kCols = 32, kRowLanes = 8;

template <typename T>
__global__ void forward_kernel(const T* __restrict__ x, const T* __restrict__ loc, const T* __restrict__ scale, T alpha,
                               T* __restrict__ y, T* __restrict__ negatives, int64_t d) {
  const int64_t base = static_cast<int64_t>(blockIdx.x) * d;
  const bool act = alpha != T(0);
  T count = 0;
  for (int64_t j = threadIdx.x; j < d; j += blockDim.x) {
    const T u = scale[j] * (x[base + j] + loc[j]);
    const bool neg = act && u < T(0);
    y[base + j] = neg ? u * alpha : u;
    count += neg ? T(1) : T(0);
  }
  count = block_sum(count);
  if (threadIdx.x == 0) negatives[blockIdx.x] = count;
}

template <typename T>
__global__ void backward_kernel(const T* __restrict__ x, const T* __restrict__ loc, const T* __restrict__ scale, T alpha,
                                const T* __restrict__ gy, T* __restrict__ gx, T* __restrict__ g_loc,
                                T* __restrict__ g_scale, int64_t n, int64_t d) {
  __shared__ T part_loc[kRowLanes][kCols], part_scale[kRowLanes][kCols];
  const int64_t j = static_cast<int64_t>(blockIdx.x) * kCols + threadIdx.x;
  const bool act = alpha != T(0);
  T sum_loc = 0, sum_scale = 0;
  if (j < d) {
    const T sc = scale[j], lc = loc[j];
    for (int64_t r = threadIdx.y; r < n; r += kRowLanes) {
      const T xl = x[r * d + j] + lc, g = gy[r * d + j];
      const T gu = act && sc * xl < T(0) ? g * alpha : g;
      gx[r * d + j] = gu * sc;
      sum_loc += gu * sc;
      sum_scale += gu * xl;
    }
  }
  part_loc[threadIdx.y][threadIdx.x] = sum_loc;
  part_scale[threadIdx.y][threadIdx.x] = sum_scale;
  __syncthreads();
  if (threadIdx.y == 0 && j < d) {
    T a = 0, b = 0;
    for (int k = 0; k < kRowLanes; ++k) a += part_loc[k][threadIdx.x], b += part_scale[k][threadIdx.x];
    g_loc[j] = a;
    g_scale[j] = b;
  }
}

template <typename T>
__global__ void inverse_kernel(const T* __restrict__ y, const T* __restrict__ loc, const T* __restrict__ scale, T alpha,
                               T* __restrict__ x, int64_t d) {
  const int64_t base = static_cast<int64_t>(blockIdx.x) * d;
  const bool act = alpha != T(0);
  for (int64_t j = threadIdx.x; j < d; j += blockDim.x) {
    const T v = y[base + j];
    x[base + j] = (act && v < T(0) ? v / alpha : v) / scale[j] - loc[j];
  }
}
}  // namespace

template <typename T>
void norm_act_forward(const T* x, const T* loc, const T* scale, T alpha, T* y, T* negatives, int64_t n, int64_t d, void* st) {
  if (n > 0) forward_kernel<T><<<static_cast<unsigned>(n), kThreads, 0, as_stream(st)>>>(x, loc, scale, alpha, y, negatives, d);
}
template <typename T>
void norm_act_backward(const T* x, const T* loc, const T* scale, T alpha, const T* gy, T* gx, T* g_loc, T* g_scale,
                       int64_t n, int64_t d, void* st) {
  if (d <= 0) return;
  const dim3 block(kCols, kRowLanes), grid(static_cast<unsigned>((d + kCols - 1) / kCols));
  backward_kernel<T><<<grid, block, 0, as_stream(st)>>>(x, loc, scale, alpha, gy, gx, g_loc, g_scale, n, d);
}
template <typename T>
void norm_act_inverse(const T* y, const T* loc, const T* scale, T alpha, T* x, int64_t n, int64_t d, void* st) {
  if (n > 0) inverse_kernel<T><<<static_cast<unsigned>(n), kThreads, 0, as_stream(st)>>>(y, loc, scale, alpha, x, d);
}

#define NET2NET_INSTANTIATE(T)                                                                                     \
  template void norm_act_forward<T>(const T*, const T*, const T*, T, T*, T*, int64_t, int64_t, void*);            \
  template void norm_act_backward<T>(const T*, const T*, const T*, T, const T*, T*, T*, T*, int64_t, int64_t, void*); \
  template void norm_act_inverse<T>(const T*, const T*, const T*, T, T*, int64_t, int64_t, void*);
NET2NET_INSTANTIATE(float)
NET2NET_INSTANTIATE(double)
#undef NET2NET_INSTANTIATE

}  // namespace net2net::kernels::cuda
