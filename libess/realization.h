// Time-varying state-space realization of one channel's operator T (DESIGN §3):
//   h_t = A_t h_{t-1} + B_t x_t,   y_t = C_tᵀ h_t,   so T_ij = C_iᵀ A_i ⋯ A_{j+1} B_j  (i ≥ j).
// Families differ only in how they store A_t; the engines see this small interface.
#pragma once
#include <memory>
#include <string>

#include "libess/types.h"

namespace ess {

class Realization {
 public:
  virtual ~Realization() = default;
  virtual int state_dim() const = 0;
  virtual int length() const = 0;
  // Input and output maps at step t (length state_dim()).
  virtual Eigen::Ref<const Vector> B(int t) const = 0;
  virtual Eigen::Ref<const Vector> C(int t) const = 0;
  // M ← M · A_t   (M has state_dim() columns)
  virtual void right_multiply_A(int t, Eigen::Ref<Matrix> M) const = 0;
  // M ← M · A_tᵀ
  virtual void right_multiply_At(int t, Eigen::Ref<Matrix> M) const = 0;
  // True when every A_t is diagonal (column scaling keeps triangular factors triangular).
  virtual bool diagonal_transitions() const { return false; }
  // The diagonal of A_t (state_dim() values); only meaningful when diagonal_transitions().
  virtual void transition_diagonal(int t, double* out) const;
  // A_t = s (I − β k kᵀ) with k of length state_dim() (DeltaNet): true and the factors, or false.
  // Lets the structured engine keep its factors triangular by an O(N²) QR update.
  struct RankOne {
    double s = 1, beta = 0;
    const double* k = nullptr;
  };
  virtual bool rank_one_transition(int, RankOne*) const { return false; }
  virtual std::string kind() const = 0;
};

// A_t = diag(a(:, t)); a has one column (time-invariant) or L columns.
class DiagonalRealization final : public Realization {
 public:
  DiagonalRealization(Matrix a, Matrix B, Matrix C);  // a: N×(1|L), B,C: N×L
  int state_dim() const override { return static_cast<int>(B_.rows()); }
  int length() const override { return static_cast<int>(B_.cols()); }
  Eigen::Ref<const Vector> B(int t) const override { return B_.col(t); }
  Eigen::Ref<const Vector> C(int t) const override { return C_.col(t); }
  void right_multiply_A(int t, Eigen::Ref<Matrix> M) const override;
  void right_multiply_At(int t, Eigen::Ref<Matrix> M) const override { right_multiply_A(t, M); }
  bool diagonal_transitions() const override { return true; }
  void transition_diagonal(int t, double* out) const override;
  std::string kind() const override { return "diagonal"; }

 private:
  Matrix a_, B_, C_;
};

// A_t = a_t · I (scalar decay, e.g. Mamba2 per head); a: length 1 (time-invariant) or L.
class ScalarRealization final : public Realization {
 public:
  ScalarRealization(Vector a, Matrix B, Matrix C);
  int state_dim() const override { return static_cast<int>(B_.rows()); }
  int length() const override { return static_cast<int>(B_.cols()); }
  Eigen::Ref<const Vector> B(int t) const override { return B_.col(t); }
  Eigen::Ref<const Vector> C(int t) const override { return C_.col(t); }
  void right_multiply_A(int t, Eigen::Ref<Matrix> M) const override;
  void right_multiply_At(int t, Eigen::Ref<Matrix> M) const override { right_multiply_A(t, M); }
  bool diagonal_transitions() const override { return true; }
  void transition_diagonal(int t, double* out) const override;
  std::string kind() const override { return "scalar"; }

 private:
  Vector a_;
  Matrix B_, C_;
};

// A_t = A (one dense N×N matrix for all t), e.g. S4D with complex pairs as real 2×2 blocks.
class DenseInvariantRealization final : public Realization {
 public:
  DenseInvariantRealization(Matrix A, Matrix B, Matrix C);
  int state_dim() const override { return static_cast<int>(B_.rows()); }
  int length() const override { return static_cast<int>(B_.cols()); }
  Eigen::Ref<const Vector> B(int t) const override { return B_.col(t); }
  Eigen::Ref<const Vector> C(int t) const override { return C_.col(t); }
  void right_multiply_A(int t, Eigen::Ref<Matrix> M) const override;
  void right_multiply_At(int t, Eigen::Ref<Matrix> M) const override;
  std::string kind() const override { return "dense_invariant"; }

 private:
  Matrix A_, B_, C_;
  mutable Matrix work_;
};

// A_t = s_t (I − β_t k_t k_tᵀ): DeltaNet / Gated DeltaNet transitions (rank-one update of a scalar).
class DeltaRealization final : public Realization {
 public:
  // s: L gate factors e^{g_t}; beta: L; K: N×L keys; B, C: N×L.
  DeltaRealization(Vector s, Vector beta, Matrix K, Matrix B, Matrix C);
  int state_dim() const override { return static_cast<int>(B_.rows()); }
  int length() const override { return static_cast<int>(B_.cols()); }
  Eigen::Ref<const Vector> B(int t) const override { return B_.col(t); }
  Eigen::Ref<const Vector> C(int t) const override { return C_.col(t); }
  void right_multiply_A(int t, Eigen::Ref<Matrix> M) const override;
  void right_multiply_At(int t, Eigen::Ref<Matrix> M) const override { right_multiply_A(t, M); }
  bool rank_one_transition(int t, RankOne* out) const override {
    *out = {s_(t), beta_(t), K_.data() + static_cast<Index>(t) * K_.rows()};
    return true;
  }
  std::string kind() const override { return "delta"; }

 private:
  Vector s_, beta_;
  Matrix K_, B_, C_;
  mutable Vector work_;
};

// Shift register of a convolution with K taps: state h_t = (x_t, x_{t-1}, …, x_{t-K+1}),
// A = lower shift, B_t = pre_t e_0, C_t = post_t · (h[0], …, h[K-1]).
class ShiftRealization final : public Realization {
 public:
  ShiftRealization(Matrix B, Matrix C);  // both K×L
  int state_dim() const override { return static_cast<int>(B_.rows()); }
  int length() const override { return static_cast<int>(B_.cols()); }
  Eigen::Ref<const Vector> B(int t) const override { return B_.col(t); }
  Eigen::Ref<const Vector> C(int t) const override { return C_.col(t); }
  void right_multiply_A(int t, Eigen::Ref<Matrix> M) const override;
  void right_multiply_At(int t, Eigen::Ref<Matrix> M) const override;
  std::string kind() const override { return "shift"; }

 private:
  Matrix B_, C_;
};

// y = T x by running the realization's recurrence (tests: must equal the materialized T).
Vector run_recurrence(const Realization& r, const Vector& x);
// Dense T from the realization (L×L, lower-triangular), by the same recurrence on unit inputs.
Matrix materialize(const Realization& r);

}  // namespace ess
