// Matrix-free access to the blocks H_i = T[i:, :i] of one channel: what the lanczos engine
// (libess/engine.h) needs instead of a materialized L×L operator. Families implement it from their
// own factors (softmax attention from q, k and the mask in tiles of query rows, operators/); every
// realization family gets it through the state-space recurrence (RealizationBlockProducts), and any
// other family through its dense T (DenseBlockProducts).
#pragma once
#include <memory>
#include <vector>

#include "libess/realization.h"
#include "libess/types.h"

namespace ess {

// The part of H_i outside which it is zero: rows [row0, row0 + rows) and columns
// [col0, col0 + cols) of the (L−i) × i block (a sliding window: its w × w corner).
struct BlockSupport {
  int row0 = 0, rows = 0, col0 = 0, cols = 0;
};

// A read-only view of H_i's support in a table the family keeps: column-major, leading dimension ld.
struct BlockView {
  const double* data = nullptr;
  Index ld = 0;
};

class BlockProducts {
 public:
  virtual ~BlockProducts() = default;
  virtual int seq_len() const = 0;
  // Called once with the blocks about to be requested: a family may precompute per-block
  // quantities (attention: every ‖H_i‖_F² in one sweep over the scores).
  virtual void prepare(const std::vector<int>& /*indices*/) const {}
  // Y = H_i X: X is i × p, Y is (L−i) × p.
  virtual void apply(int i, const Eigen::Ref<const Matrix>& X, Eigen::Ref<Matrix> Y) const = 0;
  // Y = H_iᵀ X: X is (L−i) × p, Y is i × p.
  virtual void apply_transpose(int i, const Eigen::Ref<const Matrix>& X, Eigen::Ref<Matrix> Y) const = 0;
  // Y = H_iᵀ H_i X (i × p): the Gram operator the engine's eigensolver runs on. The default is
  // apply then apply_transpose; a family whose products recompute H_i (attention scores) overrides
  // it with one pass over H_i.
  virtual void gram(int i, const Eigen::Ref<const Matrix>& X, Eigen::Ref<Matrix> Y) const;
  // ‖H_i‖_F², exact (from the factors; the engine's tail mass ‖H_i‖_F² − Σ σ_k² depends on it).
  virtual double frobenius2(int i) const = 0;
  // Where H_i can be non-zero; the default is the whole block.
  virtual BlockSupport support(int i) const { return {0, seq_len() - i, 0, i}; }
  // H_i's support written out (support(i).rows × support(i).cols): the engine runs on it when it
  // fits in memory (one pass over the factors instead of one per iteration). The default applies
  // H_i to the identity (whole block).
  virtual void materialize_block(int i, Eigen::Ref<Matrix> H) const;
  // Writes out, once, a table holding the supports of all the given blocks when it fits in
  // max_bytes and costs less than writing each block out; cached_block() then views it. The default
  // keeps none. Returns whether a table exists.
  virtual bool cache(const std::vector<int>& /*indices*/, double /*max_bytes*/) const { return false; }
  // H_i's support in the family's table (support(i).rows × support(i).cols), or data == nullptr.
  virtual BlockView cached_block(int /*i*/) const { return {}; }
};

// Products with a materialized T (families without a realization or products of their own).
class DenseBlockProducts final : public BlockProducts {
 public:
  explicit DenseBlockProducts(const Eigen::Ref<const Matrix>& T) : T_(T) {}
  int seq_len() const override { return static_cast<int>(T_.rows()); }
  void apply(int i, const Eigen::Ref<const Matrix>& X, Eigen::Ref<Matrix> Y) const override;
  void apply_transpose(int i, const Eigen::Ref<const Matrix>& X, Eigen::Ref<Matrix> Y) const override;
  double frobenius2(int i) const override;
  void materialize_block(int i, Eigen::Ref<Matrix> H) const override;
  // T itself is the table.
  bool cache(const std::vector<int>&, double) const override { return true; }
  BlockView cached_block(int i) const override { return {T_.data() + i, T_.outerStride()}; }

 private:
  Eigen::Ref<const Matrix> T_;
};

// Products through a realization, H_i = O_i R_i: R_i x runs the recurrence over the inputs s < i
// (the state after step i−1), O_i propagates it to the outputs t ≥ i; O(L·N·p) per product with
// diagonal transitions. ‖H_i‖_F² = trace(P_i Q_i) from the reachability and observability Gramians.
class RealizationBlockProducts final : public BlockProducts {
 public:
  explicit RealizationBlockProducts(std::unique_ptr<Realization> r) : r_(std::move(r)) {}
  int seq_len() const override { return r_->length(); }
  void apply(int i, const Eigen::Ref<const Matrix>& X, Eigen::Ref<Matrix> Y) const override;
  void apply_transpose(int i, const Eigen::Ref<const Matrix>& X, Eigen::Ref<Matrix> Y) const override;
  double frobenius2(int i) const override;

 private:
  std::unique_ptr<Realization> r_;
};

// C = alpha · op(A) · op(B) + beta · C by the BLAS (OpenBLAS' kernels, as the dense engine's
// LAPACK uses): the large products of the matrix-free paths and of the forward pass. C is cut into
// tiles of at most kGemmTileRows × kGemmTileCols, one BLAS call each, run on gemm_threads()
// threads (libess/parallel.h): the same bits with any number of threads.
constexpr Index kGemmTileRows = 1024, kGemmTileCols = 512;
void blas_gemm(bool transpose_a, bool transpose_b, double alpha, const Eigen::Ref<const Matrix>& A,
               const Eigen::Ref<const Matrix>& B, double beta, Eigen::Ref<Matrix> C);

// Y = X · Wᵀ (transpose_w) or X · W for a row-major W, as checkpoints store weights ([out, in] for
// nn.Linear, [in, out] for GPT-2's Conv1D), by the BLAS: the forward passes' large products
// (Eigen's own product runs the build's baseline SSE2 kernels, about 3× slower here).
void blas_gemm_xw(const Eigen::Ref<const Matrix>& X, const Eigen::Ref<const RowMatrix>& W, bool transpose_w,
                  Eigen::Ref<Matrix> Y);
// C = alpha · A · Bᵀ for row-major A [m, k] and B [n, k] (rows of queries and keys), by the BLAS.
void blas_gemm_rows_nt(double alpha, const Eigen::Ref<const RowMatrix>& A, const Eigen::Ref<const RowMatrix>& B,
                       Eigen::Ref<Matrix> C);

}  // namespace ess
