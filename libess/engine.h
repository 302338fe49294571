// Engines compute the singular values of the blocks H_i = T[i:, :i] of one channel (DESIGN §4).
#pragma once
#include <functional>
#include <string>
#include <vector>

#include "libess/block_products.h"
#include "libess/metrics.h"
#include "libess/operator.h"

namespace ess {

enum class EngineKind { dense, structured, sweep, lanczos, automatic };
EngineKind parse_engine(const std::string& s);  // dense|structured|sweep|lanczos|auto; throws UsageError
const char* to_string(EngineKind e);

// Receives each requested block's singular values, in the order of the index list.
class SpectrumSink {
 public:
  virtual ~SpectrumSink() = default;
  // pos: position in the index list; sigma: descending, ≥ 0 (may omit exact zeros);
  // error_bound: bound on |σ_k − σ_k(exact)| from truncation (0 when none);
  // converged: false when the SVD did not converge (values then unreliable).
  virtual void block(int pos, const double* sigma, int count, double error_bound, bool converged) = 0;

  // The lanczos engine's blocks: the `count` largest σ of H_i, which has at most `rank_bound`
  // = min(i, L−i) nonzero ones (count == rank_bound: the whole spectrum), and ‖H_i‖_F² exactly,
  // so the tail mass ‖H_i‖_F² − Σ σ_k² of the values not computed is known. `certified`: the
  // smallest computed σ lies below the certification threshold (tolerance-ESS is exact) or the
  // spectrum is whole. The default forwards the computed values to block().
  struct Partial {
    const double* sigma = nullptr;
    int count = 0, rank_bound = 0;
    double frobenius2 = 0, error_bound = 0;
    bool converged = true, certified = true;
  };
  virtual void partial_block(int pos, const Partial& p) { block(pos, p.sigma, p.count, p.error_bound, p.converged); }

  // Whether values with this error bound (tolerance_count_decided, metrics.h) decide the count this
  // sink will take from them: the sweep engine, whose truncation bound is relative to the channel's
  // largest σ, measures a block exactly when they do not. A sink that counts nothing: true.
  virtual bool count_decided(const double* /*sigma*/, int /*n*/, double /*error_bound*/) const { return true; }
};

// Shifts the positions of a part of an index list back to positions in the whole list (a chunk of
// blocks measured apart, or one block the sweep hands to the dense engine).
class OffsetSink final : public SpectrumSink {
 public:
  OffsetSink(SpectrumSink& inner, int offset) : inner_(inner), offset_(offset) {}
  void block(int pos, const double* sigma, int n, double error_bound, bool converged) override {
    inner_.block(pos + offset_, sigma, n, error_bound, converged);
  }
  void partial_block(int pos, const Partial& p) override { inner_.partial_block(pos + offset_, p); }
  bool count_decided(const double* sigma, int n, double error_bound) const override {
    return inner_.count_decided(sigma, n, error_bound);
  }

 private:
  SpectrumSink& inner_;
  int offset_;
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

// Singular values (descending) of a general m×n matrix stored column-major in `a` (destroyed):
// LAPACK's dgesdd (values only), after a QR (LQ) factorization at aspect ratios 1.3–2.2 where that
// is faster. Returns false if LAPACK did not converge.
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

// What the lanczos engine's block Krylov SVD did (tests, timings; one thread's counts: give each
// call its own).
struct LanczosStats {
  int krylov_tries = 0;      // blocks given to the block Krylov SVD
  int krylov_certified = 0;  // of which it certified
  int krylov_over_cost = 0;  // of which it gave up on cost (then the dense SVD)
  int krylov_skipped = 0;    // blocks sent to the dense SVD by the back-off
};

// Matrix-free engine (DESIGN §4 `lanczos`): for each block, the largest eigenvalues of the Gram
// operator H_iᵀH_i by a block Krylov (Davidson-type, unpreconditioned) eigensolver built on
// Spectra's JDSymEigsBase, from products with H_i only. The number k of values grows (doubling)
// until σ_k is certified below the threshold or k reaches min(i, L−i); a block whose k would pass
// full_fraction · min(i, L−i) gets its whole spectrum from a dense SVD of H_i instead (when H_i
// fits in max_block_bytes), so high-rank blocks cost about what the dense engine costs.
struct LanczosOptions {
  TolMode tol_mode = TolMode::absolute;  // layer mode certifies against τ·σ_1(H_i) (≤ τ·layer max)
  double tol = 1e-3;
  int initial_k = 16;              // k of a channel's first block (later blocks start from the last k)
  double full_fraction = 0.25;     // k beyond this fraction of min(i, L−i): dense SVD of H_i
  bool compare_cost = true;        // also the dense SVD when its estimated cost is lower (off: tests)
  double max_block_bytes = 7.5e8;  // largest H_i (or table of them) written out for the block Krylov SVD
  double residual_rtol = 1e-12;    // Ritz residual ‖H_iᵀH_i v − λ v‖ below this · ‖H_i‖_F²
  int max_iterations = 300;        // solver iterations per k before the block is not converged
  // A block in memory starts from the previous block's left Ritz vectors (plus Gaussian columns).
  // Off: measured to miss singular directions new to the block (entropy intervals that exclude the
  // exact value on mamba / deltanet blocks at L = 512, tests/test_lanczos.cpp), so not certified.
  // How it fails: on a rank-8 DeltaNet block the first value below τ has a tiny residual at once
  // (its Ritz vector lies outside H's range), so the block certifies while the values above τ still
  // have residuals of 0.2–0.7 σ (the previous block's directions, not this one's). Demanding those
  // residuals below the certificate's margin, and growing the space at the worst of them, passes
  // every lanczos test — but then the sink head at L = 4096 needs as many columns as a cold start
  // (3.2–3.3 s either way): the warm start's saving (3.3 → 2.3 s) was the unconverged values.
  bool warm_start = false;
  bool krylov_targeted = true;  // grow the Krylov basis at the Ritz vectors nearest the threshold
  // After the block Krylov SVD gave a block up on cost, the next 1, 3, 7, then 15 blocks it would
  // try go to the dense SVD directly; a certified block clears it (with compare_cost only).
  bool krylov_backoff = true;
  LanczosStats* stats = nullptr;  // counts of the block Krylov SVD's tries, if given (not thread-safe)
};
void lanczos_block_spectra(const BlockProducts& products, const std::vector<int>& indices,
                           const LanczosOptions& options, SpectrumSink& sink);

// Disable BLAS-internal threading (we parallelize over channels).
void set_blas_single_threaded();
// Let BLAS/LAPACK calls use n threads (sweep layers with fewer channels than threads).
void set_blas_threads(int n);

}  // namespace ess
