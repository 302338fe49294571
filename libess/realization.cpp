#include "libess/realization.h"

#include <algorithm>
#include <stdexcept>

namespace ess {

void Realization::transition_diagonal(int t, double* out) const {
  Eigen::Map<Eigen::RowVectorXd> d(out, state_dim());
  d.setOnes();
  right_multiply_A(t, d);
}

DiagonalRealization::DiagonalRealization(Matrix a, Matrix B, Matrix C)
    : a_(std::move(a)), B_(std::move(B)), C_(std::move(C)) {
  if (a_.rows() != B_.rows() || C_.rows() != B_.rows() || C_.cols() != B_.cols() ||
      (a_.cols() != 1 && a_.cols() != B_.cols()))
    throw std::invalid_argument("DiagonalRealization: inconsistent shapes");
}

void DiagonalRealization::transition_diagonal(int t, double* out) const {
  const double* a = a_.data() + (a_.cols() == 1 ? 0 : static_cast<Index>(t) * a_.rows());
  std::copy(a, a + a_.rows(), out);
}

void DiagonalRealization::right_multiply_A(int t, Eigen::Ref<Matrix> M) const {
  const auto a = a_.col(a_.cols() == 1 ? 0 : t);
  M.array().rowwise() *= a.transpose().array();
}

ScalarRealization::ScalarRealization(Vector a, Matrix B, Matrix C)
    : a_(std::move(a)), B_(std::move(B)), C_(std::move(C)) {
  if (C_.rows() != B_.rows() || C_.cols() != B_.cols() || (a_.size() != 1 && a_.size() != B_.cols()))
    throw std::invalid_argument("ScalarRealization: inconsistent shapes");
}

void ScalarRealization::transition_diagonal(int t, double* out) const {
  std::fill(out, out + state_dim(), a_(a_.size() == 1 ? 0 : t));
}

void ScalarRealization::right_multiply_A(int t, Eigen::Ref<Matrix> M) const { M *= a_(a_.size() == 1 ? 0 : t); }

DenseInvariantRealization::DenseInvariantRealization(Matrix A, Matrix B, Matrix C)
    : A_(std::move(A)), B_(std::move(B)), C_(std::move(C)) {
  if (A_.rows() != B_.rows() || A_.cols() != B_.rows() || C_.rows() != B_.rows() || C_.cols() != B_.cols())
    throw std::invalid_argument("DenseInvariantRealization: inconsistent shapes");
}

void DenseInvariantRealization::right_multiply_A(int, Eigen::Ref<Matrix> M) const {
  work_.noalias() = M * A_;
  M = work_;
}

void DenseInvariantRealization::right_multiply_At(int, Eigen::Ref<Matrix> M) const {
  work_.noalias() = M * A_.transpose();
  M = work_;
}

DeltaRealization::DeltaRealization(Vector s, Vector beta, Matrix K, Matrix B, Matrix C)
    : s_(std::move(s)), beta_(std::move(beta)), K_(std::move(K)), B_(std::move(B)), C_(std::move(C)) {
  if (K_.rows() != B_.rows() || C_.rows() != B_.rows() || K_.cols() != B_.cols() || C_.cols() != B_.cols() ||
      s_.size() != B_.cols() || beta_.size() != B_.cols())
    throw std::invalid_argument("DeltaRealization: inconsistent shapes");
}

// M A_t = s_t (M − β_t (M k_t) k_tᵀ); A_t is symmetric.
void DeltaRealization::right_multiply_A(int t, Eigen::Ref<Matrix> M) const {
  const auto k = K_.col(t);
  work_.noalias() = M * k;
  M.noalias() -= (beta_(t) * work_) * k.transpose();
  M *= s_(t);
}

ShiftRealization::ShiftRealization(Matrix B, Matrix C) : B_(std::move(B)), C_(std::move(C)) {
  if (C_.rows() != B_.rows() || C_.cols() != B_.cols())
    throw std::invalid_argument("ShiftRealization: inconsistent shapes");
}

// A has ones on the first subdiagonal: (M A)[:, c] = M[:, c+1], last column 0.
void ShiftRealization::right_multiply_A(int, Eigen::Ref<Matrix> M) const {
  const Index k = M.cols();
  for (Index c = 0; c + 1 < k; ++c) M.col(c) = M.col(c + 1);
  M.col(k - 1).setZero();
}

// (M Aᵀ)[:, c] = M[:, c-1], first column 0.
void ShiftRealization::right_multiply_At(int, Eigen::Ref<Matrix> M) const {
  const Index k = M.cols();
  for (Index c = k - 1; c > 0; --c) M.col(c) = M.col(c - 1);
  M.col(0).setZero();
}

Vector run_recurrence(const Realization& r, const Vector& x) {
  const int L = r.length(), N = r.state_dim();
  Matrix h = Matrix::Zero(1, N);  // hᵀ as a row
  Vector y(L);
  for (int t = 0; t < L; ++t) {
    r.right_multiply_At(t, h);  // hᵀ ← hᵀ A_tᵀ  (h ← A_t h)
    h += x(t) * r.B(t).transpose();
    y(t) = h.row(0).dot(r.C(t).transpose());
  }
  return y;
}

Matrix materialize(const Realization& r) {
  const int L = r.length(), N = r.state_dim();
  Matrix T = Matrix::Zero(L, L);
  // Row j of P holds (A_t ⋯ A_{j+1} B_j)ᵀ, the state contributed by input j at time t.
  Matrix P = Matrix::Zero(L, N);
  for (int t = 0; t < L; ++t) {
    if (t > 0) r.right_multiply_At(t, P.topRows(t));
    P.row(t) = r.B(t).transpose();
    T.row(t).head(t + 1) = (P.topRows(t + 1) * r.C(t)).transpose();
  }
  return T;
}

}  // namespace ess
