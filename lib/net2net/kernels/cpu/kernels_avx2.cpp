// The kernels with AVX2 + FMA: this file is compiled with -mavx2 -mfma and ATen's
// CPU_CAPABILITY=AVX2 (Vectorized<float> of 8 lanes, SLEEF exp), and only called on CPUs that
// report both (kernels.cpp).
#define NET2NET_KERNEL_NS avx2
#include "net2net/kernels/cpu/kernels_impl.h"
#include "net2net/kernels/cpu/variants.h"

namespace net2net::kernels::cpu {
Table<float> avx2_f32() { return avx2::make_table<float>(); }
Table<double> avx2_f64() { return avx2::make_table<double>(); }
}  // namespace net2net::kernels::cpu
