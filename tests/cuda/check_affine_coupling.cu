// GPU check of the fused affine coupling kernels against a CPU reference (double precision sums).
// Needs no LibTorch: raw device buffers. Built by scripts/gpu_check.sh on a machine with a GPU;
// prints one JSON line per case and exits non-zero on a mismatch.
#include <cuda_runtime.h>

#include <cmath>
#include <cstdio>
#include <random>
#include <vector>

#include "net2net/kernels/affine_coupling_cuda.h"

namespace k = net2net::kernels::cuda;

#define CHECK(x)                                                                     \
  do {                                                                               \
    cudaError_t e = (x);                                                             \
    if (e != cudaSuccess) {                                                          \
      std::fprintf(stderr, "%s:%d: %s\n", __FILE__, __LINE__, cudaGetErrorString(e)); \
      return 2;                                                                      \
    }                                                                                \
  } while (0)

template <typename T>
T* to_device(const std::vector<T>& h) {
  T* d = nullptr;
  cudaMalloc(&d, h.size() * sizeof(T));
  cudaMemcpy(d, h.data(), h.size() * sizeof(T), cudaMemcpyHostToDevice);
  return d;
}
template <typename T>
std::vector<T> to_host(const T* d, size_t n) {
  std::vector<T> h(n);
  cudaMemcpy(h.data(), d, n * sizeof(T), cudaMemcpyDeviceToHost);
  return h;
}

template <typename T>
int run_case(int64_t n, int64_t d, double tol, const char* type) {
  std::mt19937_64 rng(n * 131 + d);
  std::normal_distribution<double> N(0.0, 1.0);
  size_t m = n * d;
  std::vector<T> x(m), s(m), t(m), gy(m), gld(n);
  for (size_t i = 0; i < m; ++i) x[i] = N(rng), s[i] = 0.7 * N(rng), t[i] = N(rng), gy[i] = N(rng);
  for (int64_t r = 0; r < n; ++r) gld[r] = N(rng);
  T *dx = to_device(x), *ds = to_device(s), *dt = to_device(t), *dgy = to_device(gy), *dgld = to_device(gld);
  T *dy, *dld, *dgx, *dgs;
  CHECK(cudaMalloc(&dy, m * sizeof(T)));
  CHECK(cudaMalloc(&dld, n * sizeof(T)));
  CHECK(cudaMalloc(&dgx, m * sizeof(T)));
  CHECK(cudaMalloc(&dgs, m * sizeof(T)));
  if constexpr (sizeof(T) == 4) {
    k::affine_forward_f32(dx, ds, dt, dy, dld, n, d, nullptr);
    k::affine_backward_f32(dx, ds, dgy, dgld, dgx, dgs, n, d, nullptr);
  } else {
    k::affine_forward_f64(dx, ds, dt, dy, dld, n, d, nullptr);
    k::affine_backward_f64(dx, ds, dgy, dgld, dgx, dgs, n, d, nullptr);
  }
  CHECK(cudaDeviceSynchronize());
  auto y = to_host(dy, m), ld = to_host(dld, n), gx = to_host(dgx, m), gs = to_host(dgs, m);
  double worst = 0;
  for (int64_t r = 0; r < n; ++r) {
    double sum = 0;
    for (int64_t j = 0; j < d; ++j) {
      size_t i = r * d + j;
      double e = std::exp(double(s[i]));
      double ry = double(x[i]) * e + double(t[i]), rgx = double(gy[i]) * e, rgs = rgx * double(x[i]) + double(gld[r]);
      worst = std::fmax(worst, std::fabs(y[i] - ry) / (1 + std::fabs(ry)));
      worst = std::fmax(worst, std::fabs(gx[i] - rgx) / (1 + std::fabs(rgx)));
      worst = std::fmax(worst, std::fabs(gs[i] - rgs) / (1 + std::fabs(rgs)));
      sum += s[i];
    }
    worst = std::fmax(worst, std::fabs(ld[r] - sum) / (1 + std::fabs(sum)));
  }
  std::printf("{\"type\": \"%s\", \"n\": %lld, \"d\": %lld, \"max_rel_err\": %.3e, \"ok\": %s}\n", type, (long long)n,
              (long long)d, worst, worst < tol ? "true" : "false");
  for (T* p : {dx, ds, dt, dgy, dgld, dy, dld, dgx, dgs}) cudaFree(p);
  return worst < tol ? 0 : 1;
}

int main() {
  int bad = 0;
  for (auto [n, d] : {std::pair<int64_t, int64_t>{1, 1}, {7, 33}, {16, 134}, {1000, 512}, {3, 5000}}) {
    bad += run_case<float>(n, d, 1e-5, "float32");
    bad += run_case<double>(n, d, 1e-12, "float64");
  }
  return bad == 0 ? 0 : 1;
}
