// Lane kernels compiled for AVX2 (see libess/lane_kernels_impl.h).
#include <immintrin.h>

#include "libess/lane_kernels.h"

#pragma GCC target("avx2")
#pragma GCC optimize("fp-contract=off")
// 64-byte vectors pass between the inlined helpers of this file only; their ABI does not matter.
#pragma GCC diagnostic ignored "-Wpsabi"

namespace ess::lanes::avx2 {
#define ESS_LANE_WIDTH 4
#define ESS_LANE_ISA_NAME "avx2"
#include "libess/lane_kernels_impl.h"
}  // namespace ess::lanes::avx2
