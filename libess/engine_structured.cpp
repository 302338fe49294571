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

extern "C" void dlasq1_(const int* n, double* d, double* e, double* work, int* info);

namespace ess {
namespace {

// Singular values of a small n×n column-major matrix `a` (destroyed): Householder reduction to
// upper bidiagonal form written out in plain loops (LAPACK's dgebd2 spends most of its time in
// BLAS call overhead at n ≈ 16), then dqds (LAPACK dlasq1) for the bidiagonal's values, which is
// backward stable like dgesdd. `work` needs 7n doubles. Returns false if dqds failed.
bool small_singular_values(int n, double* a, double* d, double* work) {
  double* e = work;      // n
  double* v = work + n;  // n
  auto A = [&](int r, int c) -> double& { return a[r + static_cast<size_t>(c) * n]; };
  for (int k = 0; k < n; ++k) {
    // Left reflector: zero A[k+1:, k].
    double norm2 = 0;
    for (int r = k; r < n; ++r) norm2 += A(r, k) * A(r, k);
    double norm = std::sqrt(norm2);
    if (norm == 0) {
      d[k] = 0;
    } else {
      const double alpha = A(k, k);
      const double beta = alpha > 0 ? -norm : norm;
      const double v0 = alpha - beta, tau = (beta - alpha) / beta;
      v[k] = 1.0;
      for (int r = k + 1; r < n; ++r) v[r] = A(r, k) / v0;
      d[k] = beta;
      // wᵀ = vᵀ A[k:, k+1:] with one accumulator per column (no dependent add chains), then
      // A −= τ v wᵀ column by column.
      double* w = work + 2 * n;
      for (int c = k + 1; c < n; ++c) w[c] = 0;
      for (int r = k; r < n; ++r) {
        const double vr = v[r];
        for (int c = k + 1; c < n; ++c) w[c] += vr * A(r, c);
      }
      for (int c = k + 1; c < n; ++c) {
        const double tw = tau * w[c];
        for (int r = k; r < n; ++r) A(r, c) -= tw * v[r];
      }
    }
    if (k + 1 >= n) break;
    // Right reflector: zero A[k, k+2:].
    norm2 = 0;
    for (int c = k + 1; c < n; ++c) norm2 += A(k, c) * A(k, c);
    norm = std::sqrt(norm2);
    if (norm == 0) {
      e[k] = 0;
      continue;
    }
    const double alpha = A(k, k + 1);
    const double beta = alpha > 0 ? -norm : norm;
    const double v0 = alpha - beta, tau = (beta - alpha) / beta;
    v[k + 1] = 1.0;
    for (int c = k + 2; c < n; ++c) v[c] = A(k, c) / v0;
    e[k] = beta;
    // w = A[k+1:, k+1:] v, then A −= τ w vᵀ, both column by column (contiguous).
    double* w = work + 2 * n;
    for (int r = k + 1; r < n; ++r) w[r] = 0;
    for (int c = k + 1; c < n; ++c) {
      const double vc = v[c];
      for (int r = k + 1; r < n; ++r) w[r] += A(r, c) * vc;
    }
    for (int c = k + 1; c < n; ++c) {
      const double tv = tau * v[c];
      for (int r = k + 1; r < n; ++r) A(r, c) -= w[r] * tv;
    }
  }
  int info = 0;
  dlasq1_(&n, d, e, work + 3 * n, &info);
  return info == 0;
}

// Re-triangularize after appending row r below the upper-triangular U (Givens, O(N²)).
// Requires U upper-triangular on entry; r is zeroed.
void givens_append_row(Matrix& U, Eigen::Ref<Eigen::RowVectorXd> r) {
  const Index n = U.cols();
  for (Index k = 0; k < n; ++k) {
    const double b = r(k);
    if (b == 0.0) continue;
    const double a = U(k, k);
    double rho = std::sqrt(a * a + b * b);
    if (!(rho > 0) || !std::isfinite(rho)) rho = std::hypot(a, b);  // under/overflow of the squares
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

// P = M Fᵀ for upper-triangular M and F (N³/3 multiply-adds instead of N³).
void upper_times_upper_transposed(const Matrix& M, const Matrix& F, Matrix& P) {
  const Index n = M.rows();
  P.setZero();
  for (Index k = 0; k < n; ++k)       // column k of M, column k of F
    for (Index c = 0; c <= k; ++c) {  // P(:, c) += M(:, k) F(c, k), rows 0..k nonzero in M(:, k)
      const double f = F(c, k);
      if (f == 0.0) continue;
      double* pc = P.data() + c * n;
      const double* mk = M.data() + k * n;
      for (Index r = 0; r <= k; ++r) pc[r] += mk[r] * f;
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

  // Backward pass: W_i for every requested i, stored in a per-thread buffer that is reused across
  // channels (fresh pages are expensive to touch), starting from W_L = 0.
  const int first = indices.front();
  thread_local std::vector<double> W_store;
  const size_t NN = static_cast<size_t>(N) * N;
  if (W_store.size() < indices.size() * NN) W_store.resize(indices.size() * NN);
  auto W = [&](size_t pos) { return Eigen::Map<Matrix>(W_store.data() + pos * NN, N, N); };
  Matrix Wc = Matrix::Zero(N, N);
  int next = static_cast<int>(indices.size()) - 1;
  for (int t = L - 1; t >= first && next >= 0; --t) {
    if (t + 1 < L) r.right_multiply_A(t + 1, Wc);  // W_{t+1} A_{t+1}
    append(Wc, r.C(t));                            // stack C_tᵀ
    if (t == indices[next]) W(next--) = Wc;
  }

  // Forward pass: F_i from F_0 = 0; at each requested i, σ(W_i A_i F_iᵀ).
  Matrix F = Matrix::Zero(N, N), M(N, N), P(N, N);
  std::vector<double> s(N), work(7 * static_cast<size_t>(N));
  size_t pos = 0;
  for (int t = 0; t < L && pos < indices.size(); ++t) {
    // Here F = F_t (reaches h_{t−1}). Block i = t is ready.
    if (t == indices[pos]) {
      M = W(pos);
      r.right_multiply_A(t, M);  // O_i = O'_i A_i
      if (diagonal)              // both factors upper-triangular: P_rc = Σ_{k ≥ max(r,c)} M_rk F_ck
        upper_times_upper_transposed(M, F, P);
      else
        P.noalias() = M * F.transpose();
      bool finite = P.allFinite();
      bool ok = finite && small_singular_values(N, P.data(), s.data(), work.data());
      sink.block(static_cast<int>(pos), s.data(), N, 0.0, ok);
      ++pos;
    }
    if (t > 0) r.right_multiply_At(t, F);  // F_t A_tᵀ
    append(F, r.B(t));                     // stack B_tᵀ → F_{t+1}
  }
}

}  // namespace ess
