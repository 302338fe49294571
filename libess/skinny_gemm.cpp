// Skinny products with a large matrix in place (libess/skinny_gemm.h): AVX-512 kernels where the
// CPU has them, BLAS otherwise.
#include "libess/skinny_gemm.h"

#include <cblas.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>

#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#define ESS_SKINNY_AVX512 1
#include <immintrin.h>
#endif

namespace ess {

namespace {

void blas_nn(int m, int n, int w, const double* H, long ldh, const double* X, long ldx, double* Y, long ldy) {
  cblas_dgemm(CblasColMajor, CblasNoTrans, CblasNoTrans, m, w, n, 1.0, H, static_cast<int>(ldh), X,
              static_cast<int>(ldx), 0.0, Y, static_cast<int>(ldy));
}

void blas_tn(int m, int n, int w, const double* H, long ldh, const double* Y, long ldy, double* Z, long ldz) {
  cblas_dgemm(CblasColMajor, CblasTrans, CblasNoTrans, n, w, m, 1.0, H, static_cast<int>(ldh), Y, static_cast<int>(ldy),
              0.0, Z, static_cast<int>(ldz));
}

#ifdef ESS_SKINNY_AVX512
// The instruction set for these functions only (not file-wide flags: inline library code compiled
// for AVX-512 must not be picked by the linker for the whole program).
#pragma GCC push_options
#pragma GCC target("avx512f,avx512dq,fma")
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wpsabi"

// The sum of a vector's eight entries (through memory: GCC 12's reduction and extraction
// intrinsics trip -Wmaybe-uninitialized in its own header; 24 sums per tile, negligible).
inline double sum8(__m512d v) {
  alignas(64) double e[8];
  _mm512_store_pd(e, v);
  return ((e[0] + e[4]) + (e[1] + e[5])) + ((e[2] + e[6]) + (e[3] + e[7]));
}

// Z(j0 : j0 + NJ, c0 : c0 + NC) = H(:, j0 : j0 + NJ)ᵀ Y(:, c0 : c0 + NC): 8 rows at a time, the
// last ones masked, then one horizontal sum per entry.
template <int NJ, int NC>
void tn_tile(int m, const double* H, long ldh, const double* Y, long ldy, double* Z, long ldz, bool first) {
  __m512d a[NJ][NC];
#pragma GCC unroll 16
  for (int j = 0; j < NJ; ++j)
#pragma GCC unroll 16
    for (int c = 0; c < NC; ++c) a[j][c] = _mm512_setzero_pd();
  for (int t = 0; t < m; t += 8) {
    const int rem = m - t;
    const __mmask8 k = rem >= 8 ? 0xff : static_cast<__mmask8>((1u << rem) - 1);
    __m512d y[NC];
#pragma GCC unroll 16
    for (int c = 0; c < NC; ++c) y[c] = _mm512_maskz_loadu_pd(k, Y + t + c * ldy);
#pragma GCC unroll 16
    for (int j = 0; j < NJ; ++j) {
      const __m512d h = _mm512_maskz_loadu_pd(k, H + t + j * ldh);
#pragma GCC unroll 16
      for (int c = 0; c < NC; ++c) a[j][c] = _mm512_fmadd_pd(h, y[c], a[j][c]);
    }
  }
#pragma GCC unroll 16
  for (int j = 0; j < NJ; ++j)
#pragma GCC unroll 16
    for (int c = 0; c < NC; ++c) Z[j + c * ldz] = (first ? 0.0 : Z[j + c * ldz]) + sum8(a[j][c]);
}

template <int NJ>
void tn_rows(int m, int w, const double* H, long ldh, const double* Y, long ldy, double* Z, long ldz, bool first) {
  for (int c = 0; c < w;) {
    const int nc = std::min(6, w - c);
    const double* Yc = Y + c * ldy;
    double* Zc = Z + c * ldz;
    switch (nc) {
      case 6:
        tn_tile<NJ, 6>(m, H, ldh, Yc, ldy, Zc, ldz, first);
        break;
      case 5:
        tn_tile<NJ, 5>(m, H, ldh, Yc, ldy, Zc, ldz, first);
        break;
      case 4:
        tn_tile<NJ, 4>(m, H, ldh, Yc, ldy, Zc, ldz, first);
        break;
      case 3:
        tn_tile<NJ, 3>(m, H, ldh, Yc, ldy, Zc, ldz, first);
        break;
      case 2:
        tn_tile<NJ, 2>(m, H, ldh, Yc, ldy, Zc, ldz, first);
        break;
      default:
        tn_tile<NJ, 1>(m, H, ldh, Yc, ldy, Zc, ldz, first);
        break;
    }
    c += nc;
  }
}

void avx512_tn(int m, int n, int w, const double* H, long ldh, const double* Y, long ldy, double* Z, long ldz) {
  // Chunks of 512 rows: Y's rows stay in cache while every group of four columns of H passes.
  constexpr int kChunk = 512;
  for (int t0 = 0; t0 < m; t0 += kChunk) {
    const int mt = std::min(kChunk, m - t0);
    const bool first = t0 == 0;
    for (int j = 0; j < n; j += 4) {
      const double* Hj = H + t0 + j * ldh;
      const double* Yt = Y + t0;
      double* Zj = Z + j;
      switch (std::min(4, n - j)) {
        case 4:
          tn_rows<4>(mt, w, Hj, ldh, Yt, ldy, Zj, ldz, first);
          break;
        case 3:
          tn_rows<3>(mt, w, Hj, ldh, Yt, ldy, Zj, ldz, first);
          break;
        case 2:
          tn_rows<2>(mt, w, Hj, ldh, Yt, ldy, Zj, ldz, first);
          break;
        default:
          tn_rows<1>(mt, w, Hj, ldh, Yt, ldy, Zj, ldz, first);
          break;
      }
    }
  }
}

#pragma GCC diagnostic pop
#pragma GCC pop_options
#endif

}  // namespace

bool skinny_gemm_vectorized() {
#ifdef ESS_SKINNY_AVX512
  // ESS_SKINNY_GEMM=blas forces BLAS (timings, tests of the fallback).
  static const bool on = [] {
    const char* forced = std::getenv("ESS_SKINNY_GEMM");
    if (forced && std::strcmp(forced, "blas") == 0) return false;
    return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("fma");
  }();
  return on;
#else
  return false;
#endif
}

void skinny_gemm_nn(int m, int n, int w, const double* H, long ldh, const double* X, long ldx, double* Y, long ldy) {
  if (m <= 0 || w <= 0) return;
  if (n <= 0) {
    for (int c = 0; c < w; ++c) std::fill(Y + c * ldy, Y + c * ldy + m, 0.0);
    return;
  }
  // A kernel reading H in place was tried for this product: H's rows are strided in memory and it
  // ran at half of OpenBLAS's speed, packing included, so BLAS it is.
  blas_nn(m, n, w, H, ldh, X, ldx, Y, ldy);
}

void skinny_gemm_tn(int m, int n, int w, const double* H, long ldh, const double* Y, long ldy, double* Z, long ldz) {
  if (n <= 0 || w <= 0) return;
  if (m <= 0) {
    for (int c = 0; c < w; ++c) std::fill(Z + c * ldz, Z + c * ldz + n, 0.0);
    return;
  }
#ifdef ESS_SKINNY_AVX512
  if (skinny_gemm_vectorized()) return avx512_tn(m, n, w, H, ldh, Y, ldy, Z, ldz);
#endif
  blas_tn(m, n, w, H, ldh, Y, ldy, Z, ldz);
}

}  // namespace ess
