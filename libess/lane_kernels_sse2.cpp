// Lane kernels compiled for SSE2 (see libess/lane_kernels_impl.h).
#include <emmintrin.h>

#include "libess/lane_kernels.h"

#pragma GCC optimize("fp-contract=off")
// 64-byte vectors pass between the inlined helpers of this file only; their ABI does not matter.
#pragma GCC diagnostic ignored "-Wpsabi"

namespace ess::lanes::sse2 {
#define ESS_LANE_WIDTH 2
#define ESS_LANE_ISA_NAME "sse2"
#include "libess/lane_kernels_impl.h"
}  // namespace ess::lanes::sse2
