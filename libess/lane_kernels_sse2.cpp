// Lane kernels compiled for SSE2 (see libess/lane_kernels_impl.h).
#include <emmintrin.h>

#include "libess/lane_kernels.h"

// The instruction set and no FMA contraction (identical bits on every path) for the functions
// below only: not as file-wide flags, which would let inline library code compiled here for the
// wider instruction set be picked by the linker for the whole program.
#if defined(__clang__)
#pragma clang fp contract(off)
#else
#pragma GCC optimize("fp-contract=off")
// 64-byte vectors pass between the inlined helpers of this file only; their ABI does not matter.
#pragma GCC diagnostic ignored "-Wpsabi"
#endif

namespace ess::lanes::sse2 {
#define ESS_LANE_WIDTH 2
#define ESS_LANE_ISA_NAME "sse2"
#include "libess/lane_kernels_impl.h"
}  // namespace ess::lanes::sse2
