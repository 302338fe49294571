// Kernels that work on kLanes independent problems at once, one per SIMD lane ("lane-interleaved"
// storage: element k of lane l lives at p[k * kLanes + l]). The structured engine uses them for
// several channels of one layer (same L, N) or several blocks of one channel.
//
// Each kernel is compiled once per instruction set (AVX-512, AVX2, SSE2) and picked at run time.
// They contract no multiply-add (fp-contract=off) and every lane runs the same sequence of IEEE
// operations whatever its neighbours hold, so a lane's result is bit-identical on every x86-64 CPU
// and independent of which lane or which batch a problem lands in.
//
// Matrices are n×n, column-major per lane: element (r, c) of lane l at p[(r + c*n) * kLanes + l].
// Buffers must be 64-byte aligned (LaneBuffer below).
#pragma once
#include <cstddef>
#include <cstdint>
#include <memory>
#include <vector>

namespace ess::lanes {

constexpr int kLanes = 8;

// Per-lane outcome of singular_values().
enum LaneStatus : unsigned char {
  lane_ok = 0,          // vectorized dqds converged
  lane_fallback = 1,    // dqds hit its iteration cap; LAPACK dlasq1 finished the lane (still exact)
  lane_failed = 2,      // dlasq1 failed too: values unreliable
  lane_non_finite = 3,  // the matrix held Inf/NaN
};

struct Kernels {
  const char* isa;  // "avx512", "avx2" or "sse2"
  // Appends row r below the upper-triangular U and re-triangularizes by Givens rotations
  // (R factor of [U; rᵀ]); r is destroyed.
  void (*givens_append)(int n, double* U, double* r);
  // U ← U · diag(a)  (a: n lane-interleaved values); only the upper triangle is touched.
  void (*scale_columns)(int n, double* U, const double* a);
  // P ← (W · diag(a)) · Fᵀ for upper-triangular W (packed by columns, see packed_index) and F
  // (full storage); N³/3 multiply-adds.
  void (*upper_product)(int n, const double* W_packed, const double* a, const double* F, double* P);
  // P ← M · Fᵀ for a full M and an upper-triangular F (N³/2 multiply-adds).
  void (*general_product)(int n, const double* M, const double* F, double* P);
  // Singular values of `batches` (1 or 2) consecutive batches of kLanes n×n matrices in A
  // (destroyed; batch b at A + b·n²·kLanes), descending, lane-major: sigma[(b·kLanes + l)·n + k].
  // Two batches share the latency-bound part (dqds), so they cost less than twice one.
  // work: singular_values_work(n) doubles per batch. status: kLanes entries per batch.
  void (*singular_values)(int n, double* A, double* sigma, double* work, unsigned char* status, int batches);
};

// Doubles of workspace singular_values() needs for size n.
inline size_t singular_values_work(int n) { return (static_cast<size_t>(n) * (n + 15) + 16) * kLanes; }
// Offset of element (r, c), r ≤ c, of an upper triangle packed by columns.
inline size_t packed_index(int r, int c) { return static_cast<size_t>(c) * (c + 1) / 2 + r; }
inline size_t packed_size(int n) { return static_cast<size_t>(n) * (n + 1) / 2; }

// The kernels for this CPU (chosen once). ESS_LANES_ISA=avx512|avx2|sse2 in the environment forces
// a lower instruction set (tests use it to check the paths agree bit for bit).
const Kernels& kernels();
// Kernels for a named instruction set, or nullptr if this CPU cannot run it.
const Kernels* kernels_for(const char* isa);

// A 64-byte-aligned array of doubles that only grows (per-thread workspaces).
class LaneBuffer {
 public:
  double* get(size_t n) {
    if (n > size_) {
      storage_.reset(new double[n + 8]);
      size_ = n;
    }
    auto p = reinterpret_cast<std::uintptr_t>(storage_.get());
    return reinterpret_cast<double*>((p + 63) & ~static_cast<std::uintptr_t>(63));
  }

 private:
  std::unique_ptr<double[]> storage_;
  size_t size_ = 0;
};

}  // namespace ess::lanes
