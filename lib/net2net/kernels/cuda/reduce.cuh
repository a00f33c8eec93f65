// What the kernels share: the stream argument, and a block-wide sum for the row kernels (one block of kThreads threads per row): warp shuffles, then
// the warps' sums in shared memory. Every thread of the block must call it; thread 0 gets the sum.
#pragma once
#include <cuda_runtime.h>

namespace net2net::kernels::cuda {

constexpr int kThreads = 256;

// The launchers' stream argument (void* in launchers.h, so that C++ callers need no CUDA header).
inline cudaStream_t as_stream(void* s) { return static_cast<cudaStream_t>(s); }

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

}  // namespace net2net::kernels::cuda
