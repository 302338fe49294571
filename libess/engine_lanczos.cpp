// Lanczos engine: the largest singular values of H_i from products with H_i and H_iᵀ only
// (libess/block_products.h), never forming T. Eigenvalues λ = σ² of the Gram operator H_iᵀH_i come
// from a block Krylov eigensolver built on Spectra's Jacobi–Davidson framework (JDSymEigsBase:
// search space, Rayleigh–Ritz, restarts, residual test): each iteration extends the search space by
// the residuals of the unconverged Ritz pairs (Davidson without a preconditioner, i.e. block
// Lanczos with thick restarts), so every product with H_i is a product with a block of vectors —
// one pass over the family's factors per iteration, whatever the block width.
//
// When H_i's support is in memory (the family's table of T, or the block written out) the engine
// instead runs a randomized block Krylov SVD on it with BLAS only (KrylovSvd below): each step is
// two GEMMs with the block, Rayleigh–Ritz comes from products already made, and a step that would
// make the solver dearer than LAPACK's dense SVD of the block hands the block to the dense SVD.
#include <Spectra/JDSymEigsBase.h>
#include <cblas.h>
#include <lapacke.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <memory>
#include <new>
#include <random>

#include "libess/engine.h"
#include "libess/skinny_gemm.h"

namespace ess {

namespace {

// H_iᵀH_i as Spectra's JD solvers see an operator: rows(), cols(), op * block, through the family's
// products (one pass over its factors per product).
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

// CPU cost of one thread, in ns, measured with this project's OpenBLAS on the 2-core VM (thread
// CPU time): a GEMM of an m × n block with w vectors ≈ 0.06·m·n·w; LAPACK's dgesdd (values only) of
// an m × n block ≈ (0.09 + 0.17·r/max(m, n))·m·n·r with r = min(m, n) (0.21–0.28 square,
// 0.11–0.14 at 3:1 and 4:1). The in-place kernels (libess/skinny_gemm.h) take about half the GEMM
// figure: the model is conservative (the solver gives a block up to the dense SVD early).
double gemm_ns(double m, double n, double w) { return 0.06 * m * n * w; }
double dense_svd_ns(double m, double n) {
  const double r = std::min(m, n);
  return (0.09 + 0.17 * r / std::max(m, n)) * m * n * r;
}

using BlockMap = Eigen::Map<const Matrix, 0, Eigen::OuterStride<>>;
using MatMap = Eigen::Map<Matrix>;

// Grow-only storage for a matrix the solver reuses from block to block: every fresh page costs a
// page fault (on a VM a noticeable part of a block's time), so buffers are kept. Uninitialized;
// only the columns used are ever touched.
class Store {
 public:
  MatMap map(Index rows, Index cols) {
    const size_t need = static_cast<size_t>(std::max<Index>(rows, 0)) * static_cast<size_t>(std::max<Index>(cols, 0));
    if (need > cap_) {
      data_.reset();
      data_.reset(static_cast<double*>(std::malloc(need * sizeof(double))));
      if (!data_) throw std::bad_alloc();
      cap_ = need;
    }
    return MatMap(data_.get(), rows, cols);
  }
  size_t bytes() const { return cap_ * sizeof(double); }
  void release() {
    data_.reset();
    cap_ = 0;
  }

 private:
  struct Free {
    void operator()(double* p) const { std::free(p); }
  };
  std::unique_ptr<double, Free> data_;
  size_t cap_ = 0;
};

// The Krylov solver's buffers, kept for a channel's blocks.
struct KrylovWork {
  Store Q, Bt, HBt, Y, Yw, R1, R2, start, QC;
  Matrix C, G, BB, R, omega;
  Vector r;
  std::vector<double> tau, norms;
  std::vector<char> keep;
  // Bytes of the block-height buffers (the others are basis × basis or Ω, small beside them).
  size_t bytes() const {
    return Q.bytes() + Bt.bytes() + HBt.bytes() + Y.bytes() + Yw.bytes() + R1.bytes() + R2.bytes() + start.bytes() +
           QC.bytes();
  }
};

// Orthonormal columns in place (LAPACK's blocked Householder QR, then its Q).
void orthonormalize(MatMap& Y, std::vector<double>& tau) {
  const lapack_int m = static_cast<lapack_int>(Y.rows()), w = static_cast<lapack_int>(Y.cols());
  if (w == 0) return;
  tau.resize(static_cast<size_t>(w));
  LAPACKE_dgeqrf(LAPACK_COL_MAJOR, m, w, Y.data(), m, tau.data());
  LAPACKE_dorgqr(LAPACK_COL_MAJOR, m, w, w, Y.data(), m, tau.data());
}

// Cholesky QR in place: Y ← Y R⁻¹ with R the Cholesky factor of YᵀY (one GEMM, a w × w factor and
// a triangular solve), when the factor exists and `accept(R)` says it is well enough conditioned;
// false (Y untouched) otherwise.
template <class Accept>
bool cholesky_qr(MatMap& Y, Matrix& R, Accept accept) {
  const lapack_int m = static_cast<lapack_int>(Y.rows()), w = static_cast<lapack_int>(Y.cols());
  R.resize(w, w);
  blas_gemm(true, false, 1.0, Y, Y, 0.0, R);
  if (LAPACKE_dpotrf(LAPACK_COL_MAJOR, 'U', w, R.data(), w) != 0 || !accept(R)) return false;
  cblas_dtrsm(CblasColMajor, CblasRight, CblasUpper, CblasNoTrans, CblasNonUnit, m, w, 1.0, R.data(), w, Y.data(), m);
  return true;
}

// Below this fraction of its norm, what a projection leaves of a column is rounding error: the
// column lay in the span projected out.
constexpr double kCollapsed = 1e-12;

// Moves the columns of Z marked in `keep` to the front; returns how many.
int keep_columns(MatMap& Z, const std::vector<char>& keep) {
  int k = 0;
  for (Index c = 0; c < Z.cols(); ++c)
    if (keep[static_cast<size_t>(c)]) {
      if (k != c) Z.col(k) = Z.col(c);
      ++k;
    }
  return k;
}

// Appends the w columns at Q(:, s) to the orthonormal basis Q(:, 0 : s): projected out of Q twice
// ("twice is enough") and orthonormalized in place; returns how many were kept (now Q(:, s : s +
// kept)). A column that the first projection leaves at rounding level lay in Q's span: a Krylov
// breakdown (H's range is in the space, or a singular value has more copies than the block has
// columns: H H^T maps a block of its singular vectors into their own span). Normalized, that
// rounding error would not be orthogonal to Q, and Ritz values would lose the meaning the
// certificate gives them (lower bounds with residual bounds); dropped, the space could never hold
// more copies of a repeated value than the block width, and the missing copies — a sharp copy or
// induction head's block has hundreds of singular values equal to 1 — would go unnoticed. So such
// a column is replaced, once, by a fresh direction H ω (ω Gaussian), and dropped only if that one
// lies in Q's span too. A block dependent on itself is sorted out after the second projection.
int extend_basis(const BlockMap& H, MatMap& Q, int s, int w, KrylovWork& kw, std::mt19937& rng, double& spent) {
  const Index m = Q.rows(), n = H.cols();
  MatMap Y(Q.col(s).data(), m, w);
  auto project = [&]() {
    const int c = static_cast<int>(Y.cols());
    if (s == 0 || c == 0) return;
    kw.C.resize(s, c);
    skinny_gemm_tn(static_cast<int>(m), s, c, Q.data(), m, Y.data(), m, kw.C.data(), s);
    MatMap QC = kw.QC.map(m, c);
    skinny_gemm_nn(static_cast<int>(m), s, c, Q.data(), m, kw.C.data(), s, QC.data(), m);
    Y -= QC;
    spent += 4 * gemm_ns(m, s, c);
  };
  std::vector<double>& before = kw.norms;
  before.resize(static_cast<size_t>(w));
  for (int c = 0; c < w; ++c) before[c] = Y.col(c).norm();
  project();
  // keep[c] = 0: column c collapsed (replaced below by a fresh direction).
  kw.keep.assign(static_cast<size_t>(w), 1);
  int k = 0;
  for (int c = 0; c < w; ++c)
    if (!(Y.col(c).norm() > kCollapsed * before[c])) kw.keep[c] = 0, ++k;
  if (k > 0) {
    std::normal_distribution<double> normal(0.0, 1.0);
    Matrix omega(n, k), fresh(m, k);
    for (Index j = 0; j < k; ++j)
      for (Index r = 0; r < n; ++r) omega(r, j) = normal(rng);
    skinny_gemm_nn(static_cast<int>(m), static_cast<int>(n), k, H.data(), H.outerStride(), omega.data(), n,
                   fresh.data(), m);
    spent += gemm_ns(m, n, k);
    for (int c = 0, j = 0; c < w; ++c)
      if (!kw.keep[c]) {
        Y.col(c) = fresh.col(j);
        before[c] = fresh.col(j++).norm();
      }
    project();  // the others' second projection comes early: harmless
    for (int c = 0; c < w; ++c) kw.keep[c] = Y.col(c).norm() > kCollapsed * before[c];
    w = keep_columns(Y, kw.keep);
    new (&Y) MatMap(Y.data(), m, w);
  }
  if (w == 0) return 0;
  // Cholesky QR of the columns scaled to unit norm when LAPACK's estimate puts their condition
  // number under 10⁴ (orthogonality then lost ~ε·κ² ≤ 10⁻⁸, which the second projection and
  // factorization below take back, as in CholeskyQR2): a GEMM, a w × w Cholesky factor and a
  // triangular solve, where Householder's QR (kept for worse-conditioned blocks) runs at the
  // speed of matrix–vector products.
  bool orthonormal = false;
  bool scalable = true;
  for (int c = 0; c < w; ++c) {
    before[c] = Y.col(c).norm();  // (the norms before the projection are no longer needed)
    scalable = scalable && std::isfinite(before[c]) && before[c] > 0;
  }
  if (scalable) {
    for (int c = 0; c < w; ++c) Y.col(c) /= before[c];
    orthonormal = cholesky_qr(Y, kw.R, [w](const Matrix& R) {
      double rcond = 0;
      return LAPACKE_dtrcon(LAPACK_COL_MAJOR, '1', 'U', 'N', w, R.data(), w, &rcond) == 0 && rcond >= 1e-4;
    });
  }
  if (!orthonormal) orthonormalize(Y, kw.tau);
  project();
  // The block was orthonormal before this projection, so Cholesky QR (one GEMM, a w × w Cholesky
  // factor and a triangular solve; orthogonality lost ~ε·κ²) is as accurate as Householder and much
  // cheaper — when every diagonal of R is at least ½. A smaller one says the projection took most
  // of a column: the block was numerically dependent on Q or on itself (Householder's columns for a
  // rank-deficient block are arbitrary), and Gram–Schmidt column by column sorts it out.
  if (cholesky_qr(Y, kw.R, [](const Matrix& R) { return R.diagonal().minCoeff() >= 0.5; })) return w;
  // Each column against Q and the columns kept before it, twice; dropped when the first pass leaves
  // rounding error or the second takes more than half of what the first left (DGKS).
  int kept = 0;
  Vector v, h;
  for (int c = 0; c < w; ++c) {
    v = Y.col(c);
    double norm = v.norm();
    bool keep = norm > 0;
    for (int pass = 0; pass < 2 && keep; ++pass) {
      const auto P = Q.leftCols(s + kept);
      h.noalias() = P.transpose() * v;
      v.noalias() -= P * h;
      const double after = v.norm();
      keep = pass == 0 ? after > kCollapsed * norm : after >= 0.5 * norm;
      norm = after;
    }
    if (keep) Q.col(s + kept++) = v / norm;
  }
  spent += 4 * gemm_ns(m, s + w, w);
  return kept;
}

struct KrylovOutcome {
  bool certified = false;    // false: the budget or the subspace limit ran out first, or τ is under the noise
  int count = 0;             // values reported (σ̃_1 … σ̃_count in `sigma`)
  int above = 0;             // of which above the threshold
  double error = 0;          // max over the reported values of ‖r_l‖/√2
  int steps = 0;             // products with H and Hᵀ made (each with one block of vectors)
  int columns = 0;           // the basis' final width
  bool over_budget = false;  // gave up because the next step would have cost more than the dense SVD
};

// Randomized block Krylov SVD (Musco & Musco, NeurIPS 2015) of an m × n block H in memory, with
// Rayleigh–Ritz and residuals from products already made. Q is an orthonormal basis (m × s) of
// [Y₀, (HHᵀ)Y₀, (HHᵀ)²Y₀, …] built a block per step, Bt = HᵀQ (n × s), and HBt = H·Bt (m × s):
// two GEMMs with H per step. Y₀ is HΩ for a Gaussian Ω (cold start) or, warm, the left singular
// vectors of a neighbouring block on the rows it shares with this one, plus Gaussian columns. The
// Ritz values σ̃_l (singular values of QᵀH; eigenvalues of BtᵀBt = X Σ̃² Xᵀ) are lower bounds on
// σ_l(H) (interlacing) whatever Q is. With u = Q x_l and v = Bt x_l / σ̃_l: Hᵀu = σ̃_l v exactly and
// r_l = H v − σ̃_l u = HBt x_l / σ̃_l − σ̃_l Q x_l, so [[0, H], [Hᵀ, 0]] has an eigenvalue — a singular
// value of H — within ‖r_l‖/√2 of σ̃_l. Certified, as the Spectra path: the first σ̃ below the
// threshold plus its error is below the threshold. Reported: that value and the ones before it,
// then further values while their error stays within the largest error so far. The next block
// is (HHᵀ) times the newest one while the space holds no Ritz value below the threshold, then
// HHᵀ u_l = HBt x_l (already formed for the residuals) for the b Ritz vectors nearest the
// threshold: the space grows where the certificate needs it, and stays a block Krylov space of Y₀.
// Gives up (certified = false) when the next step would pass s_max columns or budget_ns.
// `left` receives the left Ritz vectors u_l of the reported values and a few more (warm starts).
KrylovOutcome krylov_svd(const BlockMap& H, int b, int s_max, double budget_ns, int expect, const MatMap& start,
                         int extra, const LanczosOptions& o, unsigned seed, KrylovWork& kw, std::vector<double>& sigma,
                         Matrix& left) {
  const Index m = H.rows(), n = H.cols();
  KrylovOutcome out;
  s_max = static_cast<int>(std::min<Index>({static_cast<Index>(s_max), m, n}));
  b = std::min(b, s_max);
  if (b < 1) return out;
  MatMap Q = kw.Q.map(m, s_max), Bt = kw.Bt.map(n, s_max), HBt = kw.HBt.map(m, s_max), Y = kw.Y.map(m, s_max),
         R1 = kw.R1.map(0, 0), R2 = kw.R2.map(0, 0);
  Matrix& G = kw.G;
  std::mt19937 rng(seed);
  std::normal_distribution<double> normal(0.0, 1.0);
  double spent = 0;
  const bool warm = start.cols() > 0 && start.rows() == m;
  if (warm) {
    const int k0 = static_cast<int>(std::min<Index>(start.cols(), s_max));
    const int g = std::max(0, std::min(extra, s_max - k0));
    new (&Y) MatMap(Y.data(), m, k0 + g);
    Y.leftCols(k0) = start.leftCols(k0);
    for (Index c = k0; c < k0 + g; ++c)
      for (Index r = 0; r < m; ++r) Y(r, c) = normal(rng);
  } else {
    // One Gaussian Ω for all of a channel's blocks, its first n rows and b columns: column c is
    // the stream of a generator seeded by c, so Ω's entries do not depend on the blocks before
    // (drawn again, larger, when a block needs more: at least twice the rows).
    Matrix& omega = kw.omega;
    if (omega.rows() < n || omega.cols() < b) {
      omega.resize(std::max(2 * omega.rows(), n), std::max<Index>({omega.cols(), b, 64}));
      for (Index c = 0; c < omega.cols(); ++c) {
        std::mt19937 column(0x9e3779b9u + static_cast<unsigned>(c));
        std::normal_distribution<double> draw(0.0, 1.0);
        for (Index r = 0; r < omega.rows(); ++r) omega(r, c) = draw(column);
      }
    }
    new (&Y) MatMap(Y.data(), m, b);
    skinny_gemm_nn(static_cast<int>(m), static_cast<int>(n), b, H.data(), H.outerStride(), omega.data(), omega.rows(),
                   Y.data(), m);
    spent += gemm_ns(m, n, b);
  }
  std::vector<double> lambda;
  int s = 0;
  int prev_above = -1;    // values above the threshold at the previous step's Rayleigh–Ritz (−1: none)
  bool complete = false;  // H's range lies in the space: the Ritz values are all its nonzero σ
  for (;;) {
    int w = static_cast<int>(std::min<Index>(Y.cols(), s_max - s));
    MatMap(Q.col(s).data(), m, w) = Y.leftCols(w);
    w = extend_basis(H, Q, s, w, kw, rng, spent);
    if (w == 0) {
      if (s == 0) return out;  // H = 0 to rounding: the dense SVD says so exactly
      complete = true;
    } else {
      skinny_gemm_tn_nn(static_cast<int>(m), static_cast<int>(n), w, H.data(), H.outerStride(), Q.col(s).data(), m,
                        Bt.col(s).data(), n, HBt.col(s).data(), m);
      // BtᵀBt grows by its new columns (upper triangle: what dsyevd reads).
      if (kw.BB.rows() < s_max) kw.BB.resize(s_max, s_max);
      skinny_gemm_tn(static_cast<int>(n), s + w, w, Bt.data(), n, Bt.col(s).data(), n, kw.BB.col(s).data(),
                     kw.BB.rows());
      spent += 2 * gemm_ns(m, n, w) + 2 * gemm_ns(m, w, w);
      s += w;
      ++out.steps;
    }
    int above = s, nl = 0, lo = 0, r1_first = 0;  // R1's first column is x_{r1_first}'s
    // Rayleigh–Ritz once the space can hold the values expected above the threshold.
    const bool ritz = complete || warm || 4 * s >= 3 * expect || s >= s_max;
    if (ritz) {
      G = kw.BB.topLeftCorner(s, s);
      lambda.resize(s);
      if (LAPACKE_dsyevd(LAPACK_COL_MAJOR, 'V', 'U', s, G.data(), s, lambda.data()) != 0) return out;
      // Descending: column s − 1 − l of G is x_l.
      sigma.resize(s);
      for (int l = 0; l < s; ++l) sigma[l] = std::sqrt(std::max(lambda[s - 1 - l], 0.0));
      const double threshold = o.tol_mode == TolMode::absolute
                                   ? o.tol
                                   : tolerance_threshold(TolMode::block, o.tol, sigma.empty() ? 0.0 : sigma[0], 0.0);
      above = count_above(sigma.data(), s, threshold);
      spent += gemm_ns(n, s, s) + 1.0 * s * s * s;
      // σ̃² comes from the eigenvalues of BtᵀBt, which carry rounding of about s·ε·σ̃_1²: a σ̃ under
      // `noise` says nothing about H (a value of 4·10⁻⁷ was reported as 6·10⁻¹⁴, with the exact
      // ones between missing) and is never reported; a threshold under it cannot be certified here.
      const double noise = 4.0 * std::sqrt(s * std::numeric_limits<double>::epsilon()) * sigma[0];
      if (threshold <= noise) return out;
      // Residuals of the values up to the threshold, of the b Ritz vectors nearest it, or (complete)
      // of all.
      lo = complete ? 0 : std::max(0, std::min(above - b / 2, s - b));
      nl = complete ? s : std::min(s, std::max(above + 16, lo + b));
      // The first value below the threshold is certified when its residual bound keeps it below —
      // and only once the count has settled: a count that rose in the last step says the space is
      // still taking in values above the threshold (a cluster wider than the block: d_k nearly equal
      // values of a diffuse head), and a value it lacks is one the certificate cannot see.
      const bool settled = above == prev_above;
      if (above < s || complete) {
        const Matrix X = G.rightCols(nl).rowwise().reverse();
        // The residual of the first value below the threshold decides: only when it certifies are
        // the others needed (the reported errors); otherwise only the products the targeted
        // expansion takes (columns lo … lo + next of R1).
        double err_above = complete ? 0.0 : std::numeric_limits<double>::infinity();
        if (!complete && sigma[above] > 0) {
          const double sa = sigma[above];
          // r = HBt·x / σ̃ − σ̃·Q·x by the BLAS (Eigen's matrix–vector product runs the build's
          // baseline SSE2 code).
          kw.r.resize(m);
          cblas_dgemv(CblasColMajor, CblasNoTrans, static_cast<int>(m), s, 1.0 / sa, HBt.data(), static_cast<int>(m),
                      X.col(above).data(), 1, 0.0, kw.r.data(), 1);
          cblas_dgemv(CblasColMajor, CblasNoTrans, static_cast<int>(m), s, -sa, Q.data(), static_cast<int>(m),
                      X.col(above).data(), 1, 1.0, kw.r.data(), 1);
          err_above = cblas_dnrm2(static_cast<int>(m), kw.r.data(), 1) / std::sqrt(2.0);
          spent += 2 * gemm_ns(m, s, 1);
        }
        if (complete || (settled && above + 1 < std::min(m, n) && sigma[above] + err_above < threshold)) {
          r1_first = 0;
          new (&R1) MatMap(kw.R1.map(m, nl));
          new (&R2) MatMap(kw.R2.map(m, nl));
          skinny_gemm_nn(static_cast<int>(m), s, nl, HBt.data(), m, X.data(), s, R1.data(), m);
          skinny_gemm_nn(static_cast<int>(m), s, nl, Q.data(), m, X.data(), s, R2.data(), m);
          spent += 2 * gemm_ns(m, s, nl);
          std::vector<double> err(nl, std::numeric_limits<double>::infinity());
          for (int l = 0; l < nl; ++l)
            if (sigma[l] > 0) err[l] = (R1.col(l) / sigma[l] - sigma[l] * R2.col(l)).norm() / std::sqrt(2.0);
          // Certified: σ̃_1 … σ̃_{count−1}, then smaller ones (up to `limit`) while their residual
          // bound stays within the largest so far and they are not rounding noise.
          auto report = [&](int count, int limit) {
            double e = 0;
            for (int l = 0; l < count; ++l) e = std::max(e, err[l]);
            while (count < limit && err[count] <= e && sigma[count] > noise) ++count;
            out.certified = true;
            out.count = count;
            out.above = above;
            out.error = e;
            out.columns = s;
            sigma.resize(count);
            left = R2.leftCols(std::min(nl, count + 8));
            return out;
          };
          // Complete: every nonzero singular value is a Ritz value, so none above the threshold is
          // missing; reported from those above it (at least σ̃_1). Values under the noise have large
          // bounds: the Frobenius tail (with its slack) accounts for them instead.
          if (complete) return report(std::max(above, 1), s);
          // Otherwise the first value below the threshold too, unless it is rounding noise; fewer
          // than min(m, n) values (a whole spectrum is the dense SVD's: exact entropy-ESS).
          if (sigma[above] + err[above] < threshold)
            return report(sigma[above] > noise ? above + 1 : above, std::min<int>(nl, std::min(m, n) - 1));
        } else if (o.krylov_targeted) {
          r1_first = lo;
          const int cols = std::min(std::min(b, s_max - s), nl - lo);
          new (&R1) MatMap(kw.R1.map(m, cols));
          skinny_gemm_nn(static_cast<int>(m), s, cols, HBt.data(), m, X.col(lo).data(), s, R1.data(), m);
          spent += gemm_ns(m, s, cols);
        }
      } else {
        nl = 0;  // every Ritz value above the threshold: the Krylov block comes next
      }
    }
    prev_above = ritz ? above : -1;
    if (s >= s_max) return out;
    const int next = std::min(b, s_max - s);
    if (spent + 2 * gemm_ns(m, n, next) + 4 * gemm_ns(m, s, next) > budget_ns) {
      out.over_budget = true;
      return out;
    }
    if (nl > 0 && o.krylov_targeted) {
      new (&Y) MatMap(Y.data(), m, std::min(next, nl - lo));
      Y = R1.middleCols(lo - r1_first, Y.cols());
    } else {
      new (&Y) MatMap(Y.data(), m, std::min(w, next));
      Y = HBt.middleCols(s - w, Y.cols());
    }
  }
}

// Whether H_i is zero in floating point: its product with a Gaussian vector (exactly zero only for
// a zero block, with probability one).
bool block_is_zero(const BlockProducts& products, int i) {
  const int L = products.seq_len();
  std::mt19937 rng(0x51ed27u ^ static_cast<unsigned>(i));
  std::normal_distribution<double> normal(0.0, 1.0);
  Matrix x(i, 1), y(L - i, 1);
  for (Index r = 0; r < x.rows(); ++r) x(r, 0) = normal(rng);
  products.apply(i, x, y);
  return y.cwiseAbs().maxCoeff() == 0;
}

}  // namespace

void lanczos_block_spectra(const BlockProducts& products, const std::vector<int>& indices, const LanczosOptions& o,
                           SpectrumSink& sink) {
  const int L = products.seq_len();
  int hint = std::max(1, o.initial_k);
  int expect = hint;  // values expected above the threshold, plus one (the previous block's)
  std::vector<double> sigma, work;
  std::vector<int> iwork;
  Matrix left;
  // H_i written out (not in the family's table) or copied for the dense SVD, and the Krylov
  // solver's buffers: grow-only and this thread's, so neither a channel's blocks nor the next
  // channels pay fresh pages again (on a VM, page faults cost about as much as a product with the
  // block; kept from head to head, the sink and diffuse heads after the first took 7–8 % less at
  // L = 4096). Every entry is written before it is read: what an earlier channel left there
  // changes no bit.
  thread_local Store hstore;
  MatMap H = hstore.map(0, 0);
  thread_local KrylovWork kw;
  // The previous block's left Ritz vectors (rows from global row warm_row0 on), or none.
  Matrix warm;
  Index warm_row0 = 0;
  // Back-off after the Krylov solver gave a block up on cost (a high-rank head: the values near the
  // threshold come without a gap, and the solver spends up to a dense SVD's cost before handing the
  // block over): the next 1, 3, 7 or 15 blocks it would have tried go to the dense SVD directly,
  // and a certified block clears it. Not after the first block of the call (a channel or its
  // chunk), whose expected count is a guess: the diffuse bench head's first block, 64 values
  // against 16 expected, is given up, its later blocks certify. On the local bench head at
  // L = 1024 the solver had tried 18 blocks and given 15 up (lanczos at 0.7× dense).
  int krylov_failures = 0, krylov_skip = 0;
  auto threshold_of = [&](const double* s, int count) {
    return o.tol_mode == TolMode::absolute ? o.tol : o.tol * (count > 0 ? s[0] : 0.0);
  };
  // The next block starts from this block's tolerance-ESS (neighbouring blocks have similar ranks).
  auto next_hint = [&](const double* s, int count) {
    const int above = count_above(s, count, threshold_of(s, count));
    expect = above + 1;
    return std::max(o.initial_k, above + above / 2 + 8);
  };
  // The family's table of the blocks' supports when it fits next to one block copy (dense SVD),
  // then the per-block quantities (a family may have made both in one pass: attention's sweep).
  double largest = 0;
  for (int i : indices) {
    const BlockSupport sup = products.support(i);
    largest = std::max(largest, 8.0 * std::max(sup.rows, 0) * std::max(sup.cols, 0));
  }
  products.cache(indices, o.max_block_bytes - largest);
  products.prepare(indices);
  for (size_t pos = 0; pos < indices.size(); ++pos) {
    const int i = indices[pos];
    // A large written-out block is not kept past its own (the solver's later blocks, or a smaller
    // block, need that memory more): peak memory holds one block copy, not the largest one seen.
    if (hstore.bytes() > 6.4e7) {
      hstore.release();
      new (&H) MatMap(hstore.map(0, 0));
    }
    // The solver works on H_i's support (a window head's w × w corner): σ(H_i) are its σ.
    BlockSupport sup = products.support(i);
    if (sup.rows <= 0 || sup.cols <= 0) sup = {0, L - i, 0, i};
    const int m = sup.rows, r = std::min(sup.rows, sup.cols);
    SpectrumSink::Partial out;
    out.rank_bound = r;
    // In memory: the family's table, or written out once when it fits.
    BlockView view = products.cached_block(i);
    const bool cached = view.data != nullptr || 8.0 * m * sup.cols <= o.max_block_bytes;
    if (cached && view.data == nullptr) {
      new (&H) MatMap(hstore.map(m, sup.cols));
      products.materialize_block(i, H);
      view = {H.data(), m};
    }
    // The whole spectrum by a dense SVD of the support in memory.
    auto whole_spectrum = [&]() {
      if (view.data != H.data()) {  // a view into the family's table: dgesdd destroys its input
        new (&H) MatMap(hstore.map(m, sup.cols));
        H = BlockMap(view.data, m, sup.cols, Eigen::OuterStride<>(view.ld));
        view = {H.data(), m};
      }
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
      warm.resize(0, 0);
    };
    if (cached) {
      // Block Krylov on the block in memory unless the dense SVD is expected to be cheaper: the
      // solver needs about expect + b columns in steps of b, two GEMMs with the block per step, and
      // gives up (to the dense SVD) once it has spent what the dense SVD costs.
      const BlockMap Hv(view.data, m, sup.cols, Eigen::OuterStride<>(view.ld));
      // b ≈ a fifth of the values expected (multiple of 8, 16…64). A third (the rule before the
      // settled-count test, 2026-12-02), measured against a half then, was 5–17 % faster; with the
      // test, a fifth does 15 % fewer flops on the diffuse head at L = 4096 (34.7 against 40.8
      // GFLOP), 8 % fewer on the induction head, the same on the sink head. Under 16 columns the
      // products slow more than the flops fall (b = 8: sink 14 % fewer flops, 1.5× the time).
      const int b = std::min(64, std::max(16, (expect + 8) / 5 + 7) / 8 * 8);
      const double dense = dense_svd_ns(m, sup.cols);
      const double steps = std::ceil(static_cast<double>(expect + b) / b) + 1;
      bool try_krylov = expect <= o.full_fraction * r &&
                        (!o.compare_cost || (r > 32 && steps * 2 * gemm_ns(m, sup.cols, b) < 0.7 * dense));
      if (try_krylov && o.compare_cost && o.krylov_backoff && krylov_skip > 0) {
        --krylov_skip;
        try_krylov = false;
        if (o.stats) ++o.stats->krylov_skipped;
      }
      if (try_krylov) {
        // At most 512 columns (3 × m × 512 doubles besides the block) unless testing without costs.
        const int s_max = o.compare_cost ? std::min(r / 2, 512) : r;
        // Warm: the previous block's left vectors on the rows both blocks share (most of them).
        MatMap start = kw.start.map(0, 0);
        const Index row0 = static_cast<Index>(i) + sup.row0;
        if (o.warm_start && warm.cols() > 0) {
          const Index a = std::max(row0, warm_row0), e = std::min(row0 + m, warm_row0 + warm.rows());
          if (2 * (e - a) >= m) {
            new (&start) MatMap(kw.start.map(m, warm.cols()));
            start.setZero();
            start.middleRows(a - row0, e - a) = warm.middleRows(a - warm_row0, e - a);
          }
        }
        const KrylovOutcome ko =
            krylov_svd(Hv, b, s_max, o.compare_cost ? dense : std::numeric_limits<double>::infinity(), expect, start,
                       std::max(8, b / 4), o, 0x9e3779b9u ^ static_cast<unsigned>(i), kw, sigma, left);
        if (o.stats) {
          ++o.stats->krylov_tries;
          o.stats->krylov_certified += ko.certified;
          o.stats->krylov_over_cost += ko.over_budget;
        }
        // (Not on a channel's first block: its expected count is only the initial guess.)
        if (ko.over_budget && pos > 0) {
          krylov_failures = std::min(krylov_failures + 1, 4);
          krylov_skip = (1 << krylov_failures) - 1;
        }
        if (ko.certified) {
          krylov_failures = 0;
          warm.swap(left);
          warm_row0 = row0;
          out.sigma = sigma.data();
          out.count = ko.count;
          out.frobenius2 = products.frobenius2(i);
          out.error_bound = ko.error;
          out.certified = true;
          sink.partial_block(static_cast<int>(pos), out);
          hint = next_hint(sigma.data(), ko.count);
          continue;
        }
      }
      whole_spectrum();
      continue;
    }

    warm.resize(0, 0);
    // Not in memory: the Spectra solver on the family's products (one pass over its factors each).
    // k at most what a search space of 4 block widths within the i dimensions can hold.
    if (3 * block_width(1) > i) {
      // Too few columns for any search space (i < 27): the block is that narrow, so written out
      // whatever max_block_bytes says, and its whole spectrum taken (reported before as no values
      // at all, with the entropy interval [0, 0]).
      new (&H) MatMap(hstore.map(m, sup.cols));
      products.materialize_block(i, H);
      view = {H.data(), m};
      whole_spectrum();
      continue;
    }
    int k_max = r;
    while (k_max > 1 && 3 * block_width(k_max) > i) --k_max;
    int k = std::min(hint, k_max);

    const double f2 = products.frobenius2(i);
    out.frobenius2 = f2;
    const int n = i;  // the Gram operator's dimension
    // Rounding in a product with the Gram operator: about √(m + n)·ε·‖H_i‖² (typical, not worst
    // case), added to every residual — a residual the solver drove below it says nothing more.
    const double rounding = 4.0 * std::sqrt(static_cast<double>(m + n)) * std::numeric_limits<double>::epsilon() * f2;
    // The solver's residual tolerance: relative to ‖H_i‖_F² and, with an absolute τ, at most
    // τ²/100 (what the certificate below asks of the value that decides it) — unless the rounding
    // is above that: no certificate is possible then, and the solver stops at the usual tolerance.
    double tol = o.residual_rtol * f2;
    const bool hopeless = o.tol_mode == TolMode::absolute && rounding > 0.01 * o.tol * o.tol;
    if (o.tol_mode == TolMode::absolute && !hopeless) tol = std::min(tol, 0.01 * o.tol * o.tol);
    tol = std::max({tol, rounding, 1e-300});
    if (f2 == 0 && !block_is_zero(products, i)) {
      // ‖H_i‖_F² underflowed (entries under 10⁻¹⁶², as after gates of e^−500): the Gram operator's
      // values are all zero in floating point, and so would be the spectrum it reports. No values,
      // no certificate, an interval that says nothing ([0, rank]).
      sigma.clear();
      out.sigma = sigma.data();
      out.count = 0;
      out.error_bound = std::numeric_limits<double>::infinity();
      out.certified = false;
      sink.partial_block(static_cast<int>(pos), out);
      continue;
    }
    GramOperator op(products, i);
    Matrix ritz;
    std::vector<double> err;
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
      err.assign(k, 0.0);
      for (int j = 0; j < k; ++j) {
        sigma[j] = std::sqrt(std::max(lambda(j), 0.0));
        // |λ − λ_exact| ≤ ‖r‖ for a symmetric operator, so |σ − σ_exact| ≤ min(√‖r‖, ‖r‖/σ).
        const double rj = res(j) + rounding;
        err[j] = sigma[j] > 0 ? std::min(std::sqrt(rj), rj / sigma[j]) : std::sqrt(rj);
      }
      out.converged = solver.info() == Spectra::CompInfo::Successful;
      const double threshold =
          o.tol_mode == TolMode::absolute ? o.tol : tolerance_threshold(TolMode::block, o.tol, sigma[0], 0.0);
      const int above = count_above(sigma.data(), k, threshold);
      // Reported: every value when the spectrum is whole; else up to the first one below the
      // threshold, the value that decides the certificate (Ritz values are lower bounds, so those
      // above it are above it for certain; a value between it and the threshold with a large error
      // could be an exact one above the threshold).
      int count = k < r ? std::min(k, above + 1) : k;
      double e = 0;
      for (int l = 0; l < count; ++l) e = std::max(e, err[l]);
      while (count < k && err[count] <= e) ++count;  // and further ones as accurate
      sigma.resize(count);
      out.sigma = sigma.data();
      out.count = count;
      out.error_bound = e;
      if (!out.converged) {
        out.certified = false;
        break;
      }
      // Certified: the first value below the threshold is below it with its error bound, and its
      // residual resolves the spectrum on a scale finer than the threshold (residual ≤ τ²/100 in
      // σ² units); a whole spectrum is no exception. Or every value of a whole spectrum is above
      // it. A residual bound places *an* exact value near the Ritz value, not the next one:
      // accepted with a residual of 2.6·10⁻⁷ on a σ̃² of 6·10⁻⁸ (τ² = 10⁻⁶), σ̃ = 2.5·10⁻⁴
      // certified a count of 6 where the exact 7th value is 1.07·10⁻³.
      const bool resolved = above < k && res(above) + rounding <= 0.01 * threshold * threshold;
      if ((above == k && k == r) || (resolved && sigma[above] + err[above] < threshold)) {
        out.certified = true;
        break;
      }
      if (k >= k_max || hopeless) {  // the search space cannot grow (or no use): uncertified
        out.certified = false;
        break;
      }
      ritz = solver.eigenvectors();
      k = std::min(2 * k, k_max);
    }
    sink.partial_block(static_cast<int>(pos), out);
    hint = next_hint(sigma.data(), out.count);
  }
  // The thread keeps its buffers for its next channel up to the sizes ordinary heads reach (at
  // L = 4096 the Krylov buffers hold ≈ 50 MB); larger ones are freed rather than held past the
  // layer (the layer's memory estimate counted them only while it runs).
  if (kw.bytes() > 2.56e8) kw = KrylovWork{};
  if (hstore.bytes() > 6.4e7) hstore.release();
}

}  // namespace ess
