// Bodies of the raw CPU kernels (cpu/kernels.h), one header per family in cpu/impl/, and the
// table that exports them. Included once per ISA variant by kernels_default.cpp and
// kernels_avx2.cpp, each with its own NET2NET_KERNEL_NS and compile flags (see impl/common.h).
#pragma once
#include <cstddef>

#include "net2net/kernels/cpu/impl/adam.h"
#include "net2net/kernels/cpu/impl/coupling.h"
#include "net2net/kernels/cpu/impl/flow.h"
#include "net2net/kernels/cpu/impl/gemm_nn.h"
#include "net2net/kernels/cpu/impl/gemm_nt.h"
#include "net2net/kernels/cpu/impl/gemm_tn.h"
#include "net2net/kernels/cpu/impl/norm_act.h"
#include "net2net/kernels/cpu/impl/subnet.h"
#include "net2net/kernels/cpu/impl/transpose.h"

namespace net2net::kernels::cpu::NET2NET_KERNEL_NS {

// Threads that this variant's parallel loops actually use (T: only so that every entry of the
// table is filled the same way).
template <typename T>
int parallel_threads() {
  std::atomic<int> seen{0};
  at::parallel_for(0, 1 << 16, 1, [&](int64_t, int64_t) { seen.fetch_or(1 << std::min(at::get_thread_num(), 30)); });
  return __builtin_popcount(seen.load());
}

// Every entry by name (NET2NET_CPU_TABLE_ENTRIES, kernels.h): the order of Table's fields does not matter.
template <typename T>
Table<T> make_table() {
  Table<T> t{};
#define NET2NET_ASSIGN(name) t.name = &name<T>;
  NET2NET_CPU_TABLE_ENTRIES(NET2NET_ASSIGN)
#undef NET2NET_ASSIGN
  t.vector_width = static_cast<int>(at::vec::Vectorized<T>::size());
  return t;
}

}  // namespace net2net::kernels::cpu::NET2NET_KERNEL_NS
