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

// H_iᵀH_i as Spectra's JD solvers see an operator: rows(), cols(), op * block. On H_i's support
// written out (two GEMMs per product) when the engine could afford it, else through the family's
// products (one pass over its factors per product).
class GramOperator {
 public:
  using Scalar = double;
  GramOperator(const BlockProducts& products, int i, const Matrix* H)
      : products_(products), i_(i), H_(H), n_(H ? static_cast<int>(H->cols()) : i) {}
  Index rows() const { return n_; }
  Index cols() const { return n_; }
  Matrix operator*(const Eigen::Ref<const Matrix>& X) const {
    Matrix Y(n_, X.cols());
    if (H_ != nullptr) {
      Z_.resize(H_->rows(), X.cols());
      blas_gemm(false, false, 1.0, *H_, X, 0.0, Z_);
      blas_gemm(true, false, 1.0, *H_, Z_, 0.0, Y);
    } else {
      products_.gram(i_, X, Y);
    }
    return Y;
  }

 private:
  const BlockProducts& products_;
  int i_;
  const Matrix* H_;
  int n_;
  mutable Matrix Z_;
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

// Whether the Krylov solver for k values of an m × n block (n: the Gram operator's dimension,
// r = min(m, n)) is expected to cost less than a dense SVD of the block, in GEMM flop equivalents:
// dgesdd ≈ 4·m·n·r flops at about a third of GEMM speed; the solver ≈ 15 iterations of a Gram
// product (4·m·n·w) plus a Rayleigh–Ritz step on a search space of up to 4w vectors (an
// eigendecomposition of (4w)³ at about a tenth of GEMM speed), w = block_width(k).
bool krylov_cheaper(int k, int m, int n, int r, bool compare_cost) {
  const double w = block_width(k);
  if (3 * w > n) return false;  // the search space would not fit
  if (!compare_cost) return true;
  const double krylov = 15.0 * (4.0 * w * m * n + 640.0 * w * w * w);
  const double dense = 12.0 * m * n * static_cast<double>(r);
  return krylov < dense;
}

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
    const int i = indices[pos];
    // The solver works on H_i's support (a window head's w × w corner): σ(H_i) are its σ.
    BlockSupport sup = products.support(i);
    if (sup.rows <= 0 || sup.cols <= 0) sup = {0, L - i, 0, i};
    const int m = sup.rows, r = std::min(sup.rows, sup.cols);
    SpectrumSink::Partial out;
    out.rank_bound = r;
    // Written out once when it fits: every later product is a GEMM on it, the dense SVD needs it.
    const bool cached = 8.0 * m * sup.cols <= o.max_block_bytes;
    if (cached) {
      H.resize(m, sup.cols);
      products.materialize_block(i, H);
    }
    const int n = cached ? sup.cols : i;  // the Gram operator's dimension
    // The whole spectrum by a dense SVD of the support (false when it was too large to write out).
    auto whole_spectrum = [&]() {
      if (!cached) return false;
      const double f2 = H.squaredNorm();
      sigma.assign(r, 0.0);
      const bool ok = singular_values(m, sup.cols, H.data(), sigma.data(), work, iwork);
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
    if ((k > o.full_fraction * r || !krylov_cheaper(k, m, n, r, o.compare_cost)) && whole_spectrum()) continue;

    const double f2 = products.frobenius2(i);
    const double tol = std::max(o.residual_rtol * f2, 1e-300);
    out.frobenius2 = f2;
    GramOperator op(products, i, cached ? &H : nullptr);
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
      if ((next > o.full_fraction * r || !krylov_cheaper(next, m, n, r, o.compare_cost)) && whole_spectrum()) {
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
