// Lane kernels compiled for AVX512 (see libess/lane_kernels_impl.h).
#include <immintrin.h>

#include "libess/lane_kernels.h"

// The instruction set and no FMA contraction (identical bits on every path) for the functions
// below only: not as file-wide flags, which would let inline library code compiled here for the
// wider instruction set be picked by the linker for the whole program.
#if defined(__clang__)
#pragma clang attribute push(__attribute__((target("avx512f,avx512dq"))), apply_to = function)
#pragma clang fp contract(off)
#else
#pragma GCC target("avx512f,avx512dq")
#pragma GCC optimize("fp-contract=off")
// 64-byte vectors pass between the inlined helpers of this file only; their ABI does not matter.
#pragma GCC diagnostic ignored "-Wpsabi"
#endif

namespace ess::lanes::avx512 {
#define ESS_LANE_WIDTH 8
#define ESS_LANE_ISA_NAME "avx512"
#include "libess/lane_kernels_impl.h"
}  // namespace ess::lanes::avx512
#if defined(__clang__)
#pragma clang attribute pop
#endif
