// The tables each ISA variant exports (kernels_default.cpp, kernels_avx2.cpp); only kernels.cpp
// chooses among them.
#pragma once
#include "net2net/kernels/cpu/kernels.h"

namespace net2net::kernels::cpu {
Table<float> baseline_f32();
Table<double> baseline_f64();
Table<float> avx2_f32();  // defined only when NET2NET_HAVE_AVX2_KERNELS
Table<double> avx2_f64();
}  // namespace net2net::kernels::cpu
