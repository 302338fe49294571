#include "libess/block_products.h"

#include "libess/parallel.h"

#include <cblas.h>

#include <algorithm>
#include <stdexcept>

namespace ess {

void BlockProducts::gram(int i, const Eigen::Ref<const Matrix>& X, Eigen::Ref<Matrix> Y) const {
  Matrix Z(seq_len() - i, X.cols());
  apply(i, X, Z);
  apply_transpose(i, Z, Y);
}

void BlockProducts::materialize_block(int i, Eigen::Ref<Matrix> H) const { apply(i, Matrix::Identity(i, i), H); }

void DenseBlockProducts::apply(int i, const Eigen::Ref<const Matrix>& X, Eigen::Ref<Matrix> Y) const {
  const int L = seq_len();
  blas_gemm(false, false, 1.0, T_.block(i, 0, L - i, i), X, 0.0, Y);
}

void DenseBlockProducts::apply_transpose(int i, const Eigen::Ref<const Matrix>& X, Eigen::Ref<Matrix> Y) const {
  const int L = seq_len();
  blas_gemm(true, false, 1.0, T_.block(i, 0, L - i, i), X, 0.0, Y);
}

double DenseBlockProducts::frobenius2(int i) const { return T_.block(i, 0, seq_len() - i, i).squaredNorm(); }

void DenseBlockProducts::materialize_block(int i, Eigen::Ref<Matrix> H) const { H = T_.block(i, 0, seq_len() - i, i); }

// Row-state form of the recurrence, as LayerOperator::multiply: M = [h⁽¹⁾ … h⁽ᵖ⁾]ᵀ (p × N),
// h ← A_t h + B_t x_t  ⇔  M ← M A_tᵀ + x_t B_tᵀ.
void RealizationBlockProducts::apply(int i, const Eigen::Ref<const Matrix>& X, Eigen::Ref<Matrix> Y) const {
  const Realization& r = *r_;
  Matrix M = Matrix::Zero(X.cols(), r.state_dim());
  for (int t = 0; t < i; ++t) {  // R_i x: the state after step i−1
    r.right_multiply_At(t, M);
    M.noalias() += X.row(t).transpose() * r.B(t).transpose();
  }
  for (int t = i; t < r.length(); ++t) {  // O_i h: no input from step i on
    r.right_multiply_At(t, M);
    Y.row(t - i).noalias() = (M * r.C(t)).transpose();
  }
}

// (H_iᵀ y)_s = B_sᵀ A_{s+1}ᵀ ⋯ A_tᵀ C_t y_t summed over t ≥ i: the adjoint recurrence run backwards,
// u ← A_{t+1}ᵀ u + C_t y_t (in row form uᵀ ← uᵀ A_{t+1}).
void RealizationBlockProducts::apply_transpose(int i, const Eigen::Ref<const Matrix>& X, Eigen::Ref<Matrix> Y) const {
  const Realization& r = *r_;
  const int L = r.length();
  Matrix U = Matrix::Zero(X.cols(), r.state_dim());
  for (int t = L - 1; t >= i; --t) {
    if (t + 1 < L) r.right_multiply_A(t + 1, U);
    U.noalias() += X.row(t - i).transpose() * r.C(t).transpose();
  }
  for (int s = i - 1; s >= 0; --s) {
    r.right_multiply_A(s + 1, U);
    Y.row(s).noalias() = (U * r.B(s)).transpose();
  }
}

// ‖O_i R_i‖_F² = trace(P Q): P = R_i R_iᵀ (P ← A_t P A_tᵀ + B_t B_tᵀ for t < i),
// Q = O_iᵀ O_i (Q ← A_{t+1}ᵀ Q A_{t+1} + C_t C_tᵀ backwards from L−1 to i, then A_iᵀ Q A_i).
double RealizationBlockProducts::frobenius2(int i) const {
  const Realization& r = *r_;
  const int L = r.length(), N = r.state_dim();
  Matrix P = Matrix::Zero(N, N), Q = Matrix::Zero(N, N), W;
  auto conjugate_A = [&](int t, Matrix& S) {  // S ← A_t S A_tᵀ
    r.right_multiply_At(t, S);
    W = S.transpose();
    r.right_multiply_At(t, W);
    S = W;
  };
  auto conjugate_At = [&](int t, Matrix& S) {  // S ← A_tᵀ S A_t
    r.right_multiply_A(t, S);
    W = S.transpose();
    r.right_multiply_A(t, W);
    S = W;
  };
  for (int t = 0; t < i; ++t) {
    conjugate_A(t, P);
    P.noalias() += r.B(t) * r.B(t).transpose();
  }
  for (int t = L - 1; t >= i; --t) {
    if (t + 1 < L) conjugate_At(t + 1, Q);
    Q.noalias() += r.C(t) * r.C(t).transpose();
  }
  conjugate_At(i, Q);
  return std::max(0.0, (P.array() * Q.array()).sum());
}

void blas_gemm(bool transpose_a, bool transpose_b, double alpha, const Eigen::Ref<const Matrix>& A,
               const Eigen::Ref<const Matrix>& B, double beta, Eigen::Ref<Matrix> C) {
  const Index m = C.rows(), n = C.cols(), k = transpose_a ? A.rows() : A.cols();
  if ((transpose_a ? A.cols() : A.rows()) != m || (transpose_b ? B.rows() : B.cols()) != n ||
      (transpose_b ? B.cols() : B.rows()) != k)
    throw std::invalid_argument("blas_gemm: inconsistent shapes");
  if (m == 0 || n == 0) return;
  if (k == 0) {
    if (beta == 0)
      C.setZero();
    else
      C *= beta;
    return;
  }
  // A leading dimension BLAS accepts: Eigen reports an arbitrary outer stride for one-column views.
  auto leading = [](const auto& M) {
    return static_cast<long>(M.cols() <= 1 ? std::max<Index>(M.rows(), 1) : M.outerStride());
  };
  const long lda = leading(A), ldb = leading(B), ldc = leading(C);
  // Tiles of C of a fixed size, each one BLAS call (the BLAS single-threaded), spread over
  // gemm_threads() (libess/parallel.h): the tiles, and so every bit of C, never depend on the
  // number of threads. (OpenBLAS's own threads cut the columns by their count, and a cut off its
  // kernel's width changes the order of the sums.) K is never cut.
  const Index tiles_m = (m + kGemmTileRows - 1) / kGemmTileRows, tiles_n = (n + kGemmTileCols - 1) / kGemmTileCols;
  parallel_for(static_cast<int>(tiles_m * tiles_n), [&](int t) {
    const Index r0 = (t % tiles_m) * kGemmTileRows, c0 = (t / tiles_m) * kGemmTileCols;
    const Index rows = std::min(kGemmTileRows, m - r0), cols = std::min(kGemmTileCols, n - c0);
    const double* a = A.data() + (transpose_a ? r0 * lda : r0);
    const double* b = B.data() + (transpose_b ? c0 : c0 * ldb);
    cblas_dgemm(CblasColMajor, transpose_a ? CblasTrans : CblasNoTrans, transpose_b ? CblasTrans : CblasNoTrans,
                static_cast<int>(rows), static_cast<int>(cols), static_cast<int>(k), alpha, a, static_cast<int>(lda), b,
                static_cast<int>(ldb), beta, C.data() + r0 + c0 * ldc, static_cast<int>(ldc));
  });
}

void blas_gemm_xw(const Eigen::Ref<const Matrix>& X, const Eigen::Ref<const RowMatrix>& W, bool transpose_w,
                  Eigen::Ref<Matrix> Y) {
  // A row-major W [r, c] is the column-major Wᵀ [c, r] with the same leading dimension.
  const Eigen::Map<const Matrix, 0, Eigen::OuterStride<>> Wt(W.data(), W.cols(), W.rows(),
                                                             Eigen::OuterStride<>(W.outerStride()));
  blas_gemm(false, !transpose_w, 1.0, X, Wt, 0.0, Y);
}

void blas_gemm_rows_nt(double alpha, const Eigen::Ref<const RowMatrix>& A, const Eigen::Ref<const RowMatrix>& B,
                       Eigen::Ref<Matrix> C) {
  // Row-major A [m, k] and B [n, k] are the column-major Aᵀ [k, m] and Bᵀ [k, n]: C = (Aᵀ)ᵀ (Bᵀ).
  const Eigen::Map<const Matrix, 0, Eigen::OuterStride<>> At(A.data(), A.cols(), A.rows(),
                                                             Eigen::OuterStride<>(A.outerStride()));
  const Eigen::Map<const Matrix, 0, Eigen::OuterStride<>> Bt(B.data(), B.cols(), B.rows(),
                                                             Eigen::OuterStride<>(B.outerStride()));
  blas_gemm(true, false, alpha, At, Bt, 0.0, C);
}

}  // namespace ess
