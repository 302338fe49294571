// Every fast engine against the dense LAPACK engine and Eigen's JacobiSVD on random operators.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <memory>

#include "libess/compute.h"
#include "libess/engine.h"
#include "libess/lane_kernels.h"
#include "libess/realization.h"
#include "libess/work_plan.h"
#include "operators/conv.h"
#include "operators/delta_net.h"
#include "operators/gla.h"
#include "operators/linear_attention.h"
#include "operators/mamba.h"
#include "operators/mamba2.h"
#include "operators/retention.h"
#include "operators/s4d.h"
#include "test_helpers.h"

using namespace ess;
using ess::test::CollectSink;
using ess::test::randn;
using ess::test::uniform;

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
    A *= 0.95 / ess::test::jacobi_singular_values(A)(0);
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
  SUBCASE("blocks far below the channel's largest value (resets of e^-500)") {
    // Every path across step 16 or 32 decays by e^−500: the blocks between have σ_1 ≈ 10⁻²¹⁷
    // while the truncation error the sweep carries is ≈ 10⁻¹²·σ_max — as large as their values
    // (entropy-ESS 1.99 against an exact 8.92 on such a DeltaNet block before 2026-12-02).
    const int N = 4;
    Matrix a(N, L);
    for (int t = 0; t < L; ++t)
      for (int n = 0; n < N; ++n) a(n, t) = t == 16 || t == 32 ? std::exp(-500.0) : 0.6 + 0.1 * n;
    DiagonalRealization r(a, ess::test::random_matrix(rng, N, L), ess::test::random_matrix(rng, N, L));
    const Matrix T = materialize(r);
    CollectSink fast;
    const auto idx = all_indices(L);
    sweep_block_spectra(T, idx, 1e-12, fast);
    check_against_dense(T, idx, fast, 1e-10);
    for (size_t p = 0; p < idx.size(); ++p) {
      const auto exact = ess::test::reference_sigma(T, idx[p]);
      CAPTURE(idx[p]);
      CHECK(entropy_ess(fast.sigma[p].data(), static_cast<int>(fast.sigma[p].size())) ==
            doctest::Approx(entropy_ess(exact.data(), static_cast<int>(exact.size()))).epsilon(1e-9));
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

// An operator (L = 60, N = 12) with geometrically decaying singular values: a coarse rtol makes the
// sweep truncate at every scale.
Matrix geometric_operator() {
  std::mt19937 rng(23);
  const int L = 60, N = 12;
  Matrix a(N, 1);
  for (int n = 0; n < N; ++n) a(n, 0) = 0.95 - 0.07 * n;
  Matrix Bm = ess::test::random_matrix(rng, N, L), Cm = ess::test::random_matrix(rng, N, L);
  for (int n = 0; n < N; ++n) Bm.row(n) *= std::pow(0.2, n);
  return materialize(DiagonalRealization(a, Bm, Cm));
}

TEST_CASE("sweep truncation error stays within the recorded bound") {
  const Matrix T = geometric_operator();
  const auto idx = all_indices(static_cast<int>(T.rows()));
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

TEST_CASE("sweep engine: a tolerance-ESS its truncation leaves open is measured exactly") {
  // The truncation bound is relative to the channel's largest σ; an absolute τ near it (or a σ
  // within it of the threshold) left the count open, and the sweep reported it anyway (a long
  // convolution, σ_1 ≈ 5·10³, τ = 10⁻⁸: 73 values above τ where 74 are, error_bound 1.4·10⁻⁸,
  // before 2026-12-03). A coarse rtol makes the same happen at every scale here.
  const Matrix T = geometric_operator();
  OperatorLayer layer;
  layer.name = "geometric";
  layer.op = std::make_unique<ess::test::ExplicitOperator>(1, 1, std::vector<Matrix>{T});
  EssOptions o;
  o.threads = 1;
  o.sweep_rtol = 1e-4;
  int exact_blocks = 0;
  for (TolMode mode : {TolMode::absolute, TolMode::block})
    for (double tol : {1e-2, 1e-3, 1e-4, 1e-5, 1e-6}) {
      CAPTURE(to_string(mode));
      CAPTURE(tol);
      o.tol_mode = mode;
      o.tol = tol;
      o.engine = EngineKind::dense;
      const LayerResult dense = compute_layer(layer, o);
      o.engine = EngineKind::sweep;
      const LayerResult sweep = compute_layer(layer, o);
      CHECK(sweep.tolerance_ess == dense.tolerance_ess);
      for (double e : sweep.error_bound) exact_blocks += e == 0;
    }
  CHECK(exact_blocks > 0);
  // The rule itself: values within the error of the threshold, or a threshold under the error.
  const double s[] = {1.0, 0.5, 0.1};
  CHECK(tolerance_count_decided(TolMode::absolute, 0.3, s, 3, 0.0, 0.0));
  CHECK(tolerance_count_decided(TolMode::absolute, 0.3, s, 3, 0.1, 0.0));
  CHECK_FALSE(tolerance_count_decided(TolMode::absolute, 0.3, s, 3, 0.21, 0.0));   // 0.5 − 0.21 ≤ 0.3
  CHECK_FALSE(tolerance_count_decided(TolMode::absolute, 0.05, s, 3, 0.06, 0.0));  // unseen values ≤ 0.06
  CHECK(tolerance_count_decided(TolMode::block, 0.3, s, 3, 0.1, 0.0));             // threshold in [0.27, 0.33]
  CHECK_FALSE(tolerance_count_decided(TolMode::block, 0.45, s, 3, 0.06, 0.0));     // 0.5 vs [0.423, 0.477]
  CHECK(tolerance_count_decided(TolMode::layer, 0.1, s, 3, 0.05, 2.0));            // threshold ≥ 0.2 > 0.05
  CHECK_FALSE(tolerance_count_decided(TolMode::layer, 0.01, s, 3, 0.05, 2.0));     // threshold may be 0.02
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

// ---------------------------------------------------------------------------------------------
// Structured engine in SIMD lanes: packs of channels, blocks sharing the SVD, every family, hard
// inputs, bit-identical values whatever the batching, the instruction set or the threads.

namespace {

// Every channel of op through the multi-channel structured engine, against dense SVD of the
// materialized blocks.
void check_layer_against_dense(const LayerOperator& op, const std::vector<int>& idx, double rel_tol) {
  std::vector<std::unique_ptr<Realization>> rs;
  std::vector<const Realization*> ptrs;
  std::vector<CollectSink> sinks(static_cast<size_t>(op.batch()) * op.channels());
  std::vector<SpectrumSink*> sink_ptrs;
  for (int b = 0; b < op.batch(); ++b)
    for (int c = 0; c < op.channels(); ++c) {
      rs.push_back(op.realization(b, c));
      ptrs.push_back(rs.back().get());
      sink_ptrs.push_back(&sinks[rs.size() - 1]);
    }
  structured_block_spectra(ptrs, idx, sink_ptrs);
  for (size_t k = 0; k < rs.size(); ++k) {
    CAPTURE(k);
    check_against_dense(materialize(*rs[k]), idx, sinks[k], rel_tol);
  }
}

// The singular values of every block of every channel, flattened (bit comparisons).
std::vector<double> flatten(const std::vector<CollectSink>& sinks) {
  std::vector<double> v;
  for (const auto& s : sinks)
    for (const auto& b : s.sigma) v.insert(v.end(), b.begin(), b.end());
  return v;
}

bool same_bits(const std::vector<double>& a, const std::vector<double>& b) {
  return a.size() == b.size() && std::memcmp(a.data(), b.data(), sizeof(double) * a.size()) == 0;
}

std::vector<CollectSink> run_channels(const std::vector<const Realization*>& rs, const std::vector<int>& idx) {
  std::vector<CollectSink> sinks(rs.size());
  std::vector<SpectrumSink*> ptrs;
  for (auto& s : sinks) ptrs.push_back(&s);
  structured_block_spectra(rs, idx, ptrs);
  return sinks;
}

}  // namespace

TEST_CASE("structured engine: every family with a realization matches dense SVD, channels in packs") {
  // L = 41: 40 blocks, more than one checkpoint segment; channel counts that fill a pack, leave
  // it partial and spill into a second one.
  std::mt19937 rng(101);
  const int L = 41, B = 2, H = 5, D = 4, N = 6;
  const auto idx = all_indices(L);
  SUBCASE("mamba (diagonal, pack path)") {
    MambaOperator op(uniform(rng, {B, H, L}, 0.01, 0.5), uniform(rng, {H, N}, -2, -0.1), randn(rng, {B, L, N}),
                     randn(rng, {B, L, N}), "t");
    check_layer_against_dense(op, idx, 1e-10);
  }
  SUBCASE("mamba2 (scalar, pack path)") {
    Mamba2Operator op(uniform(rng, {B, 4, L}, 0.01, 0.5), uniform(rng, {4}, -2, -0.1), randn(rng, {B, 2, L, N}),
                      randn(rng, {B, 2, L, N}), "t");
    check_layer_against_dense(op, idx, 1e-10);
  }
  SUBCASE("gla") {
    GlaOperator op(randn(rng, {B, H, L, D}), randn(rng, {B, H, L, D}), uniform(rng, {B, H, L, D}, -0.5, 0), "t");
    check_layer_against_dense(op, idx, 1e-10);
  }
  SUBCASE("retention, per head and per dimension") {
    RetentionOperator head(randn(rng, {B, H, L, D}), randn(rng, {B, H, L, D}), uniform(rng, {H}, 0.5, 0.99), "t");
    check_layer_against_dense(head, idx, 1e-10);
    RetentionOperator dim(randn(rng, {B, H, L, D}), randn(rng, {B, H, L, D}), uniform(rng, {H, D}, 0.5, 0.99), "t");
    check_layer_against_dense(dim, idx, 1e-10);
  }
  SUBCASE("linear attention") {
    LinearAttentionOperator op(randn(rng, {B, H, L, D}), randn(rng, {B, H, L, D}), false, "t");
    check_layer_against_dense(op, idx, 1e-10);
  }
  SUBCASE("delta net, gated (block path, dense transitions)") {
    DeltaNetOperator op(randn(rng, {B, 3, L, D}), randn(rng, {B, 3, L, D}, 0.5), uniform(rng, {B, 3, L}, 0, 1),
                        uniform(rng, {B, 3, L}, -0.3, 0), "t");
    check_layer_against_dense(op, idx, 1e-10);
  }
  SUBCASE("s4d with complex conjugate pairs and unpaired complex modes") {
    S4dOperator op(uniform(rng, {3, 4}, -0.6, 0.6), uniform(rng, {3, 4}, 0.1, 0.5), randn(rng, {3, 4}),
                   randn(rng, {3, 4}), randn(rng, {3, 4}), randn(rng, {3, 4}), L, "t");
    check_layer_against_dense(op, idx, 1e-10);
  }
  SUBCASE("convolution (shift register)") {
    ConvOperator op(randn(rng, {3, 7}), randn(rng, {B, 3, L}), randn(rng, {B, 3, L}), 0, "t");
    check_layer_against_dense(op, idx, 1e-10);
  }
}

TEST_CASE("structured engine: large states (packs of up to 256) match dense SVD") {
  // Nine heads: one full pack of eight channels in lanes and a pack with one busy lane.
  std::mt19937 rng(102);
  const int L = 90;
  for (int N : {33, 64}) {
    CAPTURE(N);
    Mamba2Operator op(uniform(rng, {1, 9, L}, 0.01, 0.3), uniform(rng, {9}, -1, -0.1), randn(rng, {1, 1, L, N}),
                      randn(rng, {1, 1, L, N}), "t");
    check_layer_against_dense(op, all_indices(L), 1e-10);
  }
}

TEST_CASE("structured engine: ill-conditioned and rank-deficient inputs match dense SVD") {
  std::mt19937 rng(103);
  const int L = 40, N = 8, C = 9;
  const auto idx = all_indices(L);
  SUBCASE("repeated decays: time-invariant modes with equal poles merge (exact rank loss)") {
    // h_t = diag(a) h_{t−1} + b x_t, y_t = cᵀ h_t with a taking two values: McMillan degree 2.
    std::vector<std::unique_ptr<Realization>> rs;
    std::vector<const Realization*> ptrs;
    std::vector<CollectSink> sinks(C);
    std::vector<SpectrumSink*> sink_ptrs;
    for (int c = 0; c < C; ++c) {
      Matrix a(N, 1), Bm(N, L), Cm(N, L);
      const Vector b = ess::test::random_matrix(rng, N, 1), cc = ess::test::random_matrix(rng, N, 1);
      for (int n = 0; n < N; ++n) a(n, 0) = n % 2 ? 0.9 : 0.6;
      for (int t = 0; t < L; ++t) {
        Bm.col(t) = b;
        Cm.col(t) = cc;
      }
      rs.push_back(std::make_unique<DiagonalRealization>(a, Bm, Cm));
      ptrs.push_back(rs.back().get());
      sink_ptrs.push_back(&sinks[c]);
    }
    structured_block_spectra(ptrs, idx, sink_ptrs);
    for (int c = 0; c < C; ++c) {
      check_against_dense(materialize(*rs[c]), idx, sinks[c], 1e-10);
      for (const auto& sig : sinks[c].sigma) {
        int rank = 0;
        for (double v : sig) rank += v > 1e-10 * sig[0];
        CHECK(rank <= 2);
      }
    }
  }
  SUBCASE("zero dt: some channels are exactly zero operators") {
    Tensor dt = uniform(rng, {1, C, L}, 0.01, 0.5);
    for (int t = 0; t < L; ++t) dt.data[2 * L + t] = dt.data[5 * L + t] = 0.0;
    MambaOperator op(dt, uniform(rng, {C, N}, -2, -0.1), randn(rng, {1, L, N}), randn(rng, {1, L, N}), "t");
    check_layer_against_dense(op, idx, 1e-10);
    auto r = op.realization(0, 2);
    CollectSink s;
    structured_block_spectra(*r, idx, s);
    for (const auto& sig : s.sigma)
      for (double v : sig) CHECK(v == 0.0);
  }
  SUBCASE("exactly low-rank B: every B_t in a fixed 2-dimensional subspace") {
    Tensor B({1, L, N});
    const Matrix basis = ess::test::random_matrix(rng, N, 2);
    for (int t = 0; t < L; ++t) {
      const Vector w = ess::test::random_matrix(rng, 2, 1);
      const Vector b = basis * w;
      for (int n = 0; n < N; ++n) B.data[t * N + n] = b(n);
    }
    // Scalar decay (Mamba2) keeps the input subspace invariant: rank ≤ 2.
    Mamba2Operator op(uniform(rng, {1, 4, L}, 0.01, 0.5), uniform(rng, {4}, -2, -0.1), Tensor({1, 1, L, N}, B.data),
                      randn(rng, {1, 1, L, N}), "t");
    check_layer_against_dense(op, idx, 1e-10);
    auto r = op.realization(0, 1);
    CollectSink s;
    structured_block_spectra(*r, idx, s);
    for (const auto& sig : s.sigma) {
      int rank = 0;
      for (double v : sig) rank += v > 1e-10 * sig[0];
      CHECK(rank <= 2);
    }
  }
  SUBCASE("decays of e^-6 … e^-800 per step: the factors pass through subnormal numbers") {
    // Mamba with dt = 100 and A = −exp(N(0, 1)): two steps of e^-400 are subnormal. A Givens
    // rotation of a subnormal pair divided by its norm, 1/ρ overflowed and c = 0·∞ was NaN: the
    // pack path stored status 2 (non-finite) on every block of such a channel.
    Tensor dt({1, C, L});
    for (auto& v : dt.data) v = 100.0;
    Tensor A = randn(rng, {C, N});
    for (auto& v : A.data) v = -std::exp(v);
    MambaOperator op(dt, A, randn(rng, {1, L, N}), randn(rng, {1, L, N}), "t");
    check_layer_against_dense(op, idx, 1e-10);
  }
  SUBCASE("wide dynamic range: decays from 1 − 1e-6 to e^-30 per step, inputs scaled over 1e±100") {
    Matrix a(N, L), Bm = ess::test::random_matrix(rng, N, L), Cm = ess::test::random_matrix(rng, N, L);
    for (int n = 0; n < N; ++n)
      for (int t = 0; t < L; ++t) a(n, t) = n == 0 ? 1 - 1e-6 : std::exp(-30.0 * n / N);
    Bm *= 1e-100;
    Cm *= 1e100;
    std::vector<std::unique_ptr<Realization>> rs;
    rs.push_back(std::make_unique<DiagonalRealization>(a, Bm, Cm));
    rs.push_back(std::make_unique<DiagonalRealization>(a, Bm * 1e-150, Cm));
    for (auto& r : rs) {
      CollectSink s;
      structured_block_spectra(std::vector<const Realization*>{r.get()}, idx, std::vector<SpectrumSink*>{&s});
      check_against_dense(materialize(*r), idx, s, 1e-10);
    }
  }
}

TEST_CASE("structured engine: a channel's values do not depend on its batch, lane or index chunk") {
  std::mt19937 rng(104);
  const int L = 37, C = 11;
  MambaOperator op(uniform(rng, {1, C, L}, 0.01, 0.5), uniform(rng, {C, 5}, -2, -0.1), randn(rng, {1, L, 5}),
                   randn(rng, {1, L, 5}), "t");
  std::vector<std::unique_ptr<Realization>> rs;
  std::vector<const Realization*> all;
  for (int c = 0; c < C; ++c) {
    rs.push_back(op.realization(0, c));
    all.push_back(rs.back().get());
  }
  const auto idx = all_indices(L);
  const auto together = run_channels(all, idx);
  // Each channel alone, and channels in a different order (other lanes, other packs).
  for (int c = 0; c < C; ++c) {
    const auto alone = run_channels({all[c]}, idx);
    CHECK(same_bits(flatten(alone), flatten({together[c]})));
  }
  std::vector<const Realization*> reversed(all.rbegin(), all.rend());
  const auto rev = run_channels(reversed, idx);
  for (int c = 0; c < C; ++c) CHECK(same_bits(flatten({rev[C - 1 - c]}), flatten({together[c]})));
  // A chunk of the index list gives the same values as the whole list at those blocks.
  const std::vector<int> chunk(idx.begin() + 10, idx.begin() + 23);
  const auto part = run_channels({all[3]}, chunk);
  for (size_t p = 0; p < chunk.size(); ++p) CHECK(same_bits(part[0].sigma[p], together[3].sigma[p + 10]));
}

TEST_CASE("lane kernels: triangular product (W diag(a)) Fᵀ matches Eigen, same bits on every instruction set") {
  // Sizes around the four-column blocking of upper_product (remainder 0..3 columns).
  using namespace ess::lanes;
  std::mt19937 rng(106);
  for (int n : {1, 2, 3, 4, 5, 6, 7, 8, 13, 16, 33}) {
    CAPTURE(n);
    const size_t nn = static_cast<size_t>(n) * n;
    std::vector<Matrix> Ws, Fs, As;
    LaneBuffer bw, bf, ba, bp;
    double* Wl = bw.get(packed_size(n) * kLanes);
    double* Fl = bf.get(nn * kLanes);
    double* al = ba.get(static_cast<size_t>(n) * kLanes);
    for (int l = 0; l < kLanes; ++l) {
      Matrix W = ess::test::random_matrix(rng, n, n).triangularView<Eigen::Upper>();
      Matrix F = ess::test::random_matrix(rng, n, n).triangularView<Eigen::Upper>();
      Matrix a = ess::test::random_matrix(rng, n, 1);
      if (l == 3) W *= 1e-150;  // scales far apart do not meet in one lane
      for (int c = 0; c < n; ++c) {
        for (int r = 0; r <= c; ++r) Wl[packed_index(r, c) * kLanes + l] = W(r, c);
        al[static_cast<size_t>(c) * kLanes + l] = a(c, 0);
      }
      for (size_t k = 0; k < nn; ++k) Fl[k * kLanes + l] = F.data()[k];
      Ws.push_back(W);
      Fs.push_back(F);
      As.push_back(a);
    }
    std::vector<std::vector<double>> results;
    for (const char* isa : {"sse2", "avx2", "avx512"}) {
      const Kernels* kern = kernels_for(isa);
      if (!kern) continue;
      CAPTURE(isa);
      double* P = bp.get(nn * kLanes);
      kern->upper_product(n, Wl, al, Fl, P);
      results.emplace_back(P, P + nn * kLanes);
      for (int l = 0; l < kLanes; ++l) {
        const Matrix ref = Ws[l] * As[l].col(0).asDiagonal() * Fs[l].transpose();
        Matrix got(n, n);
        for (size_t k = 0; k < nn; ++k) got.data()[k] = P[k * kLanes + l];
        CHECK((got - ref).norm() <= 1e-14 * (ref.norm() + Ws[l].norm() * Fs[l].norm() * As[l].norm()));
      }
    }
    for (const auto& r : results) CHECK(std::memcmp(r.data(), results[0].data(), sizeof(double) * r.size()) == 0);
  }
}

TEST_CASE("lane kernels: Givens row append gives the R factor of U stacked on rᵀ, same bits on every instruction set") {
  // Sizes around the two-column order of givens_append (odd and even n); lanes with r = 0 (U kept
  // exactly), r with leading zeros, and scales whose squares under- or overflow.
  using namespace ess::lanes;
  std::mt19937 rng(107);
  for (int n : {1, 2, 3, 4, 7, 16, 33}) {
    CAPTURE(n);
    const size_t nn = static_cast<size_t>(n) * n;
    std::vector<Matrix> Us;
    std::vector<Vector> rs;
    std::vector<double> U0(nn * kLanes, 0.0), r0(static_cast<size_t>(n) * kLanes);
    for (int l = 0; l < kLanes; ++l) {
      Matrix U = ess::test::random_matrix(rng, n, n).triangularView<Eigen::Upper>();
      Vector r = ess::test::random_matrix(rng, n, 1).col(0);
      if (l == 1) r.setZero();
      if (l == 2) r.head(n / 2).setZero();
      if (l == 3) U *= 1e-160, r *= 1e-160;
      if (l == 4) U *= 1e160, r *= 1e160;
      for (int c = 0; c < n; ++c)
        for (int q = 0; q <= c; ++q) U0[(q + static_cast<size_t>(c) * n) * kLanes + l] = U(q, c);
      for (int k = 0; k < n; ++k) r0[static_cast<size_t>(k) * kLanes + l] = r(k);
      Us.push_back(U);
      rs.push_back(r);
    }
    std::vector<std::vector<double>> results;
    LaneBuffer bu, br;
    for (const char* isa : {"sse2", "avx2", "avx512"}) {
      const Kernels* kern = kernels_for(isa);
      if (!kern) continue;
      CAPTURE(isa);
      double* U = bu.get(nn * kLanes);
      double* r = br.get(static_cast<size_t>(n) * kLanes);
      std::copy(U0.begin(), U0.end(), U);
      std::copy(r0.begin(), r0.end(), r);
      kern->givens_append(n, U, r);
      results.emplace_back(U, U + nn * kLanes);
      for (int l = 0; l < kLanes; ++l) {
        CAPTURE(l);
        Matrix R = Matrix::Zero(n, n);
        for (int c = 0; c < n; ++c)
          for (int q = 0; q <= c; ++q) R(q, c) = U[(q + static_cast<size_t>(c) * n) * kLanes + l];
        for (int k = 0; k < n; ++k) CHECK(r[static_cast<size_t>(k) * kLanes + l] == 0.0);
        if (l == 1) {  // nothing appended: U unchanged, bit for bit
          CHECK(R == Us[l]);
          continue;
        }
        // RᵀR = UᵀU + r rᵀ (R is the R factor of [U; rᵀ]); compared at unit scale (the squares of
        // lanes 3 and 4 would under- or overflow).
        const double sc = l == 3 ? 1e160 : l == 4 ? 1e-160 : 1.0;
        const Matrix Rs = R * sc, Ul = Us[l] * sc;
        const Vector rl = rs[l] * sc;
        const Matrix gram = Ul.transpose() * Ul + rl * rl.transpose();
        CHECK((Rs.transpose() * Rs - gram).norm() <= 1e-13 * gram.norm());
      }
    }
    for (const auto& res : results) CHECK(std::memcmp(res.data(), results[0].data(), sizeof(double) * res.size()) == 0);
  }
}

TEST_CASE("lane kernels: every instruction set gives the same bits, and matches LAPACK") {
  using namespace ess::lanes;
  std::mt19937 rng(105);
  std::normal_distribution<double> g;
  // n around the four- and two-column sweeps of the bidiagonalization and its look-ahead, and
  // sizes whose columns would alias in cache without the padded copy (64, 128).
  for (int n : {1, 2, 3, 4, 5, 6, 7, 16, 23, 64, 130}) {
    CAPTURE(n);
    const size_t nn = static_cast<size_t>(n) * n;
    LaneBuffer bufA, bufS, bufW;
    // Two batches: random, graded, rank-deficient, zero, tiny and huge scales, a NaN lane.
    std::vector<double> A0(2 * nn * kLanes);
    for (int j = 0; j < 2 * kLanes; ++j) {
      Matrix m = ess::test::random_matrix(rng, n, n);
      if (j % 8 == 1)
        for (int r = 0; r < n; ++r) m.row(r) *= std::pow(0.1, r);
      if (j % 8 == 2 && n > 1) m.col(n - 1).setZero();
      if (j % 8 == 3) m = m.col(0) * m.row(0);  // rank one
      if (j % 8 == 4) m.setZero();
      if (j % 8 == 5) m *= 1e-200;
      if (j % 8 == 6) m *= 1e250;
      if (j == 15) m(0, 0) = std::nan("");
      for (size_t k = 0; k < nn; ++k) A0[((j / kLanes) * nn + k) * kLanes + j % kLanes] = m.data()[k];
    }
    std::vector<std::vector<double>> results;
    for (const char* isa : {"sse2", "avx2", "avx512"}) {
      const Kernels* kern = kernels_for(isa);
      if (!kern) continue;
      CAPTURE(isa);
      double* A = bufA.get(A0.size());
      std::copy(A0.begin(), A0.end(), A);
      double* S = bufS.get(2 * static_cast<size_t>(n) * kLanes);
      double* W = bufW.get(2 * singular_values_work(n));
      unsigned char status[2 * kLanes];
      kern->singular_values(n, A, S, W, status, 2);
      results.emplace_back(S, S + 2 * static_cast<size_t>(n) * kLanes);
      for (int j = 0; j < 2 * kLanes; ++j) {
        CAPTURE(j);
        if (j == 15) {
          CHECK(status[j] == lane_non_finite);
          continue;
        }
        CHECK((status[j] == lane_ok || status[j] == lane_fallback));
        Matrix m(n, n);
        for (size_t k = 0; k < nn; ++k) m.data()[k] = A0[((j / kLanes) * nn + k) * kLanes + j % kLanes];
        std::vector<double> ref(n);
        std::vector<double> work;
        std::vector<int> iwork;
        REQUIRE(singular_values(n, n, m.data(), ref.data(), work, iwork));
        const std::vector<double> got(S + static_cast<size_t>(j) * n, S + static_cast<size_t>(j + 1) * n);
        CHECK(max_rel_deviation(got, ref) <= 1e-13);
      }
    }
    for (size_t k = 1; k < results.size(); ++k) {
      // NaN lane aside, identical bits (compare as integers so NaN == NaN).
      CHECK(std::memcmp(results[k].data(), results[0].data(), sizeof(double) * results[0].size()) == 0);
    }
  }
}

TEST_CASE("lane kernels: dqds windows that start at different rows in the two interleaved vectors match LAPACK") {
  // Block-diagonal matrices bidiagonalize with an exact zero between the blocks, so dqds starts
  // on the bottom block (window [k, n − 1]): one batch split (at one row, or a different row per
  // lane), the other full, in both orders. The two batches share each transform, and a vector
  // whose windows start later than the other's must not take the unmasked step from the shared
  // start.
  using namespace ess::lanes;
  std::mt19937 rng(107);
  for (int n : {16, 23}) {
    const size_t nn = static_cast<size_t>(n) * n;
    for (int split_batch : {0, 1})
      for (bool same_row : {true, false}) {
        CAPTURE(n);
        CAPTURE(split_batch);
        CAPTURE(same_row);
        std::vector<double> A0(2 * nn * kLanes);
        for (int j = 0; j < 2 * kLanes; ++j) {
          Matrix m = ess::test::random_matrix(rng, n, n);
          if (j / kLanes == split_batch) {
            const int k = same_row ? n / 3 : 2 + j % kLanes;
            m.block(0, k, k, n - k).setZero();
            m.block(k, 0, n - k, k).setZero();
            m.bottomRightCorner(n - k, n - k) *= 1e-3;  // bottom block: the smaller values
          }
          for (size_t i = 0; i < nn; ++i) A0[((j / kLanes) * nn + i) * kLanes + j % kLanes] = m.data()[i];
        }
        std::vector<std::vector<double>> results;
        for (const char* isa : {"sse2", "avx2", "avx512"}) {
          const Kernels* kern = kernels_for(isa);
          if (!kern) continue;
          CAPTURE(isa);
          LaneBuffer bufA, bufS, bufW;
          double* A = bufA.get(A0.size());
          std::copy(A0.begin(), A0.end(), A);
          double* S = bufS.get(2 * static_cast<size_t>(n) * kLanes);
          double* W = bufW.get(2 * singular_values_work(n));
          unsigned char status[2 * kLanes];
          kern->singular_values(n, A, S, W, status, 2);
          results.emplace_back(S, S + 2 * static_cast<size_t>(n) * kLanes);
          for (int j = 0; j < 2 * kLanes; ++j) {
            CAPTURE(j);
            CHECK(status[j] == lane_ok);
            Matrix m(n, n);
            for (size_t i = 0; i < nn; ++i) m.data()[i] = A0[((j / kLanes) * nn + i) * kLanes + j % kLanes];
            std::vector<double> ref(n), work;
            std::vector<int> iwork;
            REQUIRE(singular_values(n, n, m.data(), ref.data(), work, iwork));
            const std::vector<double> got(S + static_cast<size_t>(j) * n, S + static_cast<size_t>(j + 1) * n);
            CHECK(max_rel_deviation(got, ref) <= 1e-13);
          }
        }
        for (size_t k = 1; k < results.size(); ++k)
          CHECK(std::memcmp(results[k].data(), results[0].data(), sizeof(double) * results[0].size()) == 0);
      }
  }
}

TEST_CASE("compute_layer: threads cut a layer with few channels into block chunks, bit-identical") {
  std::mt19937 rng(106);
  const int L = 45;
  for (std::string engine : {"structured", "dense"}) {
    for (TolMode mode : {TolMode::absolute, TolMode::layer}) {
      CAPTURE(engine);
      OperatorLayer layer;
      layer.name = "few";
      layer.op = std::make_unique<GlaOperator>(randn(rng, {1, 2, L, 5}), randn(rng, {1, 2, L, 5}),
                                               uniform(rng, {1, 2, L, 5}, -0.5, 0), "t");
      EssOptions o;
      o.engine = parse_engine(engine);
      o.tol_mode = mode;
      o.tol = mode == TolMode::layer ? 1e-2 : 1e-3;
      o.keep_sigma = 4;
      o.threads = 1;
      const LayerResult one = compute_layer(layer, o);
      o.threads = 7;  // 2 channels (one group of lanes for structured): chunks of blocks
      const LayerResult many = compute_layer(layer, o);
      CHECK(one.tolerance_ess == many.tolerance_ess);
      CHECK(same_bits(one.entropy_ess, many.entropy_ess));
      CHECK(same_bits(one.frobenius, many.frobenius));
      CHECK(one.sigma == many.sigma);
      CHECK(same_bits(one.layer_sigma_max, many.layer_sigma_max));
    }
  }
}

TEST_CASE("compute_layer: a sweep layer with fewer channels than threads lends them to LAPACK, same ESS") {
  std::mt19937 rng(107);
  const int L = 60;
  std::vector<Matrix> Ts;
  Matrix T = ess::test::random_matrix(rng, L, L).triangularView<Eigen::Lower>();
  Ts.push_back(T);
  OperatorLayer layer;
  layer.name = "one head";
  layer.op = std::make_unique<ess::test::ExplicitOperator>(1, 1, Ts);
  EssOptions o;
  o.engine = EngineKind::sweep;
  o.threads = 1;
  const LayerResult one = compute_layer(layer, o);
  o.threads = 4;
  const LayerResult four = compute_layer(layer, o);
  CHECK(one.tolerance_ess == four.tolerance_ess);
  for (size_t k = 0; k < one.entropy_ess.size(); ++k)
    CHECK(four.entropy_ess[k] == doctest::Approx(one.entropy_ess[k]).epsilon(1e-12));
}

TEST_CASE("work plan: chunks cover every block once, in order, with balanced cost") {
  std::vector<int> idx;
  for (int i = 1; i < 1000; ++i) idx.push_back(i);
  for (EngineKind e : {EngineKind::structured, EngineKind::dense, EngineKind::sweep}) {
    const auto units = plan_work(3, 8, idx, 1000, 16, e);
    if (e == EngineKind::sweep) {
      CHECK(units.size() == 1);  // the sweep carries state from block to block: never cut
      continue;
    }
    REQUIRE(units.size() == 16);
    int next = 0;
    for (const auto& u : units) {
      CHECK(u.first_item == 0);
      CHECK(u.items == 3);
      CHECK(u.pos_begin == next);
      next = u.pos_end;
    }
    CHECK(next == static_cast<int>(idx.size()));
    if (e == EngineKind::dense) {  // cost m·n·min(m, n): the middle chunks are the narrowest
      CHECK(units[8].pos_end - units[8].pos_begin < units[0].pos_end - units[0].pos_begin);
    }
  }
  // Enough channel groups for every thread: no cuts.
  const auto units = plan_work(64, 8, idx, 1000, 4, EngineKind::structured);
  CHECK(units.size() == 8);
  for (const auto& u : units) CHECK(u.pos_end - u.pos_begin == static_cast<int>(idx.size()));
}
