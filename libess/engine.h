// Engines compute the singular values of the blocks H_i = T[i:, :i] of one channel (DESIGN §4).
#pragma once
#include <functional>
#include <string>
#include <vector>

#include "libess/operator.h"

namespace ess {

enum class EngineKind { dense, structured, sweep, automatic };
EngineKind parse_engine(const std::string& s);  // dense|structured|sweep|auto; throws UsageError
const char* to_string(EngineKind e);

// Receives each requested block's singular values, in the order of the index list.
class SpectrumSink {
 public:
  virtual ~SpectrumSink() = default;
  // pos: position in the index list; sigma: descending, ≥ 0 (may omit exact zeros);
  // error_bound: bound on |σ_k − σ_k(exact)| from truncation (0 when none);
  // converged: false when the SVD did not converge (values then unreliable).
  virtual void block(int pos, const double* sigma, int count, double error_bound, bool converged) = 0;
};

// Reusable per-thread buffers of the dense engine (allocated once, grown as needed).
struct DenseWorkspace {
  Matrix T;
  std::vector<double> block, s, work;
  std::vector<int> iwork;
};

// Singular values of H_i from a materialized T by LAPACK (dgesdd, values only), float64.
void dense_block_spectra(const Eigen::Ref<const Matrix>& T, const std::vector<int>& indices, DenseWorkspace& ws,
                         SpectrumSink& sink);

// Singular values (descending) of a general m×n matrix stored column-major in `a` (destroyed).
// Returns false if LAPACK did not converge.
bool singular_values(int m, int n, double* a, double* s, std::vector<double>& work, std::vector<int>& iwork);

// Square-root Gramian recursion on a realization (structured engine). indices ascending.
void structured_block_spectra(const Realization& r, const std::vector<int>& indices, SpectrumSink& sink);
// Several channels (same length and state size) at once: channels with diagonal transitions and
// small N go through the recursion together in SIMD lanes. sinks[k] receives channel k's blocks.
// Each channel's values are bit-identical to what the single-channel call would give in the same
// path, whatever channels it is batched with.
void structured_block_spectra(const std::vector<const Realization*>& channels, const std::vector<int>& indices,
                              const std::vector<SpectrumSink*>& sinks);

// Nested sweep over a dense T (sweep engine): carries U·Σ, truncating σ < rtol·σ_max.
void sweep_block_spectra(const Eigen::Ref<const Matrix>& T, const std::vector<int>& indices, double rtol,
                         SpectrumSink& sink);

// Disable BLAS-internal threading (we parallelize over channels).
void set_blas_single_threaded();
// Let BLAS/LAPACK calls use n threads (sweep layers with fewer channels than threads).
void set_blas_threads(int n);

}  // namespace ess
