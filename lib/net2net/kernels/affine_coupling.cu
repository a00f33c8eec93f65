// Fused affine coupling kernels for CUDA (sm_80, sm_90). One block per row: threads stride over
// the columns; the log-det is a block reduction (warp shuffles, then shared memory).
#include <cuda_runtime.h>

#include "net2net/kernels/affine_coupling_cuda.h"

namespace net2net::kernels::cuda {
namespace {

constexpr int kThreads = 256;

__device__ inline float dexp(float v) { return __expf(v); }
__device__ inline double dexp(double v) { return exp(v); }

template <typename T>
__device__ T block_sum(T v) {
  __shared__ T warp_sums[kThreads / 32];
  for (int off = 16; off > 0; off >>= 1) v += __shfl_down_sync(0xffffffffu, v, off);
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
  if (lane == 0) warp_sums[warp] = v;
  __syncthreads();
  v = threadIdx.x < kThreads / 32 ? warp_sums[threadIdx.x] : T(0);
  if (warp == 0)
    for (int off = 16; off > 0; off >>= 1) v += __shfl_down_sync(0xffffffffu, v, off);
  return v;
}

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

cudaStream_t as_stream(void* s) { return static_cast<cudaStream_t>(s); }
}  // namespace

void affine_forward_f32(const float* x, const float* s, const float* t, float* y, float* ld, int64_t n, int64_t d, void* st) {
  if (n > 0) forward_kernel<float><<<static_cast<unsigned>(n), kThreads, 0, as_stream(st)>>>(x, s, t, y, ld, d);
}
void affine_forward_f64(const double* x, const double* s, const double* t, double* y, double* ld, int64_t n, int64_t d,
                        void* st) {
  if (n > 0) forward_kernel<double><<<static_cast<unsigned>(n), kThreads, 0, as_stream(st)>>>(x, s, t, y, ld, d);
}
void affine_backward_f32(const float* x, const float* s, const float* gy, const float* gld, float* gx, float* gs, int64_t n,
                         int64_t d, void* st) {
  if (n > 0) backward_kernel<float><<<static_cast<unsigned>(n), kThreads, 0, as_stream(st)>>>(x, s, gy, gld, gx, gs, d);
}
void affine_backward_f64(const double* x, const double* s, const double* gy, const double* gld, double* gx, double* gs,
                         int64_t n, int64_t d, void* st) {
  if (n > 0) backward_kernel<double><<<static_cast<unsigned>(n), kThreads, 0, as_stream(st)>>>(x, s, gy, gld, gx, gs, d);
}
void affine_inverse_f32(const float* y, const float* s, const float* t, float* x, int64_t n, int64_t d, void* st) {
  if (n > 0) inverse_kernel<float><<<static_cast<unsigned>(n), kThreads, 0, as_stream(st)>>>(y, s, t, x, d);
}

}  // namespace net2net::kernels::cuda
