#include "net2net/kernels/cuda/ops.h"

#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>

#include "net2net/kernels/cuda/launchers.h"

#include <cstdint>
#include <limits>

namespace net2net::kernels::cuda {
using torch::Tensor;

namespace {
// Runs `launch(stream)` on the device of `t` and checks the launch.
template <typename Launch>
void on_device(const Tensor& t, Launch&& launch) {
  // The row kernels launch one block per row (grid.x is 32-bit).
  TORCH_CHECK(t.size(0) <= std::numeric_limits<int32_t>::max(), "net2net CUDA kernels: at most 2^31 - 1 rows, got ",
              t.size(0));
  const c10::cuda::CUDAGuard guard(t.device());
  launch(static_cast<void*>(at::cuda::getCurrentCUDAStream().stream()));
  C10_CUDA_KERNEL_LAUNCH_CHECK();
}
template <typename T>
const T* ptr(const Tensor& t) {
  return t.defined() ? t.data_ptr<T>() : nullptr;
}
}  // namespace

void coupling_forward(const Tensor& x, const Tensor& s, const Tensor& t, Tensor& y, Tensor& logdet) {
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "cuda_coupling_forward", [&] {
    on_device(x, [&](void* stream) {
      affine_forward<scalar_t>(ptr<scalar_t>(x), ptr<scalar_t>(s), ptr<scalar_t>(t), y.data_ptr<scalar_t>(),
                               logdet.data_ptr<scalar_t>(), x.size(0), x.size(1), stream);
    });
  });
}

void coupling_backward(const Tensor& x, const Tensor& s, const Tensor& gy, const Tensor& gld, Tensor& gx, Tensor& gs) {
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "cuda_coupling_backward", [&] {
    on_device(x, [&](void* stream) {
      affine_backward<scalar_t>(ptr<scalar_t>(x), ptr<scalar_t>(s), ptr<scalar_t>(gy), ptr<scalar_t>(gld),
                                gx.data_ptr<scalar_t>(), gs.data_ptr<scalar_t>(), x.size(0), x.size(1), stream);
    });
  });
}

void coupling_inverse(const Tensor& y, const Tensor& s, const Tensor& t, Tensor& x) {
  AT_DISPATCH_FLOATING_TYPES(y.scalar_type(), "cuda_coupling_inverse", [&] {
    on_device(y, [&](void* stream) {
      affine_inverse<scalar_t>(ptr<scalar_t>(y), ptr<scalar_t>(s), ptr<scalar_t>(t), x.data_ptr<scalar_t>(), y.size(0),
                               y.size(1), stream);
    });
  });
}

void norm_act_forward(const Tensor& x, const Tensor& loc, const Tensor& scale, double alpha, Tensor& y, Tensor& negatives) {
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "cuda_norm_act_forward", [&] {
    on_device(x, [&](void* stream) {
      cuda::norm_act_forward<scalar_t>(ptr<scalar_t>(x), ptr<scalar_t>(loc), ptr<scalar_t>(scale),
                                       static_cast<scalar_t>(alpha), y.data_ptr<scalar_t>(),
                                       negatives.data_ptr<scalar_t>(), x.size(0), x.size(1), stream);
    });
  });
}

void norm_act_backward(const Tensor& x, const Tensor& loc, const Tensor& scale, double alpha, const Tensor& gy, Tensor& gx,
                       Tensor& g_loc, Tensor& g_scale) {
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "cuda_norm_act_backward", [&] {
    on_device(x, [&](void* stream) {
      cuda::norm_act_backward<scalar_t>(ptr<scalar_t>(x), ptr<scalar_t>(loc), ptr<scalar_t>(scale),
                                        static_cast<scalar_t>(alpha), ptr<scalar_t>(gy), gx.data_ptr<scalar_t>(),
                                        g_loc.data_ptr<scalar_t>(), g_scale.data_ptr<scalar_t>(), x.size(0), x.size(1),
                                        stream);
    });
  });
}

void norm_act_inverse(const Tensor& y, const Tensor& loc, const Tensor& scale, double alpha, Tensor& x) {
  AT_DISPATCH_FLOATING_TYPES(y.scalar_type(), "cuda_norm_act_inverse", [&] {
    on_device(y, [&](void* stream) {
      cuda::norm_act_inverse<scalar_t>(ptr<scalar_t>(y), ptr<scalar_t>(loc), ptr<scalar_t>(scale),
                                       static_cast<scalar_t>(alpha), x.data_ptr<scalar_t>(), y.size(0), y.size(1), stream);
    });
  });
}

}  // namespace net2net::kernels::cuda
