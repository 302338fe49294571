// Skinny products with a large matrix in place (libess/skinny_gemm.h): AVX-512 kernels where the
// CPU has them, BLAS otherwise.
#include "libess/skinny_gemm.h"

#include <cblas.h>

#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <cstring>
#include <vector>

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

// Y(t : t + rows, 0 : nc) (+)= H(t : t + rows, 0 : kc) · X(0 : kc, 0 : nc) with rows ≤ 8·MV (the
// last vector masked to `rem` rows) and X packed row-major with 8 entries per row (zero-padded past
// nc): 8·MV × 8 accumulators, H's columns read where they lie (8·MV contiguous rows each).
template <int MV>
void nn_tile(int kc, const double* H, long ldh, const double* Xp, double* Y, long ldy, bool first, int rem, int nc) {
  const __mmask8 last = rem >= 8 ? 0xff : static_cast<__mmask8>((1u << rem) - 1);
  __m512d a[MV][8];
#pragma GCC unroll 16
  for (int v = 0; v < MV; ++v)
#pragma GCC unroll 16
    for (int c = 0; c < 8; ++c)
      a[v][c] = first || c >= nc ? _mm512_setzero_pd()
                                 : _mm512_maskz_loadu_pd(v == MV - 1 ? last : 0xff, Y + v * 8 + c * ldy);
  for (int j = 0; j < kc; ++j) {
    __m512d h[MV];
#pragma GCC unroll 16
    for (int v = 0; v < MV; ++v) h[v] = _mm512_maskz_loadu_pd(v == MV - 1 ? last : 0xff, H + v * 8 + j * ldh);
#pragma GCC unroll 16
    for (int c = 0; c < 8; ++c) {
      const __m512d x = _mm512_set1_pd(Xp[j * 8 + c]);
#pragma GCC unroll 16
      for (int v = 0; v < MV; ++v) a[v][c] = _mm512_fmadd_pd(h[v], x, a[v][c]);
    }
  }
#pragma GCC unroll 16
  for (int v = 0; v < MV; ++v)
#pragma GCC unroll 16
    for (int c = 0; c < 8; ++c)
      if (c < nc) _mm512_mask_storeu_pd(Y + v * 8 + c * ldy, v == MV - 1 ? last : 0xff, a[v][c]);
}

void avx512_nn(int m, int n, int w, const double* H, long ldh, const double* X, long ldx, double* Y, long ldy) {
  // X in groups of 8 columns, each packed row-major (n × 8, zero-padded): one broadcast per entry.
  const int groups = (w + 7) / 8;
  thread_local std::vector<double> pack;
  pack.resize(static_cast<size_t>(groups) * n * 8);
  for (int g = 0; g < groups; ++g) {
    double* P = pack.data() + static_cast<size_t>(g) * n * 8;
    const int nc = std::min(8, w - 8 * g);
    for (int c = 0; c < 8; ++c) {
      const double* Xc = X + (8 * g + c) * ldx;
      for (int j = 0; j < n; ++j) P[j * 8 + c] = c < nc ? Xc[j] : 0.0;
    }
  }
  // Panels of 192 rows × 128 columns of H (192 KB) stay in L2 while every group of X passes; 24
  // rows at a time against 8 vectors (24 accumulators).
  constexpr int kRows = 192, kCols = 128;
  for (int j0 = 0; j0 < n; j0 += kCols) {
    const int kc = std::min(kCols, n - j0);
    for (int t0 = 0; t0 < m; t0 += kRows) {
      const int t1 = std::min(m, t0 + kRows);
      for (int g = 0; g < groups; ++g) {
        const double* P = pack.data() + static_cast<size_t>(g) * n * 8 + static_cast<size_t>(j0) * 8;
        const int nc = std::min(8, w - 8 * g);
        for (int t = t0; t < t1; t += 24) {
          const int rows = std::min(24, t1 - t);
          const double* Ht = H + t + j0 * ldh;
          double* Yt = Y + t + 8 * g * ldy;
          if (rows > 16)
            nn_tile<3>(kc, Ht, ldh, P, Yt, ldy, j0 == 0, rows - 16, nc);
          else if (rows > 8)
            nn_tile<2>(kc, Ht, ldh, P, Yt, ldy, j0 == 0, rows - 8, nc);
          else
            nn_tile<1>(kc, Ht, ldh, P, Yt, ldy, j0 == 0, rows, nc);
        }
      }
    }
  }
}

#pragma GCC diagnostic pop
#pragma GCC pop_options
#endif

// skinny_gemm_use_blas(true): BLAS whatever the CPU (tests of the fallback, timings).
std::atomic<bool> g_blas_only{false};

}  // namespace

void skinny_gemm_use_blas(bool on) { g_blas_only = on; }

bool skinny_gemm_vectorized() {
#ifdef ESS_SKINNY_AVX512
  // ESS_SKINNY_GEMM=blas forces BLAS (timings, tests of the fallback).
  static const bool on = [] {
    const char* forced = std::getenv("ESS_SKINNY_GEMM");
    if (forced && std::strcmp(forced, "blas") == 0) return false;
    return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("fma");
  }();
  return on && !g_blas_only;
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
#ifdef ESS_SKINNY_AVX512
  if (skinny_gemm_vectorized()) return avx512_nn(m, n, w, H, ldh, X, ldx, Y, ldy);
#endif
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
