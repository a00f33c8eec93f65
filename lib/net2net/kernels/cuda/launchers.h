// Raw-pointer launchers of the CUDA kernels (affine_coupling.cu, norm_activation.cu): row-major
// [n, d] arrays on the device, float or double, queued on `stream` (a cudaStream_t; null: the
// default stream). They check nothing and return at once; kernels/cuda/ops.cpp calls them from
// torch tensors and checks the launch. Compiled wherever a CUDA toolkit is found, so they stay
// buildable without a GPU.
#pragma once
#include <cstdint>

namespace net2net::kernels::cuda {

// y = x * exp(s) + t; ld[r] = sum_j s[r, j].
template <typename T>
void affine_forward(const T* x, const T* s, const T* t, T* y, T* ld, int64_t n, int64_t d, void* stream);
// gx = gy * exp(s); gs = gx * x + gld[r] (gld may be null: no log-det gradient).
template <typename T>
void affine_backward(const T* x, const T* s, const T* gy, const T* gld, T* gx, T* gs, int64_t n, int64_t d, void* stream);
// x = (y - t) * exp(-s).
template <typename T>
void affine_inverse(const T* y, const T* s, const T* t, T* x, int64_t n, int64_t d, void* stream);

// ActNorm then the invertible LeakyReLU (kernels/norm_activation.h): u = scale (x + loc),
// y = u < 0 ? alpha u : u, negatives[r] = the number of u < 0 in row r. alpha 0 means no
// LeakyReLU (y = u, negatives 0), as in the CPU kernels.
template <typename T>
void norm_act_forward(const T* x, const T* loc, const T* scale, T alpha, T* y, T* negatives, int64_t n, int64_t d,
                      void* stream);
// gu = gy (alpha where u < 0), gx = gu scale, g_loc[j] = sum_r gu scale, g_scale[j] = sum_r gu (x + loc).
// The column sums are reduced in a fixed order (deterministic).
template <typename T>
void norm_act_backward(const T* x, const T* loc, const T* scale, T alpha, const T* gy, T* gx, T* g_loc, T* g_scale,
                       int64_t n, int64_t d, void* stream);
// x = (y < 0 ? y / alpha : y) / scale - loc.
template <typename T>
void norm_act_inverse(const T* y, const T* loc, const T* scale, T alpha, T* x, int64_t n, int64_t d, void* stream);

}  // namespace net2net::kernels::cuda
