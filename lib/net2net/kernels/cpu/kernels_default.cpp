// The kernels for the baseline ISA (whatever the project is compiled for).
#define NET2NET_KERNEL_NS baseline
#include "net2net/kernels/cpu/kernels_impl.h"
#include "net2net/kernels/cpu/variants.h"

namespace net2net::kernels::cpu {
Table<float> baseline_f32() { return baseline::make_table<float>(); }
Table<double> baseline_f64() { return baseline::make_table<double>(); }
}  // namespace net2net::kernels::cpu
