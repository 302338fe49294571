// Skinny products with a large matrix in place (libess/skinny_gemm.h): AVX-512 kernels where the
// CPU has them, an AVX2 kernel for Hᵀ Y where it has AVX2 only, BLAS otherwise.
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

// Eight entries of a column of H from p (the lanes outside k zero).
inline __m512d load8(__mmask8 k, const double* p) { return _mm512_maskz_loadu_pd(k, p); }

// Y(t : t + rows, 0 : nc) (+)= H(t : t + rows, 0 : kc) · X(0 : kc, 0 : nc) with rows ≤ 8·MV (the
// last vector masked to `rem` rows) and X packed row-major with 8 entries per row (zero-padded past
// nc): 8·MV × 8 accumulators, H's columns read where they lie (8·MV contiguous rows each).
template <int MV>
void nn_tile(int kc, const double* H, long ldh, const double* Xp, double* Y, long ldy, bool first, int rem, int nc,
             const double* pf, int kpf) {
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
    for (int v = 0; v < MV; ++v) h[v] = load8(v == MV - 1 ? last : 0xff, H + v * 8 + j * ldh);
    if (j < kpf)
#pragma GCC unroll 16
      for (int v = 0; v < MV; ++v) _mm_prefetch(reinterpret_cast<const char*>(pf + v * 8 + j * ldh), _MM_HINT_T1);
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
          // The first group's pass fetches the next panel's rows at the same offset into L2 (the
          // panel's columns are strided: the hardware prefetchers see short runs only).
          const double* pf = nullptr;
          int kpf = 0;
          if (g == 0) {
            const int tn = t1 < m ? t1 : 0, jn = t1 < m ? j0 : j0 + kCols, off = t - t0;
            if (jn < n && tn + off < m) {
              pf = H + tn + off + static_cast<long>(jn) * ldh;
              kpf = std::min(kCols, n - jn);
            }
          }
          if (rows > 16)
            nn_tile<3>(kc, Ht, ldh, P, Yt, ldy, j0 == 0, rows - 16, nc, pf, kpf);
          else if (rows > 8)
            nn_tile<2>(kc, Ht, ldh, P, Yt, ldy, j0 == 0, rows - 8, nc, pf, kpf);
          else
            nn_tile<1>(kc, Ht, ldh, P, Yt, ldy, j0 == 0, rows, nc, pf, kpf);
        }
      }
    }
  }
}

// Z(j : j + NJ, c : c + 8·MV) (+)= H(0 : mt, j : j + NJ)ᵀ Y(0 : mt, c : c + 8·MV) with Y packed
// row-major, 8·MV entries per row (zero-padded past nc): vectors run along Y's columns, each
// entry of H is broadcast, so no horizontal sums; the MV × NJ accumulators are written transposed.
template <int MV, int NJ>
void tn_tile(int mt, const double* H, long ldh, const double* Yp, double* Z, long ldz, bool first, int nc) {
  __m512d a[MV][NJ];
#pragma GCC unroll 32
  for (int v = 0; v < MV; ++v)
#pragma GCC unroll 32
    for (int j = 0; j < NJ; ++j) a[v][j] = _mm512_setzero_pd();
  for (int t = 0; t < mt; ++t) {
    __m512d y[MV];
#pragma GCC unroll 32
    for (int v = 0; v < MV; ++v) y[v] = _mm512_loadu_pd(Yp + t * 8 * MV + 8 * v);
#pragma GCC unroll 32
    for (int j = 0; j < NJ; ++j) {
      const __m512d h = _mm512_set1_pd(H[t + j * ldh]);
#pragma GCC unroll 32
      for (int v = 0; v < MV; ++v) a[v][j] = _mm512_fmadd_pd(y[v], h, a[v][j]);
    }
  }
  alignas(64) double e[8];
#pragma GCC unroll 32
  for (int v = 0; v < MV; ++v)
#pragma GCC unroll 32
    for (int j = 0; j < NJ; ++j) {
      _mm512_store_pd(e, a[v][j]);
      for (int l = 0; l < 8 && 8 * v + l < nc; ++l) {
        double& z = Z[j + (8 * v + l) * ldz];
        z = first ? e[l] : z + e[l];
      }
    }
}

template <int MV>
void tn_cols(int mt, int n, const double* H, long ldh, const double* Yp, double* Z, long ldz, bool first, int nc) {
  constexpr int NJ = 24 / MV;
  int j = 0;
  for (; j + NJ <= n; j += NJ) tn_tile<MV, NJ>(mt, H + j * ldh, ldh, Yp, Z + j, ldz, first, nc);
  for (; j < n; ++j) tn_tile<MV, 1>(mt, H + j * ldh, ldh, Yp, Z + j, ldz, first, nc);
}

void avx512_tn(int m, int n, int w, const double* H, long ldh, const double* Y, long ldy, double* Z, long ldz) {
  // Y in groups of up to 32 columns, each chunk of kChunk rows packed row-major (zero-padded to a
  // multiple of 8): H's columns pass once per group and chunk.
  constexpr int kChunk = 512;
  thread_local std::vector<double> pack;
  pack.resize(static_cast<size_t>(kChunk) * 32);
  for (int t0 = 0; t0 < m; t0 += kChunk) {
    const int mt = std::min(kChunk, m - t0);
    for (int c0 = 0; c0 < w; c0 += 32) {
      const int nc = std::min(32, w - c0), mv = (nc + 7) / 8;
      for (int t = 0; t < mt; ++t)
        for (int c = 0; c < 8 * mv; ++c)
          pack[static_cast<size_t>(t) * 8 * mv + c] = c < nc ? Y[t0 + t + (c0 + c) * ldy] : 0.0;
      const double* Ht = H + t0;
      double* Zc = Z + c0 * ldz;
      const bool first = t0 == 0;
      switch (mv) {
        case 4:
          tn_cols<4>(mt, n, Ht, ldh, pack.data(), Zc, ldz, first, nc);
          break;
        case 3:
          tn_cols<3>(mt, n, Ht, ldh, pack.data(), Zc, ldz, first, nc);
          break;
        case 2:
          tn_cols<2>(mt, n, Ht, ldh, pack.data(), Zc, ldz, first, nc);
          break;
        default:
          tn_cols<1>(mt, n, Ht, ldh, pack.data(), Zc, ldz, first, nc);
          break;
      }
    }
  }
}

#pragma GCC diagnostic pop
#pragma GCC pop_options

// Hᵀ Y with AVX2 and FMA (16 registers of 4 doubles): CPUs without AVX-512.
#pragma GCC push_options
#pragma GCC target("avx2,fma")
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wpsabi"

// Z(j : j + NJ, 0 : nc) (+)= H(0 : mt, j : j + NJ)ᵀ Y(0 : mt, 0 : 8) with Y packed row-major, 8
// entries per row (zero-padded past nc): 2 × NJ accumulators, written transposed.
template <int NJ>
void tn_tile2(int mt, const double* H, long ldh, const double* Yp, double* Z, long ldz, bool first, int nc) {
  __m256d a[2][NJ];
#pragma GCC unroll 32
  for (int v = 0; v < 2; ++v)
#pragma GCC unroll 32
    for (int j = 0; j < NJ; ++j) a[v][j] = _mm256_setzero_pd();
  for (int t = 0; t < mt; ++t) {
    const __m256d y0 = _mm256_loadu_pd(Yp + t * 8), y1 = _mm256_loadu_pd(Yp + t * 8 + 4);
#pragma GCC unroll 32
    for (int j = 0; j < NJ; ++j) {
      const __m256d h = _mm256_broadcast_sd(H + t + j * ldh);
      a[0][j] = _mm256_fmadd_pd(y0, h, a[0][j]);
      a[1][j] = _mm256_fmadd_pd(y1, h, a[1][j]);
    }
  }
  alignas(32) double e[4];
#pragma GCC unroll 32
  for (int v = 0; v < 2; ++v)
#pragma GCC unroll 32
    for (int j = 0; j < NJ; ++j) {
      _mm256_store_pd(e, a[v][j]);
      for (int l = 0; l < 4 && 4 * v + l < nc; ++l) {
        double& z = Z[j + (4 * v + l) * ldz];
        z = first ? e[l] : z + e[l];
      }
    }
}

void avx2_tn(int m, int n, int w, const double* H, long ldh, const double* Y, long ldy, double* Z, long ldz) {
  // Per chunk of kChunk rows: Y packed row-major in groups of 8 columns (zero-padded), then every
  // group passes each strip of 6 columns of H while the strip is in L1/L2: H is read from memory
  // once. (Measured on Zen 3 at m = n = 2048, w = 16…64: chunks of 1024 rows 1.4–1.8× OpenBLAS's
  // DGEMM, 256 rows 1.1–1.3×.)
  constexpr int kChunk = 1024, NJ = 6;
  const int groups = (w + 7) / 8;
  thread_local std::vector<double> pack;
  pack.resize(static_cast<size_t>(kChunk) * 8 * groups);
  for (int t0 = 0; t0 < m; t0 += kChunk) {
    const int mt = std::min(kChunk, m - t0);
    for (int g = 0; g < groups; ++g) {
      double* P = pack.data() + static_cast<size_t>(g) * kChunk * 8;
      const int nc = std::min(8, w - 8 * g);
      for (int c = 0; c < 8; ++c) {
        const double* Yc = Y + t0 + (8 * g + c) * ldy;
        for (int t = 0; t < mt; ++t) P[t * 8 + c] = c < nc ? Yc[t] : 0.0;
      }
    }
    const double* Ht = H + t0;
    const bool first = t0 == 0;
    int j = 0;
    for (; j + NJ <= n; j += NJ)
      for (int g = 0; g < groups; ++g)
        tn_tile2<NJ>(mt, Ht + j * ldh, ldh, pack.data() + static_cast<size_t>(g) * kChunk * 8, Z + j + 8 * g * ldz, ldz,
                     first, std::min(8, w - 8 * g));
    for (; j < n; ++j)
      for (int g = 0; g < groups; ++g)
        tn_tile2<1>(mt, Ht + j * ldh, ldh, pack.data() + static_cast<size_t>(g) * kChunk * 8, Z + j + 8 * g * ldz, ldz,
                    first, std::min(8, w - 8 * g));
  }
}

#pragma GCC diagnostic pop
#pragma GCC pop_options
#endif

// skinny_gemm_use_blas(true): BLAS whatever the CPU (tests of the fallback, timings).
std::atomic<bool> g_blas_only{false};
// skinny_gemm_use_avx2(true): the AVX2 kernels even where AVX-512 runs (tests, timings).
std::atomic<bool> g_avx2_only{false};

// Which kernels the CPU can run (ESS_SKINNY_GEMM=blas or =avx2 caps it: timings, tests).
SkinnyPath cpu_path() {
#ifdef ESS_SKINNY_AVX512
  static const SkinnyPath path = [] {
    const char* forced = std::getenv("ESS_SKINNY_GEMM");
    if (forced && std::strcmp(forced, "blas") == 0) return SkinnyPath::blas;
    const bool avx2 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
    const bool avx512 = avx2 && __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512dq");
    if (avx512 && !(forced && std::strcmp(forced, "avx2") == 0)) return SkinnyPath::avx512;
    return avx2 ? SkinnyPath::avx2 : SkinnyPath::blas;
  }();
  return path;
#else
  return SkinnyPath::blas;
#endif
}

}  // namespace

void skinny_gemm_use_blas(bool on) { g_blas_only = on; }
void skinny_gemm_use_avx2(bool on) { g_avx2_only = on; }

SkinnyPath skinny_gemm_path() {
  const SkinnyPath cpu = cpu_path();
  if (g_blas_only) return SkinnyPath::blas;
  if (g_avx2_only && cpu == SkinnyPath::avx512) return SkinnyPath::avx2;
  return cpu;
}

bool skinny_gemm_vectorized() { return skinny_gemm_path() == SkinnyPath::avx512; }

namespace {

void nn(int m, int n, int w, const double* H, long ldh, const double* X, long ldx, double* Y, long ldy) {
  if (m <= 0 || w <= 0) return;
  if (n <= 0) {
    for (int c = 0; c < w; ++c) std::fill(Y + c * ldy, Y + c * ldy + m, 0.0);
    return;
  }
#ifdef ESS_SKINNY_AVX512
  const SkinnyPath path = skinny_gemm_path();
  if (path == SkinnyPath::avx512) return avx512_nn(m, n, w, H, ldh, X, ldx, Y, ldy);
    // (No AVX2 kernel for H X: tiles of 4–12 rows × 4–6 vectors, panels from 24 × 128 to 192 × 128,
    // were no faster than OpenBLAS's packed DGEMM on Zen 3.)
#endif
  blas_nn(m, n, w, H, ldh, X, ldx, Y, ldy);
}

void tn(int m, int n, int w, const double* H, long ldh, const double* Y, long ldy, double* Z, long ldz) {
  if (n <= 0 || w <= 0) return;
  if (m <= 0) {
    for (int c = 0; c < w; ++c) std::fill(Z + c * ldz, Z + c * ldz + n, 0.0);
    return;
  }
#ifdef ESS_SKINNY_AVX512
  // (Fewer than 48 columns of H: packing Y costs more than the kernel saves; BLAS.)
  if (n >= 48) {
    const SkinnyPath path = skinny_gemm_path();
    if (path == SkinnyPath::avx512) return avx512_tn(m, n, w, H, ldh, Y, ldy, Z, ldz);
    if (path == SkinnyPath::avx2) return avx2_tn(m, n, w, H, ldh, Y, ldy, Z, ldz);
  }
#endif
  blas_tn(m, n, w, H, ldh, Y, ldy, Z, ldz);
}

}  // namespace

void skinny_gemm_tn_nn(int m, int n, int w, const double* H, long ldh, const double* Q, long ldq, double* Z, long ldz,
                       double* Y, long ldy) {
#ifdef ESS_SKINNY_AVX512
  // AVX2: one pass over H in panels of kPanel columns, Z's rows of the panel by the in-place kernel,
  // then the panel's share of H Z by BLAS while the panel is still in cache (its copy into BLAS's
  // layout then reads cache, not memory). Thread CPU of `ess bench --long --lengths 4096 --cases
  // long-sink,long-diffuse --dense-max-L 0 --threads 1` on Zen 3, medians of 10 alternating runs:
  // sink 3.24 → 2.79 s, diffuse 2.46 → 2.34 s (panels of 64: 2.83 and 2.39 s).
  constexpr int kPanel = 128;
  if (m > 0 && w > 0 && n >= 2 * kPanel && skinny_gemm_path() == SkinnyPath::avx2) {
    for (int j0 = 0; j0 < n; j0 += kPanel) {
      const int nc = std::min(kPanel, n - j0);
      tn(m, nc, w, H + j0 * ldh, ldh, Q, ldq, Z + j0, ldz);
      cblas_dgemm(CblasColMajor, CblasNoTrans, CblasNoTrans, m, w, nc, 1.0, H + j0 * ldh, static_cast<int>(ldh), Z + j0,
                  static_cast<int>(ldz), j0 == 0 ? 0.0 : 1.0, Y, static_cast<int>(ldy));
    }
    return;
  }
#endif
  tn(m, n, w, H, ldh, Q, ldq, Z, ldz);
  nn(m, n, w, H, ldh, Z, ldz, Y, ldy);
}

void skinny_gemm_nn(int m, int n, int w, const double* H, long ldh, const double* X, long ldx, double* Y, long ldy) {
  nn(m, n, w, H, ldh, X, ldx, Y, ldy);
}
void skinny_gemm_tn(int m, int n, int w, const double* H, long ldh, const double* Y, long ldy, double* Z, long ldz) {
  tn(m, n, w, H, ldh, Y, ldy, Z, ldz);
}

}  // namespace ess
