// Raw-pointer CUDA launchers of the fused affine coupling (affine_coupling.cu). Row-major
// [n, d] inputs on the device; one block per row. Built when a CUDA toolkit is found; called from
// torch tensors only where LibTorch has CUDA.
#pragma once
#include <cstdint>

namespace net2net::kernels::cuda {

// y = x * exp(s) + t; ld[r] = sum_j s[r, j].
void affine_forward_f32(const float* x, const float* s, const float* t, float* y, float* ld, int64_t n, int64_t d, void* stream);
void affine_forward_f64(const double* x, const double* s, const double* t, double* y, double* ld, int64_t n, int64_t d,
                        void* stream);
// gx = gy * exp(s); gs = gx * x + gld[r] (gld may be null).
void affine_backward_f32(const float* x, const float* s, const float* gy, const float* gld, float* gx, float* gs, int64_t n,
                         int64_t d, void* stream);
void affine_backward_f64(const double* x, const double* s, const double* gy, const double* gld, double* gx, double* gs,
                         int64_t n, int64_t d, void* stream);
// x = (y - t) * exp(-s).
void affine_inverse_f32(const float* y, const float* s, const float* t, float* x, int64_t n, int64_t d, void* stream);

}  // namespace net2net::kernels::cuda
