// Picks the lane kernels for this CPU (libess/lane_kernels.h).
#include "libess/lane_kernels.h"

#include <cstdlib>
#include <cstring>

namespace ess::lanes {

namespace avx512 {
extern const Kernels kKernels;
}
namespace avx2 {
extern const Kernels kKernels;
}
namespace sse2 {
extern const Kernels kKernels;
}

const Kernels* kernels_for(const char* isa) {
  if (std::strcmp(isa, "avx512") == 0)
    return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512dq") ? &avx512::kKernels : nullptr;
  if (std::strcmp(isa, "avx2") == 0) return __builtin_cpu_supports("avx2") ? &avx2::kKernels : nullptr;
  if (std::strcmp(isa, "sse2") == 0) return &sse2::kKernels;
  return nullptr;
}

const Kernels& kernels() {
  static const Kernels* chosen = [] {
    const char* forced = std::getenv("ESS_LANES_ISA");
    if (forced)
      if (const Kernels* k = kernels_for(forced)) return k;
    for (const char* isa : {"avx512", "avx2"})
      if (const Kernels* k = kernels_for(isa)) return k;
    return &sse2::kKernels;
  }();
  return *chosen;
}

}  // namespace ess::lanes
