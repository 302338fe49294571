// Products of a large column-major matrix H (m × n) with a few vectors at once, Y = H X and
// Z = Hᵀ Y, as the lanczos engine's block Krylov solver makes them (X has 8…64 columns).
//
// BLAS's GEMM first copies ("packs") H into its own panel layout, on every call: for skinny
// products that copy costs about as much as the multiplication. With AVX-512 both products read H
// where it lies instead:
// - Z = Hᵀ Y: Y is packed row-major in chunks of 512 rows × up to 32 vectors (in L2); vectors run
//   along Y's columns and each entry of H is broadcast, so 24 accumulators (4 vectors × 6 columns
//   of H at 32 vectors) need no horizontal sums; they are written transposed once per chunk.
// - Y = H X: X is packed (n × 8 per group of 8 vectors); panels of 192 rows × 128 columns of H stay
//   in L2 while each group passes, 24 rows × 8 vectors of Y in registers, and the first group's
//   pass prefetches the next panel (its columns are strided: the hardware prefetchers see short
//   runs only).
// Thread CPU on the 2-core VM (AMD EPYC), 2048 × 2048 block, leading dimension 3972, 16 / 32 / 64
// vectors: H X 59 / 76 / 79 GFLOP/s, Hᵀ Y 69 / 72 / 72, OpenBLAS's DGEMM 23–40 (1.9–2.9×); at a
// power-of-two leading dimension ≈ 10% slower.
// Without AVX-512 (AVX2 + FMA: Zen 3), Hᵀ Y runs the same scheme with 4-wide vectors (groups of 8
// vectors × 6 columns of H, chunks of 1024 rows): 25–37 GFLOP/s against OpenBLAS's 16–24 at 16–64
// vectors (the core's DGEMM peak there ≈ 34); H X stays with BLAS (no AVX2 tiling tried beat it,
// including, in the fused pair below, entries of H broadcast against Z's rows over panels of 12–48
// columns still in L2: 23–31 GFLOP/s against BLAS's 15–24 alone, but no faster in `ess bench --long`
// at L = 4096, 8 alternating runs: sink 3.29 → 3.24 s, diffuse 2.66 → 3.03 s).
// Results equal BLAS's up to rounding (the sums are taken in another order).
#pragma once

namespace ess {

// The kernels skinny_gemm_* run: BLAS, AVX2 + FMA, or AVX-512 (the best the CPU has, capped by
// ESS_SKINNY_GEMM=blas or =avx2 and by the switches below).
enum class SkinnyPath { blas, avx2, avx512 };
SkinnyPath skinny_gemm_path();

// Whether the AVX-512 kernels run on this CPU.
bool skinny_gemm_vectorized();

// Process-wide: true makes skinny_gemm_* call BLAS whatever the CPU (tests of the fallback, timings).
void skinny_gemm_use_blas(bool on);
// Process-wide: true runs the AVX2 kernels where AVX-512 would run (tests of that path, timings).
void skinny_gemm_use_avx2(bool on);

// Y (m × w, leading dimension ldy) = H (m × n, ldh) · X (n × w, ldx). Column-major, no aliasing.
void skinny_gemm_nn(int m, int n, int w, const double* H, long ldh, const double* X, long ldx, double* Y, long ldy);

// Z (n × w, ldz) = Hᵀ · Y with H (m × n, ldh) and Y (m × w, ldy). Column-major, no aliasing.
void skinny_gemm_tn(int m, int n, int w, const double* H, long ldh, const double* Y, long ldy, double* Z, long ldz);

// Both at once: Z (n × w, ldz) = Hᵀ · Q (Q: m × w, ldq), then Y (m × w, ldy) = H · Z, the two
// products of a block Krylov step. Equal to skinny_gemm_tn followed by skinny_gemm_nn up to
// rounding; with AVX2 (no AVX-512) H is read from memory once instead of twice.
void skinny_gemm_tn_nn(int m, int n, int w, const double* H, long ldh, const double* Q, long ldq, double* Z, long ldz,
                       double* Y, long ldy);

}  // namespace ess
