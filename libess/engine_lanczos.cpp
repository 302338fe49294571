// Lanczos engine: the largest singular values of H_i from products with H_i and H_iᵀ only
// (libess/block_products.h), never forming T. Eigenvalues λ = σ² of the Gram operator H_iᵀH_i come
// from a block Krylov eigensolver built on Spectra's Jacobi–Davidson framework (JDSymEigsBase:
// search space, Rayleigh–Ritz, restarts, residual test): each iteration extends the search space by
// the residuals of the unconverged Ritz pairs (Davidson without a preconditioner, i.e. block
// Lanczos with thick restarts), so every product with H_i is a product with a block of vectors —
// one pass over the family's factors per iteration, whatever the block width.
#include <Spectra/JDSymEigsBase.h>

#include <algorithm>
#include <cmath>
#include <random>

#include "libess/engine.h"

namespace ess {

namespace {

// H_iᵀH_i as Spectra's JD solvers see an operator: rows(), cols(), op * block.
class GramOperator {
 public:
  using Scalar = double;
  GramOperator(const BlockProducts& products, int i) : products_(products), i_(i) {}
  Index rows() const { return i_; }
  Index cols() const { return i_; }
  Matrix operator*(const Eigen::Ref<const Matrix>& X) const {
    Matrix Y(i_, X.cols());
    products_.gram(i_, X, Y);
    return Y;
  }

 private:
  const BlockProducts& products_;
  int i_;
};

// Davidson's correction with the identity for a preconditioner: the residuals G v − λ v of the
// first `width` Ritz pairs that have not converged. The search space is then a block Krylov space.
class KrylovEigensolver final : public Spectra::JDSymEigsBase<KrylovEigensolver, GramOperator> {
  using Base = Spectra::JDSymEigsBase<KrylovEigensolver, GramOperator>;

 public:
  KrylovEigensolver(GramOperator& op, Index nev, Index width, Index max_size, double tol)
      : Base(op, nev, width, max_size), width_(width), tol_(tol) {}

  Matrix setup_initial_search_space(Spectra::SortRule) const {  // unused: compute_with_guess
    return Matrix::Identity(this->m_matrix_operator.rows(), width_);
  }

  Matrix calculate_correction_vector() const {
    const Matrix& R = this->m_ritz_pairs.residues();
    const Index n = std::min<Index>(width_, R.cols());
    std::vector<Index> open;
    for (Index j = 0; j < n; ++j)
      if (R.col(j).norm() >= tol_) open.push_back(j);
    if (open.empty()) open.push_back(0);
    Matrix out(R.rows(), static_cast<Index>(open.size()));
    for (size_t k = 0; k < open.size(); ++k) out.col(static_cast<Index>(k)) = R.col(open[k]);
    return out;
  }

  Vector residual_norms() const { return this->m_ritz_pairs.residues().colwise().norm().transpose(); }

 private:
  Index width_;
  double tol_;
};

// Block width for k wanted values: a few extra vectors speed convergence of the k-th.
int block_width(int k) { return k + std::max(8, k / 2); }

// Orthonormal n × width start: `keep` (previous Ritz vectors) first, Gaussian columns after.
Matrix start_block(int n, int width, const Matrix& keep, unsigned seed) {
  Matrix V(n, width);
  const Index kept = std::min<Index>(keep.cols(), width);
  if (kept > 0) V.leftCols(kept) = keep.leftCols(kept);
  std::mt19937 rng(seed);
  std::normal_distribution<double> normal(0.0, 1.0);
  for (Index c = kept; c < width; ++c)
    for (Index r = 0; r < n; ++r) V(r, c) = normal(rng);
  Eigen::HouseholderQR<Matrix> qr(V);
  return qr.householderQ() * Matrix::Identity(n, width);
}

}  // namespace

void lanczos_block_spectra(const BlockProducts& products, const std::vector<int>& indices, const LanczosOptions& o,
                           SpectrumSink& sink) {
  const int L = products.seq_len();
  int hint = std::max(1, o.initial_k);
  std::vector<double> sigma, work;
  std::vector<int> iwork;
  Matrix H;
  // The next block starts from this block's tolerance-ESS (neighbouring blocks have similar ranks).
  auto next_hint = [&](const double* s, int count) {
    const double threshold = o.tol_mode == TolMode::absolute ? o.tol : o.tol * (count > 0 ? s[0] : 0.0);
    const int above = count_above(s, count, threshold);
    return std::max(o.initial_k, above + above / 2 + 8);
  };
  products.prepare(indices);
  for (size_t pos = 0; pos < indices.size(); ++pos) {
    const int i = indices[pos], m = L - i, n = i, r = std::min(m, n);
    SpectrumSink::Partial out;
    out.rank_bound = r;
    // The whole spectrum by a dense SVD of H_i (false when H_i is too large to write out).
    auto whole_spectrum = [&]() {
      if (8.0 * m * n > o.max_block_bytes) return false;
      H.resize(m, n);
      products.materialize_block(i, H);
      const double f2 = H.squaredNorm();
      sigma.assign(r, 0.0);
      const bool ok = singular_values(m, n, H.data(), sigma.data(), work, iwork);
      out.sigma = sigma.data();
      out.count = r;
      out.frobenius2 = f2;
      out.converged = ok;
      out.certified = true;
      sink.partial_block(static_cast<int>(pos), out);
      hint = next_hint(sigma.data(), r);
      return true;
    };
    int k = std::min(hint, r);
    if ((k > o.full_fraction * r || 3 * block_width(k) > n) && whole_spectrum()) continue;

    const double f2 = products.frobenius2(i);
    const double tol = std::max(o.residual_rtol * f2, 1e-300);
    out.frobenius2 = f2;
    GramOperator op(products, i);
    Matrix ritz;
    for (;;) {
      const int width = block_width(k);
      if (3 * width > n) {  // the search space would not fit: report what we have, uncertified
        out.certified = false;
        break;
      }
      const Matrix guess = start_block(n, width, ritz, 0x9e3779b9u ^ static_cast<unsigned>(i));
      KrylovEigensolver solver(op, k, width, std::min(4 * width, n - width), tol);
      solver.compute_with_guess(guess, Spectra::SortRule::LargestAlge, o.max_iterations, tol);
      const Vector lambda = solver.eigenvalues();
      const Vector res = solver.residual_norms();
      sigma.assign(k, 0.0);
      double err = 0;
      for (int j = 0; j < k; ++j) {
        sigma[j] = std::sqrt(std::max(lambda(j), 0.0));
        // |λ − λ_exact| ≤ ‖r‖ for a symmetric operator, so |σ − σ_exact| ≤ min(√‖r‖, ‖r‖/σ).
        const double rj = res(j);
        err = std::max(err, sigma[j] > 0 ? std::min(std::sqrt(rj), rj / sigma[j]) : std::sqrt(rj));
      }
      out.sigma = sigma.data();
      out.count = k;
      out.error_bound = err;
      out.converged = solver.info() == Spectra::CompInfo::Successful;
      if (!out.converged) {
        out.certified = false;
        break;
      }
      const double threshold =
          o.tol_mode == TolMode::absolute ? o.tol : tolerance_threshold(TolMode::block, o.tol, sigma[0], 0.0);
      const double res_k = res(k - 1), s_k = sigma[k - 1];
      const double err_k = s_k > 0 ? std::min(std::sqrt(res_k), res_k / s_k) : std::sqrt(res_k);
      if (k == r || s_k + err_k < threshold) {
        out.certified = true;
        break;
      }
      const int next = std::min(2 * k, r);
      if ((next > o.full_fraction * r || 3 * block_width(next) > n) && whole_spectrum()) {
        out.sigma = nullptr;  // already reported
        break;
      }
      ritz = solver.eigenvectors();
      k = next;
    }
    if (out.sigma == nullptr) continue;
    sink.partial_block(static_cast<int>(pos), out);
    hint = next_hint(sigma.data(), out.count);
  }
}

}  // namespace ess
