// Every fast engine against the dense LAPACK engine and Eigen's JacobiSVD on random operators.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <memory>

#include "libess/engine.h"
#include "libess/realization.h"
#include "test_helpers.h"

using namespace ess;
using ess::test::CollectSink;

namespace {

std::vector<int> all_indices(int L) {
  std::vector<int> v;
  for (int i = 1; i < L; ++i) v.push_back(i);
  return v;
}

// max_k |a_k − b_k| / σ_1 with zero padding.
double max_rel_deviation(const std::vector<double>& a, const std::vector<double>& b) {
  const size_t n = std::max(a.size(), b.size());
  double s1 = 0, dev = 0;
  for (size_t k = 0; k < n; ++k) {
    double x = k < a.size() ? a[k] : 0.0, y = k < b.size() ? b[k] : 0.0;
    s1 = std::max({s1, std::abs(x), std::abs(y)});
    dev = std::max(dev, std::abs(x - y));
  }
  return s1 > 0 ? dev / s1 : dev;
}

void check_against_dense(const Matrix& T, const std::vector<int>& idx, const CollectSink& fast, double rel_tol) {
  DenseWorkspace ws;
  CollectSink dense;
  dense_block_spectra(T, idx, ws, dense);
  REQUIRE(fast.sigma.size() == idx.size());
  for (size_t p = 0; p < idx.size(); ++p) {
    CHECK(fast.ok[p]);
    CHECK(dense.ok[p]);
    const auto ref = ess::test::reference_sigma(T, idx[p]);
    CHECK(max_rel_deviation(fast.sigma[p], dense.sigma[p]) <= rel_tol);
    CHECK(max_rel_deviation(ref, dense.sigma[p]) <= 1e-12);
  }
}

std::unique_ptr<Realization> make_realization(const std::string& kind, int L, int N, std::mt19937& rng) {
  std::uniform_real_distribution<double> u(0.0, 1.0);
  Matrix B = ess::test::random_matrix(rng, N, L), C = ess::test::random_matrix(rng, N, L);
  if (kind == "diagonal") {
    Matrix a(N, L);
    for (int t = 0; t < L; ++t)
      for (int n = 0; n < N; ++n) a(n, t) = 0.5 + 0.49 * u(rng);
    return std::make_unique<DiagonalRealization>(a, B, C);
  }
  if (kind == "diagonal_invariant") {
    Matrix a(N, 1);
    for (int n = 0; n < N; ++n) a(n, 0) = 0.3 + 0.69 * u(rng);
    return std::make_unique<DiagonalRealization>(a, B, C);
  }
  if (kind == "scalar") {
    Vector a(L);
    for (int t = 0; t < L; ++t) a(t) = 0.6 + 0.39 * u(rng);
    return std::make_unique<ScalarRealization>(a, B, C);
  }
  if (kind == "dense_invariant") {
    Matrix A = ess::test::random_matrix(rng, N, N);
    Eigen::JacobiSVD<Matrix> svd(A);
    A *= 0.95 / svd.singularValues()(0);
    return std::make_unique<DenseInvariantRealization>(A, B, C);
  }
  if (kind == "delta") {
    Vector s(L), beta(L);
    Matrix K = ess::test::random_matrix(rng, N, L);
    for (int t = 0; t < L; ++t) {
      s(t) = 0.8 + 0.2 * u(rng);
      beta(t) = u(rng);
      K.col(t).normalize();
    }
    return std::make_unique<DeltaRealization>(s, beta, K, B, C);
  }
  // shift (convolution, K = N taps)
  Matrix Bs = Matrix::Zero(N, L), Cs(N, L);
  Vector h = ess::test::random_matrix(rng, N, 1);
  for (int t = 0; t < L; ++t) {
    Bs(0, t) = 1.0;
    Cs.col(t) = h;
  }
  return std::make_unique<ShiftRealization>(Bs, Cs);
}

}  // namespace

TEST_CASE("structured engine reproduces dense SVD for every transition kind") {
  std::mt19937 rng(7);
  const int L = 40, N = 5;
  for (std::string kind : {"diagonal", "diagonal_invariant", "scalar", "dense_invariant", "delta", "shift"}) {
    CAPTURE(kind);
    auto r = make_realization(kind, L, N, rng);
    const Matrix T = materialize(*r);
    const auto idx = all_indices(L);
    CollectSink fast;
    structured_block_spectra(*r, idx, fast);
    check_against_dense(T, idx, fast, 1e-10);
  }
}

TEST_CASE("structured engine on a subset of indices gives the same blocks") {
  std::mt19937 rng(11);
  auto r = make_realization("diagonal", 50, 4, rng);
  const Matrix T = materialize(*r);
  const std::vector<int> idx = {1, 3, 17, 25, 49};
  CollectSink fast;
  structured_block_spectra(*r, idx, fast);
  check_against_dense(T, idx, fast, 1e-10);
}

TEST_CASE("structured engine: rank never exceeds the state size, and is attained") {
  std::mt19937 rng(3);
  const int L = 30, N = 4;
  auto r = make_realization("diagonal", L, N, rng);
  CollectSink fast;
  structured_block_spectra(*r, all_indices(L), fast);
  for (int i = 1; i < L; ++i) {
    const auto& s = fast.sigma[i - 1];
    int rank = 0;
    for (double v : s) rank += v > 1e-10 * s[0];
    CHECK(rank <= std::min({N, i, L - i}));
    if (i >= N && L - i >= N) CHECK(rank == N);
  }
}

TEST_CASE("structured engine survives strong decay without forming exp(A c_i) exp(-A c_j)") {
  // Decay e^{-50} per step: products underflow long before exp(+A·c) would overflow.
  const int L = 60, N = 3;
  std::mt19937 rng(5);
  Matrix a = Matrix::Constant(N, L, std::exp(-50.0));
  a.row(0).setConstant(0.9);
  auto r = std::make_unique<DiagonalRealization>(a, ess::test::random_matrix(rng, N, L),
                                                 ess::test::random_matrix(rng, N, L));
  const Matrix T = materialize(*r);
  CollectSink fast;
  structured_block_spectra(*r, all_indices(L), fast);
  check_against_dense(T, all_indices(L), fast, 1e-10);
}

TEST_CASE("sweep engine reproduces dense SVD on full-rank, low-rank and attention-like operators") {
  std::mt19937 rng(19);
  const int L = 48;
  SUBCASE("random full-rank lower-triangular") {
    Matrix T = ess::test::random_matrix(rng, L, L).triangularView<Eigen::Lower>();
    CollectSink fast;
    sweep_block_spectra(T, all_indices(L), 1e-12, fast);
    check_against_dense(T, all_indices(L), fast, 1e-10);
  }
  SUBCASE("low rank (state 3)") {
    auto r = make_realization("diagonal", L, 3, rng);
    const Matrix T = materialize(*r);
    CollectSink fast;
    sweep_block_spectra(T, all_indices(L), 1e-12, fast);
    check_against_dense(T, all_indices(L), fast, 1e-10);
    for (double b : fast.bound) CHECK(b <= 1e-10);
  }
  SUBCASE("softmax-like local attention with a window of 5") {
    Matrix T = Matrix::Zero(L, L);
    std::uniform_real_distribution<double> u(0.1, 1.0);
    for (int i = 0; i < L; ++i) {
      double z = 0;
      for (int j = std::max(0, i - 4); j <= i; ++j) z += (T(i, j) = u(rng));
      T.row(i) /= z;
    }
    CollectSink fast;
    const auto idx = all_indices(L);
    sweep_block_spectra(T, idx, 1e-12, fast);
    check_against_dense(T, idx, fast, 1e-10);
    for (size_t p = 0; p < idx.size(); ++p) {
      int rank = 0;
      for (double v : fast.sigma[p]) rank += v > 1e-9;
      CHECK(rank <= 4);  // sliding window w = 5: rank ≤ w − 1
    }
  }
  SUBCASE("subset of indices") {
    Matrix T = ess::test::random_matrix(rng, L, L).triangularView<Eigen::Lower>();
    const std::vector<int> idx = {5, 6, 20, 40, 47};
    CollectSink fast;
    sweep_block_spectra(T, idx, 1e-12, fast);
    check_against_dense(T, idx, fast, 1e-10);
  }
}

TEST_CASE("sweep truncation error stays within the recorded bound") {
  // An operator with geometrically decaying singular values; a coarse rtol forces truncation.
  std::mt19937 rng(23);
  const int L = 60, N = 12;
  Matrix a(N, 1);
  for (int n = 0; n < N; ++n) a(n, 0) = 0.95 - 0.07 * n;
  Matrix Bm = ess::test::random_matrix(rng, N, L), Cm = ess::test::random_matrix(rng, N, L);
  for (int n = 0; n < N; ++n) Bm.row(n) *= std::pow(0.2, n);
  DiagonalRealization r(a, Bm, Cm);
  const Matrix T = materialize(r);
  const auto idx = all_indices(L);
  CollectSink fast, dense;
  sweep_block_spectra(T, idx, 1e-4, fast);
  DenseWorkspace ws;
  dense_block_spectra(T, idx, ws, dense);
  bool truncated = false;
  for (size_t p = 0; p < idx.size(); ++p) {
    truncated = truncated || fast.bound[p] > 0;
    const size_t n = std::max(fast.sigma[p].size(), dense.sigma[p].size());
    for (size_t k = 0; k < n; ++k) {
      double x = k < fast.sigma[p].size() ? fast.sigma[p][k] : 0.0;
      double y = k < dense.sigma[p].size() ? dense.sigma[p][k] : 0.0;
      CHECK(std::abs(x - y) <= fast.bound[p] + 1e-12 * dense.sigma[p][0]);
    }
  }
  CHECK(truncated);
}

TEST_CASE("dense engine: hand-checked blocks of a small T") {
  // T = [[0,0,0],[3,0,0],[4,0,0]]: H_1 = [3;4] → σ = 5; H_2 = [4 0] → σ = 4.
  Matrix T = Matrix::Zero(3, 3);
  T(1, 0) = 3;
  T(2, 0) = 4;
  DenseWorkspace ws;
  CollectSink s;
  dense_block_spectra(T, {1, 2}, ws, s);
  CHECK(s.sigma[0][0] == doctest::Approx(5.0));
  CHECK(s.sigma[1][0] == doctest::Approx(4.0));
  CHECK(s.sigma[1].size() == 1);
}
