// Fused affine coupling kernels for CUDA (sm_80, sm_90). One block per row: threads stride over
// the columns; the log-det is a block reduction (warp shuffles, then shared memory).
#include <cuda_runtime.h>

#include "net2net/kernels/cuda/launchers.h"
#include "net2net/kernels/cuda/reduce.cuh"

namespace net2net::kernels::cuda {
namespace {

// expf, not the intrinsic __expf (2 + 1.16 |s| ulp): the kernel is memory-bound, and round trips
// and the CPU comparison keep float32's accuracy.
__device__ inline float dexp(float v) { return expf(v); }
__device__ inline double dexp(double v) { return exp(v); }

template <typename T>
__global__ void forward_kernel(const T* __restrict__ x, const T* __restrict__ s, const T* __restrict__ t, T* __restrict__ y,
                               T* __restrict__ ld, int64_t d) {
  const int64_t row = blockIdx.x, base = row * d;
  T acc = 0;
  for (int64_t j = threadIdx.x; j < d; j += blockDim.x) {
    const T sv = s[base + j];
    y[base + j] = x[base + j] * dexp(sv) + t[base + j];
    acc += sv;
  }
  acc = block_sum(acc);
  if (threadIdx.x == 0) ld[row] = acc;
}

template <typename T>
__global__ void backward_kernel(const T* __restrict__ x, const T* __restrict__ s, const T* __restrict__ gy,
                                const T* __restrict__ gld, T* __restrict__ gx, T* __restrict__ gs, int64_t d) {
  const int64_t row = blockIdx.x, base = row * d;
  const T g = gld ? gld[row] : T(0);
  for (int64_t j = threadIdx.x; j < d; j += blockDim.x) {
    const T gxv = gy[base + j] * dexp(s[base + j]);
    gx[base + j] = gxv;
    gs[base + j] = gxv * x[base + j] + g;
  }
}

template <typename T>
__global__ void inverse_kernel(const T* __restrict__ y, const T* __restrict__ s, const T* __restrict__ t, T* __restrict__ x,
                               int64_t d) {
  const int64_t base = static_cast<int64_t>(blockIdx.x) * d;
  for (int64_t j = threadIdx.x; j < d; j += blockDim.x) x[base + j] = (y[base + j] - t[base + j]) * dexp(-s[base + j]);
}
}  // namespace

template <typename T>
void affine_forward(const T* x, const T* s, const T* t, T* y, T* ld, int64_t n, int64_t d, void* st) {
  if (n > 0) forward_kernel<T><<<static_cast<unsigned>(n), kThreads, 0, as_stream(st)>>>(x, s, t, y, ld, d);
}
template <typename T>
void affine_backward(const T* x, const T* s, const T* gy, const T* gld, T* gx, T* gs, int64_t n, int64_t d, void* st) {
  if (n > 0) backward_kernel<T><<<static_cast<unsigned>(n), kThreads, 0, as_stream(st)>>>(x, s, gy, gld, gx, gs, d);
}
template <typename T>
void affine_inverse(const T* y, const T* s, const T* t, T* x, int64_t n, int64_t d, void* st) {
  if (n > 0) inverse_kernel<T><<<static_cast<unsigned>(n), kThreads, 0, as_stream(st)>>>(y, s, t, x, d);
}

#define NET2NET_INSTANTIATE(T)                                                                                    \
  template void affine_forward<T>(const T*, const T*, const T*, T*, T*, int64_t, int64_t, void*);                \
  template void affine_backward<T>(const T*, const T*, const T*, const T*, T*, T*, int64_t, int64_t, void*);     \
  template void affine_inverse<T>(const T*, const T*, const T*, T*, int64_t, int64_t, void*);
NET2NET_INSTANTIATE(float)
NET2NET_INSTANTIATE(double)
#undef NET2NET_INSTANTIATE

}  // namespace net2net::kernels::cuda
