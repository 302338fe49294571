// Lane kernels compiled for AVX512 (see libess/lane_kernels_impl.h).
#include <immintrin.h>

#include "libess/lane_kernels.h"

#pragma GCC target("avx512f,avx512dq")
#pragma GCC optimize("fp-contract=off")
// 64-byte vectors pass between the inlined helpers of this file only; their ABI does not matter.
#pragma GCC diagnostic ignored "-Wpsabi"

namespace ess::lanes::avx512 {
#define ESS_LANE_WIDTH 8
#define ESS_LANE_ISA_NAME "avx512"
#include "libess/lane_kernels_impl.h"
}  // namespace ess::lanes::avx512
