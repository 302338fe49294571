// Structured engine: square-root Gramian recursion on a state-space realization (DESIGN §4).
//
// With h_t = A_t h_{t−1} + B_t x_t and y_t = C_tᵀ h_t, the block H_i = T[i:, :i] factors as
//   H_i = O_i R_i,   R_i = [A_{i−1}⋯A_1 B_0, …, A_{i−1} B_{i−2}, B_{i−1}]   (N × i, reaches h_{i−1})
//                    O_i = O'_i A_i,  O'_i = [C_iᵀ; O'_{i+1} A_{i+1}]          ((L−i) × N, observes h_i).
// We never form R_i or O'_i: we carry N×N triangular factors F_i, W_i with R_i R_iᵀ = F_iᵀ F_i and
// O'_iᵀ O'_i = W_iᵀ W_i, updated by QR as one row is appended per step:
//   F_{i+1} = qr_R([F_i A_iᵀ; B_iᵀ]),   W_i = qr_R([C_iᵀ; W_{i+1} A_{i+1}]).
// Then σ(H_i) = σ(W_i A_i F_iᵀ), an N×N product. Decays are applied one step at a time.
// Cost O(L·N²) per step for diagonal transitions (Givens), O(L·N³) otherwise, plus one N×N SVD
// per requested block. (Square-root method as in balanced truncation, e.g. Antoulas,
// "Approximation of Large-Scale Dynamical Systems", 2005, §7.)
#include <cmath>

#include "libess/engine.h"

namespace ess {
namespace {

// Re-triangularize after appending row r below the upper-triangular U (Givens, O(N²)).
// Requires U upper-triangular on entry; r is zeroed.
void givens_append_row(Matrix& U, Eigen::Ref<Eigen::RowVectorXd> r) {
  const Index n = U.cols();
  for (Index k = 0; k < n; ++k) {
    const double b = r(k);
    if (b == 0.0) continue;
    const double a = U(k, k);
    const double rho = std::hypot(a, b);
    const double c = a / rho, s = b / rho;
    U(k, k) = rho;
    r(k) = 0.0;
    for (Index j = k + 1; j < n; ++j) {
      const double u = U(k, j), v = r(j);
      U(k, j) = c * u + s * v;
      r(j) = -s * u + c * v;
    }
  }
}

// General case: R factor of the (N+1)×N matrix [U; r] by Householder QR; U receives R.
struct HouseholderAppend {
  Matrix stacked;
  Eigen::HouseholderQR<Matrix> qr;
  explicit HouseholderAppend(Index n) : stacked(n + 1, n), qr(n + 1, n) {}
  void operator()(Matrix& U, const Eigen::Ref<const Eigen::RowVectorXd>& r) {
    const Index n = U.cols();
    stacked.topRows(n) = U;
    stacked.row(n) = r;
    qr.compute(stacked);
    U = qr.matrixQR().topRows(n).triangularView<Eigen::Upper>();
  }
};

}  // namespace

void structured_block_spectra(const Realization& r, const std::vector<int>& indices, SpectrumSink& sink) {
  const int L = r.length(), N = r.state_dim();
  if (indices.empty()) return;
  const bool diagonal = r.diagonal_transitions();
  HouseholderAppend householder(N);
  Eigen::RowVectorXd row(N);
  auto append = [&](Matrix& U, const Eigen::Ref<const Vector>& v) {
    row = v.transpose();
    if (diagonal)
      givens_append_row(U, row);
    else
      householder(U, row);
  };

  // Backward pass: W_i for every requested i (stored), starting from W_L = 0.
  const int first = indices.front();
  std::vector<Matrix> W(indices.size(), Matrix::Zero(N, N));
  Matrix Wc = Matrix::Zero(N, N);
  int next = static_cast<int>(indices.size()) - 1;
  for (int t = L - 1; t >= first && next >= 0; --t) {
    if (t + 1 < L) r.right_multiply_A(t + 1, Wc);  // W_{t+1} A_{t+1}
    append(Wc, r.C(t));                              // stack C_tᵀ
    if (t == indices[next]) W[next--] = Wc;
  }

  // Forward pass: F_i from F_0 = 0; at each requested i, σ(W_i A_i F_iᵀ).
  Matrix F = Matrix::Zero(N, N), M(N, N), P(N, N);
  std::vector<double> s(N), work;
  std::vector<int> iwork;
  size_t pos = 0;
  for (int t = 0; t < L && pos < indices.size(); ++t) {
    // Here F = F_t (reaches h_{t−1}). Block i = t is ready.
    if (t == indices[pos]) {
      M = W[pos];
      r.right_multiply_A(t, M);  // O_i = O'_i A_i
      P.noalias() = M * F.transpose();
      bool finite = P.allFinite();
      bool ok = finite && singular_values(N, N, P.data(), s.data(), work, iwork);
      sink.block(static_cast<int>(pos), s.data(), N, 0.0, ok);
      W[pos].resize(0, 0);  // release
      ++pos;
    }
    if (t > 0) r.right_multiply_At(t, F);  // F_t A_tᵀ
    append(F, r.B(t));                       // stack B_tᵀ → F_{t+1}
  }
}

}  // namespace ess
