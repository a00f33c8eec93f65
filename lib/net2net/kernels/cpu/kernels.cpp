#include "net2net/kernels/cpu/kernels.h"

#include <cstdlib>
#include <mutex>

#include "net2net/kernels/cpu/variants.h"

namespace net2net::kernels::cpu {
namespace {

bool cpu_has_avx2() {
#if defined(NET2NET_HAVE_AVX2_KERNELS) && (defined(__GNUC__) || defined(__clang__))
  return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
#else
  return false;
#endif
}

struct Selected {
  std::string name;
  Table<float> f32;
  Table<double> f64;
};

Selected make(const std::string& name) {
#ifdef NET2NET_HAVE_AVX2_KERNELS
  if (name == "avx2") return {name, avx2_f32(), avx2_f64()};
#endif
  return {"default", baseline_f32(), baseline_f64()};
}

Selected& selected() {
  static Selected s = [] {
    const char* env = std::getenv("NET2NET_CPU_CAPABILITY");
    const bool want_default = env && std::string(env) == "default";
    return make(!want_default && cpu_has_avx2() ? "avx2" : "default");
  }();
  return s;
}

}  // namespace

template <>
const Table<float>& table<float>() {
  return selected().f32;
}
template <>
const Table<double>& table<double>() {
  return selected().f64;
}

std::string capability() { return selected().name; }

std::vector<std::string> available_capabilities() {
  std::vector<std::string> out = {"default"};
  if (cpu_has_avx2()) out.push_back("avx2");
  return out;
}

bool set_capability(const std::string& name) {
  for (const auto& c : available_capabilities())
    if (c == name) {
      selected() = make(name);
      return true;
    }
  return false;
}

}  // namespace net2net::kernels::cpu
