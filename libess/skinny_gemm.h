// Products of a large column-major matrix H (m × n) with a few vectors at once, Y = H X and
// Z = Hᵀ Y, as the lanczos engine's block Krylov solver makes them (X has 8…64 columns).
//
// BLAS's GEMM first copies ("packs") H into its own panel layout, on every call: for skinny
// products that copy costs about as much as the multiplication (a quarter of the solver's time
// with OpenBLAS's AVX2 kernels). Z = Hᵀ Y needs no packing: each entry is a dot product of a
// column of H (contiguous) with a column of Y, so with AVX-512 a kernel reads H where it lies, four
// columns at a time against six vectors (24 accumulators), in chunks of 512 rows that keep Y's rows
// in cache: 1.2–1.45× OpenBLAS's AVX2 DGEMM at 16–64 vectors (2000 × 2000 block, 2-core VM).
// Y = H X reads H in place too: X is packed (n × 8 per group of 8 vectors, small), and panels of
// 192 rows × 128 columns of H stay in L2 while each group passes, 24 rows × 8 vectors of Y in
// registers: 1.6–2× OpenBLAS's DGEMM at 16–64 vectors (2048 × 2048, leading dimension 3972;
// 1.35× at a power-of-two leading dimension, where the panel's columns share cache sets).
// Results equal BLAS's up to rounding (the sums are taken in another order).
#pragma once

namespace ess {

// Whether the AVX-512 kernels run on this CPU (else skinny_gemm_* call BLAS).
bool skinny_gemm_vectorized();

// Process-wide: true makes skinny_gemm_* call BLAS whatever the CPU (tests of the fallback, timings).
void skinny_gemm_use_blas(bool on);

// Y (m × w, leading dimension ldy) = H (m × n, ldh) · X (n × w, ldx). Column-major, no aliasing.
void skinny_gemm_nn(int m, int n, int w, const double* H, long ldh, const double* X, long ldx, double* Y, long ldy);

// Z (n × w, ldz) = Hᵀ · Y with H (m × n, ldh) and Y (m × w, ldy). Column-major, no aliasing.
void skinny_gemm_tn(int m, int n, int w, const double* H, long ldh, const double* Y, long ldy, double* Z, long ldz);

}  // namespace ess
