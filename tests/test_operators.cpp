// Conformance of every operator family: the materialized T equals the family's own definition
// (apply), the realization reproduces T, T is causal, exact rank bounds hold (and are attained),
// hand-checked small cases, operator-file round trip and bad input.
#include <doctest/doctest.h>

#include <cmath>
#include <filesystem>
#include <functional>
#include <map>

#include "libess/error.h"
#include "libess/hdf5.h"
#include "operators/conv.h"
#include "operators/delta_net.h"
#include "operators/dense.h"
#include "operators/gla.h"
#include "operators/linear_attention.h"
#include "operators/mamba.h"
#include "operators/mamba2.h"
#include "operators/registry.h"
#include "operators/retention.h"
#include "operators/s4d.h"
#include "operators/softmax_attention.h"
#include "test_helpers.h"

using namespace ess;
using ess::test::lower_triangular;
using ess::test::randn;
using ess::test::relative_error;
using ess::test::uniform;

namespace {

constexpr int kL = 20;  // the sequence length of ess::test::operator_cases

// Numerical rank: singular values above 1e-10 σ_1.
int numerical_rank(const Matrix& H) {
  if (H.size() == 0) return 0;
  const Vector s = ess::test::jacobi_singular_values(H);
  int r = 0;
  for (int k = 0; k < s.size(); ++k) r += s(k) > 1e-10 * std::max(s(0), 1e-300);
  return r;
}

}  // namespace

TEST_CASE("operators: every family's materialized T equals its own definition applied to random inputs") {
  std::mt19937 rng(42);
  for (auto& c : test::operator_cases(rng)) {
    CAPTURE(c.name);
    const auto& op = *c.op;
    REQUIRE(op.seq_len() == kL);
    for (int b = 0; b < op.batch(); ++b)
      for (int ch = 0; ch < op.channels(); ++ch) {
        const Matrix T = op.dense_matrix(b, ch);
        const Vector x = ess::test::random_matrix(rng, op.seq_len(), 1);
        const Vector y1 = T * x, y2 = op.apply(b, ch, x);
        CHECK(relative_error(y1, y2) < 1e-12);
        // Causal: nothing above the diagonal.
        CHECK(T.triangularView<Eigen::StrictlyUpper>().toDenseMatrix().norm() == 0.0);
      }
  }
}

TEST_CASE("operators: every family's multi-column multiply equals materialize() · X") {
  std::mt19937 rng(47);
  for (auto& c : test::operator_cases(rng)) {
    CAPTURE(c.name);
    const auto& op = *c.op;
    for (int b = 0; b < op.batch(); ++b)
      for (int ch = 0; ch < op.channels(); ++ch) {
        const Matrix X = ess::test::random_matrix(rng, op.seq_len(), 3);
        Matrix Y = Matrix::Constant(op.seq_len(), 3, std::nan(""));
        op.multiply(b, ch, X, Y);
        CHECK(relative_error(Y, op.dense_matrix(b, ch) * X) < 1e-12);
        // One column, and columns of a larger matrix (strided blocks, as the forward passes use).
        Matrix wide = ess::test::random_matrix(rng, op.seq_len(), 7), out = Matrix::Zero(op.seq_len(), 7);
        op.multiply(b, ch, wide.middleCols(2, 4), out.middleCols(1, 4));
        CHECK(relative_error(out.middleCols(1, 4), op.dense_matrix(b, ch) * wide.middleCols(2, 4)) < 1e-12);
        CHECK(out.col(0).norm() == 0.0);
        CHECK(out.rightCols(2).norm() == 0.0);
      }
  }
}

TEST_CASE("operators: softmax attention multiply over several row tiles (plain, window, mask, long window, softcap)") {
  std::mt19937 rng(48);
  const int L = 2 * SoftmaxAttentionOperator::kRowTile + 37;
  std::vector<std::uint8_t> mask(static_cast<size_t>(L) * L, 0);
  for (int i = 0; i < L; ++i)
    for (int j = 0; j <= i; ++j) mask[static_cast<size_t>(i) * L + j] = (i - j) % 5 == 0 || j < 3;
  struct Variant {
    std::vector<std::uint8_t> mask;
    int window;
    double softcap;
  };
  for (const auto& v : {Variant{{}, 0, 0.0}, Variant{{}, 9, 0.0}, Variant{mask, 0, 0.0}, Variant{{}, L - 3, 0.0},
                        Variant{mask, 70, 0.0}, Variant{{}, 0, 1.5}, Variant{{}, 9, 3.0}}) {
    CAPTURE(v.window);
    CAPTURE(v.mask.size());
    CAPTURE(v.softcap);
    const Tensor q = randn(rng, {1, 2, L, 4}, 2.0), k = randn(rng, {1, 2, L, 4}, 2.0);
    SoftmaxAttentionOperator op(q, k, v.mask, 0.0, v.window, "t", v.softcap);
    for (int h = 0; h < 2; ++h) {
      // materialize() (tiles of kRowTile rows) against the softmax written out entry by entry.
      Matrix ref = Matrix::Zero(L, L);
      for (int i = 0; i < L; ++i) {
        std::vector<int> keys;
        for (int j = 0; j <= i; ++j)
          if ((v.window == 0 || i - j < v.window) && (v.mask.empty() || v.mask[static_cast<size_t>(i) * L + j]))
            keys.push_back(j);
        std::vector<double> logit;
        for (int j : keys) {
          double dot = 0;
          for (int d = 0; d < 4; ++d)
            dot += q.data[(static_cast<size_t>(h) * L + i) * 4 + d] * k.data[(static_cast<size_t>(h) * L + j) * 4 + d];
          dot /= 2.0;  // scale 0 means 1/√d_k = 1/2
          logit.push_back(v.softcap > 0 ? v.softcap * std::tanh(dot / v.softcap) : dot);
        }
        const double m = *std::max_element(logit.begin(), logit.end());
        double z = 0;
        for (double x : logit) z += std::exp(x - m);
        for (size_t t = 0; t < keys.size(); ++t) ref(i, keys[t]) = std::exp(logit[t] - m) / z;
      }
      CHECK((op.dense_matrix(0, h) - ref).cwiseAbs().maxCoeff() < 1e-13);
      const Matrix X = ess::test::random_matrix(rng, L, 5);
      Matrix Y(L, 5);
      op.multiply(0, h, X, Y);
      CHECK(relative_error(Y, op.dense_matrix(0, h) * X) < 1e-12);
    }
  }
}

TEST_CASE("operators: every structured family's realization reproduces T") {
  std::mt19937 rng(43);
  for (auto& c : test::operator_cases(rng)) {
    CAPTURE(c.name);
    const auto& op = *c.op;
    if (!c.structured) {
      CHECK(op.realization(0, 0) == nullptr);
      CHECK(op.realization_dim() == 0);
      continue;
    }
    for (int b = 0; b < op.batch(); ++b)
      for (int ch = 0; ch < op.channels(); ++ch) {
        const auto r = op.realization(b, ch);
        REQUIRE(r != nullptr);
        CHECK(r->state_dim() == op.realization_dim());
        CHECK(r->length() == op.seq_len());
        const Matrix T = op.dense_matrix(b, ch);
        CHECK(relative_error(materialize(*r), T) < 1e-12);
        // The realization's own recurrence agrees with the family's apply.
        const Vector x = ess::test::random_matrix(rng, op.seq_len(), 1);
        CHECK(relative_error(run_recurrence(*r, x), op.apply(b, ch, x)) < 1e-12);
      }
  }
}

TEST_CASE("operators: rank(H_i) ≤ min(TSS_i, i, L − i) on every block, exact bounds attained by generic inputs") {
  std::mt19937 rng(44);
  for (auto& c : test::operator_cases(rng)) {
    CAPTURE(c.name);
    const auto& op = *c.op;
    const int L = op.seq_len();
    for (int b = 0; b < op.batch(); ++b)
      for (int ch = 0; ch < op.channels(); ++ch) {
        CAPTURE(b);
        CAPTURE(ch);
        const Matrix T = op.dense_matrix(b, ch);
        for (int i = 1; i < L; ++i) {
          CAPTURE(i);
          const int r = numerical_rank(T.block(i, 0, L - i, i));
          CHECK(r <= std::min({op.tss(i), i, L - i}));
          if (c.rank_bound >= 0) {
            CHECK(r <= c.rank_bound);
            // TSS is the family's bound (conv and window attention: min(i, K−1) / min(i, w−1)).
            CHECK(op.tss(i) == (c.name.rfind("conv", 0) == 0 || c.name.rfind("softmax", 0) == 0
                                    ? std::min(c.rank_bound, i)
                                    : c.rank_bound));
          }
        }
        // A middle block of a generic operator reaches the bound (L = 20 ≥ 2N + 2 for every case).
        if (c.rank_bound >= 0) CHECK(numerical_rank(T.block(L / 2, 0, L - L / 2, L / 2)) == c.rank_bound);
      }
  }
}

TEST_CASE("operators: hand-checked small cases") {
  SUBCASE("dense: T as given, TSS_i = i") {
    Tensor T({1, 1, 3, 3}, {1, 0, 0, 2, 3, 0, 4, 5, 6});
    DenseOperator op(T, "t");
    Matrix expect(3, 3);
    expect << 1, 0, 0, 2, 3, 0, 4, 5, 6;
    CHECK(op.dense_matrix(0, 0) == expect);
    CHECK(op.apply(0, 0, Vector::Ones(3)) == Vector((Vector(3) << 1, 5, 15).finished()));
    CHECK(op.tss(2) == 2);
    CHECK(op.channel_kind() == ChannelKind::channel);
  }
  SUBCASE("conv h = [1, 2, 3] is the Toeplitz matrix") {
    Tensor h({1, 3}, {1, 2, 3});
    ConvOperator op(h, Tensor(), Tensor(), 4, "t");
    Matrix expect(4, 4);
    expect << 1, 0, 0, 0, 2, 1, 0, 0, 3, 2, 1, 0, 0, 3, 2, 1;
    CHECK(op.dense_matrix(0, 0) == expect);
    CHECK(op.batch() == 1);
    CHECK(op.tss(1) == 1);
    CHECK(op.tss(3) == 2);
    CHECK(op.realization_dim() == 3);
  }
  SUBCASE("gated conv: T_ij = post_i h[i−j] pre_j") {
    Tensor h({1, 2}, {1, 2}), pre({1, 1, 3}, {1, 2, 3}), post({1, 1, 3}, {4, 5, 6});
    ConvOperator op(h, pre, post, 0, "t");
    Matrix expect(3, 3);
    expect << 4 * 1 * 1, 0, 0, 5 * 2 * 1, 5 * 1 * 2, 0, 0, 6 * 2 * 2, 6 * 1 * 3;
    CHECK(op.dense_matrix(0, 0) == expect);
    CHECK(op.seq_len() == 3);
  }
  SUBCASE("softmax with q = 0 averages uniformly over the allowed positions") {
    Tensor q({1, 1, 4, 2}), k({1, 1, 4, 2}, {1, 2, 3, 4, 5, 6, 7, 8});
    SoftmaxAttentionOperator causal(q, k, {}, 0.0, 0, "t");
    const Matrix T = causal.dense_matrix(0, 0);
    for (int i = 0; i < 4; ++i)
      for (int j = 0; j <= i; ++j) CHECK(T(i, j) == doctest::Approx(1.0 / (i + 1)));
    CHECK(causal.scale() == doctest::Approx(1 / std::sqrt(2.0)));
    SoftmaxAttentionOperator window(q, k, {}, 0.0, 2, "t");
    const Matrix W = window.dense_matrix(0, 0);
    CHECK(W(3, 3) == doctest::Approx(0.5));
    CHECK(W(3, 2) == doctest::Approx(0.5));
    CHECK(W(3, 1) == 0.0);
    for (int i = 1; i < 4; ++i) {
      CHECK(causal.tss(i) == i);
      CHECK(window.tss(i) == 1);  // min(i, w − 1)
    }
  }
  SUBCASE("softmax: two keys, scores 0 and log 3 give weights 1/4, 3/4") {
    Tensor q({1, 1, 2, 1}, {0, 1}), k({1, 1, 2, 1}, {0, std::log(3.0)});
    SoftmaxAttentionOperator op(q, k, {}, 1.0, 0, "t");
    const Matrix T = op.dense_matrix(0, 0);
    CHECK(T(1, 0) == doctest::Approx(0.25));
    CHECK(T(1, 1) == doctest::Approx(0.75));
  }
  SUBCASE("softmax with soft-capping c: scores 0 and c·atanh(log 3 / c) are capped to 0 and log 3") {
    const double c = 2.0, s = c * std::atanh(std::log(3.0) / c);  // s ≈ 1.23 > log 3 ≈ 1.10
    Tensor q({1, 1, 2, 1}, {0, 1}), k({1, 1, 2, 1}, {0, s});
    SoftmaxAttentionOperator op(q, k, {}, 1.0, 0, "t", c);
    CHECK(op.softcap() == c);
    const Matrix T = op.dense_matrix(0, 0);
    CHECK(T(1, 0) == doctest::Approx(0.25).epsilon(1e-14));
    CHECK(T(1, 1) == doctest::Approx(0.75).epsilon(1e-14));
    Vector x(2), y;
    x << 4.0, 8.0;
    y = op.apply(0, 0, x);
    CHECK(y(1) == doctest::Approx(7.0).epsilon(1e-14));
    // Without the cap the same scores give other weights; a huge cap is no cap.
    SoftmaxAttentionOperator plain(q, k, {}, 1.0, 0, "t");
    CHECK(plain.dense_matrix(0, 0)(1, 1) == doctest::Approx(std::exp(s) / (1 + std::exp(s))).epsilon(1e-14));
    CHECK(plain.dense_matrix(0, 0)(1, 1) > 0.77);
    SoftmaxAttentionOperator loose(q, k, {}, 1.0, 0, "t", 1e9);
    CHECK((loose.dense_matrix(0, 0) - plain.dense_matrix(0, 0)).cwiseAbs().maxCoeff() < 1e-12);
    CHECK_THROWS_WITH_AS(SoftmaxAttentionOperator(q, k, {}, 1.0, 0, "t", -1.0), doctest::Contains("softcap"),
                         InputError);
  }
  SUBCASE("softmax: TSS of a strided mask counts the past positions still attended to") {
    // Row i attends to j when i − j is even: row 2 → {0, 2}, row 3 → {1, 3}.
    const int L = 4;
    std::vector<std::uint8_t> mask(L * L, 0);
    for (int i = 0; i < L; ++i)
      for (int j = 0; j <= i; ++j) mask[i * L + j] = (i - j) % 2 == 0;
    SoftmaxAttentionOperator op(Tensor({1, 1, L, 1}), Tensor({1, 1, L, 1}), mask, 0.0, 0, "t");
    CHECK(op.tss(1) == 1);  // j = 0 (row 2)
    CHECK(op.tss(2) == 2);  // j = 0 (row 2), j = 1 (row 3)
    CHECK(op.tss(3) == 1);  // j = 1 (row 3)
    const Matrix T = op.dense_matrix(0, 0);
    CHECK(T(3, 1) == doctest::Approx(0.5));
    CHECK(T(3, 2) == 0.0);
  }
  SUBCASE("linear attention without normalization is tril(q kᵀ)") {
    Tensor q({1, 1, 3, 1}, {1, 2, 3}), k({1, 1, 3, 1}, {4, 5, 6});
    LinearAttentionOperator op(q, k, false, "t");
    Matrix expect(3, 3);
    expect << 4, 0, 0, 8, 10, 0, 12, 15, 18;
    CHECK(op.dense_matrix(0, 0) == expect);
    CHECK(op.tss(1) == 1);
  }
  SUBCASE("normalized linear attention with q = k = 1 averages: T_ij = 1/(i+1)") {
    Tensor ones({1, 1, 4, 2}, std::vector<double>(8, 1.0));
    LinearAttentionOperator op(ones, ones, true, "t");
    const Matrix T = op.dense_matrix(0, 0);
    for (int i = 0; i < 4; ++i)
      for (int j = 0; j <= i; ++j) CHECK(T(i, j) == doctest::Approx(1.0 / (i + 1)));
  }
  SUBCASE("retention: T_ij = Σ_n q_i[n] k_j[n] γ_n^{i−j}") {
    Tensor q({1, 1, 4, 2}, {1, 2, 1, 2, 1, 2, 1, 2}), k({1, 1, 4, 2}, std::vector<double>(8, 1.0));
    RetentionOperator per_head(q, k, Tensor({1}, {0.5}), "t");
    RetentionOperator per_dim(q, k, Tensor({1, 2}, {0.5, 0.25}), "t");
    const Matrix A = per_head.dense_matrix(0, 0), B = per_dim.dense_matrix(0, 0);
    for (int i = 0; i < 4; ++i)
      for (int j = 0; j <= i; ++j) {
        CHECK(A(i, j) == doctest::Approx(3 * std::pow(0.5, i - j)));
        CHECK(B(i, j) == doctest::Approx(std::pow(0.5, i - j) + 2 * std::pow(0.25, i - j)));
      }
  }
  SUBCASE("gla: decays multiply over m = j+1..i, g_j itself is not used") {
    Tensor one({1, 1, 3, 1}, {1, 1, 1}), g({1, 1, 3, 1}, {-5.0, -0.2, -0.3});
    GlaOperator op(one, one, g, "t");
    const Matrix T = op.dense_matrix(0, 0);
    CHECK(T(0, 0) == doctest::Approx(1.0));
    CHECK(T(1, 0) == doctest::Approx(std::exp(-0.2)));
    CHECK(T(2, 0) == doctest::Approx(std::exp(-0.5)));
    CHECK(T(2, 1) == doctest::Approx(std::exp(-0.3)));
  }
  SUBCASE("delta_net with d = 1: T_ij = Π_{m=j+1..i} e^{g_m}(1 − β_m) · β_j") {
    Tensor one({1, 1, 3, 1}, {1, 1, 1}), beta({1, 1, 3}, {0.5, 0.25, 0.5});
    DeltaNetOperator plain(one, one, beta, Tensor(), "t");
    Matrix expect(3, 3);
    expect << 0.5, 0, 0, 0.75 * 0.5, 0.25, 0, 0.5 * 0.75 * 0.5, 0.5 * 0.25, 0.5;
    CHECK(relative_error(plain.dense_matrix(0, 0), expect) < 1e-15);
    DeltaNetOperator gated(one, one, beta, Tensor({1, 1, 3}, {0.0, 0.0, std::log(0.5)}), "t");
    Matrix expect_gated = expect;
    expect_gated(2, 0) *= 0.5;
    expect_gated(2, 1) *= 0.5;
    CHECK(relative_error(gated.dense_matrix(0, 0), expect_gated) < 1e-15);
  }
  SUBCASE("delta_net: β = 1 on a repeated key overwrites the old value") {
    Tensor q({1, 1, 2, 2}, {1, 0, 1, 0}), k({1, 1, 2, 2}, {1, 0, 1, 0}), beta({1, 1, 2}, {1, 1});
    DeltaNetOperator op(q, k, beta, Tensor(), "t");
    const Matrix T = op.dense_matrix(0, 0);
    CHECK(T(1, 0) == doctest::Approx(0.0));
    CHECK(T(1, 1) == doctest::Approx(1.0));
  }
  SUBCASE("mamba with one state: T_ij = C_i B_j dt_j exp(A Σ dt)") {
    Tensor dt({1, 1, 3}, {0.5, 1.0, 2.0}), A({1, 1}, {-1.0}), B({1, 3, 1}, {1, 2, 3}), C({1, 3, 1}, {4, 5, 6});
    MambaOperator op(dt, A, B, C, "t");
    const Matrix T = op.dense_matrix(0, 0);
    CHECK(T(0, 0) == doctest::Approx(4 * 1 * 0.5));
    CHECK(T(2, 0) == doctest::Approx(6 * 1 * 0.5 * std::exp(-(1.0 + 2.0))));
    CHECK(T(2, 1) == doctest::Approx(6 * 2 * 1.0 * std::exp(-2.0)));
    CHECK(op.tss(1) == 1);
    CHECK(op.channel_kind() == ChannelKind::channel);
  }
  SUBCASE("mamba2: heads share their group's B, C; each head has its own dt, A") {
    Tensor dt({1, 2, 2}, {1.0, 1.0, 0.5, 2.0}), A({2}, {-1.0, -0.5}), B({1, 1, 2, 1}, {1, 2}), C({1, 1, 2, 1}, {3, 4});
    Mamba2Operator op(dt, A, B, C, "t");
    const Matrix T0 = op.dense_matrix(0, 0), T1 = op.dense_matrix(0, 1);
    CHECK(T0(1, 0) == doctest::Approx(4 * 1 * 1.0 * std::exp(-1.0 * 1.0)));
    CHECK(T1(1, 0) == doctest::Approx(4 * 1 * 0.5 * std::exp(-0.5 * 2.0)));
    CHECK(T1(1, 1) == doctest::Approx(4 * 2 * 2.0));
    CHECK(op.channel_kind() == ChannelKind::head);
  }
  SUBCASE("s4d real mode: T_ij = c a^{i−j} b") {
    Tensor a({1, 1}, {0.5}), b({1, 1}, {2.0}), c({1, 1}, {3.0});
    S4dOperator op(a, Tensor(), b, Tensor(), c, Tensor(), 4, "t");
    const Matrix T = op.dense_matrix(0, 0);
    CHECK(T(3, 0) == doctest::Approx(3 * 2 * 0.125));
    CHECK(T(1, 1) == doctest::Approx(6.0));
    CHECK(op.tss(2) == 1);
    CHECK(op.batch() == 1);
  }
  SUBCASE("s4d complex mode a = 0.5i: T_ij = Re((0.5i)^{i−j}); its conjugate doubles T and keeps TSS 2") {
    const int L = 5;
    S4dOperator one(Tensor({1, 1}, {0.0}), Tensor({1, 1}, {0.5}), Tensor({1, 1}, {1.0}), Tensor(),
                    Tensor({1, 1}, {1.0}), Tensor(), L, "t");
    const double expect[] = {1, 0, -0.25, 0, 0.0625};
    const Matrix T = one.dense_matrix(0, 0);
    for (int k = 0; k < L; ++k) CHECK(T(L - 1, L - 1 - k) == doctest::Approx(expect[k]));
    CHECK(one.tss(2) == 2);
    CHECK(one.realization_dim() == 2);
    S4dOperator pair(Tensor({1, 2}, {0.0, 0.0}), Tensor({1, 2}, {0.5, -0.5}), Tensor({1, 2}, {1.0, 1.0}), Tensor(),
                     Tensor({1, 2}, {1.0, 1.0}), Tensor(), L, "t");
    CHECK(relative_error(pair.dense_matrix(0, 0), 2 * T) < 1e-15);
    CHECK(pair.tss(2) == 2);  // McMillan degree of the conjugate pair
    CHECK(pair.realization_dim() == 4);
    // Two unrelated complex modes count 2 each.
    S4dOperator two(Tensor({1, 2}, {0.0, 0.3}), Tensor({1, 2}, {0.5, 0.4}), Tensor({1, 2}, {1.0, 1.0}), Tensor(),
                    Tensor({1, 2}, {1.0, 1.0}), Tensor(), L, "t");
    CHECK(two.tss(2) == 4);
  }
}

namespace {

// Writes an operator file with one layer `blk0` whose datasets are given; returns its path.
std::string write_ops(const std::string& dir, const std::string& file, const std::string& family,
                      const std::map<std::string, Tensor>& data, const std::string& format = "ess-operators",
                      long long major = 1, bool with_index = true, bool as_float32 = false) {
  const std::string path = dir + "/" + file;
  h5::OutputFile out(path);
  out.root().set_attr("format", format);
  out.root().set_attr("format_version", std::vector<long long>{major, 0});
  auto g = out.root().create_group("layers/blk0");
  g.set_attr("family", family);
  if (with_index) g.set_attr("layer_index", 0);
  for (const auto& [name, t] : data) {
    if (as_float32) {
      std::vector<float> f(t.data.begin(), t.data.end());
      g.write(name, t.shape, f.data());
    } else {
      g.write(name, t.shape, t.data.data());
    }
  }
  out.commit();
  return path;
}

}  // namespace

TEST_CASE("operators: operator file round trip for every family reader") {
  std::mt19937 rng(45);
  const std::string dir = ess::test::temp_dir("ops_roundtrip");
  const int L = 8;
  struct Spec {
    std::string family;
    std::map<std::string, Tensor> data;
    std::function<std::unique_ptr<LayerOperator>(const std::map<std::string, Tensor>&)> build;  // the same in memory
  };
  auto at = [](const std::map<std::string, Tensor>& m, const std::string& k) { return m.at(k); };
  std::vector<Spec> specs = {
      {"dense",
       {{"T", lower_triangular(randn(rng, {1, 2, L, L}))}},
       [&](const auto& m) { return std::make_unique<DenseOperator>(at(m, "T"), "m"); }},
      {"softmax_attention",
       {{"q", randn(rng, {1, 2, L, 3})}, {"k", randn(rng, {1, 2, L, 3})}},
       [&](const auto& m) {
         return std::make_unique<SoftmaxAttentionOperator>(at(m, "q"), at(m, "k"), std::vector<std::uint8_t>{}, 0.0, 0,
                                                           "m");
       }},
      {"linear_attention",
       {{"q", randn(rng, {1, 2, L, 3})}, {"k", randn(rng, {1, 2, L, 3})}},
       [&](const auto& m) { return std::make_unique<LinearAttentionOperator>(at(m, "q"), at(m, "k"), false, "m"); }},
      {"retention",
       {{"q", randn(rng, {1, 2, L, 3})}, {"k", randn(rng, {1, 2, L, 3})}, {"decay", uniform(rng, {2, 3}, 0.5, 0.9)}},
       [&](const auto& m) { return std::make_unique<RetentionOperator>(at(m, "q"), at(m, "k"), at(m, "decay"), "m"); }},
      {"gla",
       {{"q", randn(rng, {1, 2, L, 3})},
        {"k", randn(rng, {1, 2, L, 3})},
        {"log_decay", uniform(rng, {1, 2, L, 3}, -1, 0)}},
       [&](const auto& m) { return std::make_unique<GlaOperator>(at(m, "q"), at(m, "k"), at(m, "log_decay"), "m"); }},
      {"delta_net",
       {{"q", randn(rng, {1, 2, L, 3})},
        {"k", randn(rng, {1, 2, L, 3})},
        {"beta", uniform(rng, {1, 2, L}, 0, 1)},
        {"log_gate", uniform(rng, {1, 2, L}, -1, 0)}},
       [&](const auto& m) {
         return std::make_unique<DeltaNetOperator>(at(m, "q"), at(m, "k"), at(m, "beta"), at(m, "log_gate"), "m");
       }},
      {"mamba",
       {{"dt", uniform(rng, {1, 3, L}, 0, 1)},
        {"A", uniform(rng, {3, 4}, -1, 0)},
        {"B", randn(rng, {1, L, 4})},
        {"C", randn(rng, {1, L, 4})}},
       [&](const auto& m) {
         return std::make_unique<MambaOperator>(at(m, "dt"), at(m, "A"), at(m, "B"), at(m, "C"), "m");
       }},
      {"mamba2",
       {{"dt", uniform(rng, {1, 2, L}, 0, 1)},
        {"A", uniform(rng, {2}, -1, 0)},
        {"B", randn(rng, {1, 1, L, 4})},
        {"C", randn(rng, {1, 1, L, 4})}},
       [&](const auto& m) {
         return std::make_unique<Mamba2Operator>(at(m, "dt"), at(m, "A"), at(m, "B"), at(m, "C"), "m");
       }},
      {"conv",
       {{"h", randn(rng, {2, 3})}, {"pre_gate", randn(rng, {1, 2, L})}, {"post_gate", randn(rng, {1, 2, L})}},
       [&](const auto& m) {
         return std::make_unique<ConvOperator>(at(m, "h"), at(m, "pre_gate"), at(m, "post_gate"), 0, "m");
       }},
  };
  for (const bool f32 : {false, true}) {
    for (const auto& s : specs) {
      CAPTURE(s.family);
      CAPTURE(f32);
      const auto path = write_ops(dir, s.family + ".h5", s.family, s.data, "ess-operators", 1, true, f32);
      auto layers = read_operator_file(path);
      REQUIRE(layers.size() == 1);
      CHECK(layers[0].name == "blk0");
      CHECK(layers[0].layer_index == 0);
      CHECK(layers[0].op->family() == s.family);
      CHECK(layers[0].op->seq_len() == L);
      // Row-major datasets land where the in-memory operator has them.
      const auto ref = s.build(s.data);
      for (int c = 0; c < ref->channels(); ++c)
        CHECK(relative_error(layers[0].op->dense_matrix(0, c), ref->dense_matrix(0, c)) < (f32 ? 1e-5 : 1e-15));
    }
  }
  // s4d (and ungated conv) has no time axis: seq_len from the layer attribute or the reader option.
  const auto s4d = write_ops(
      dir, "s4d.h5", "s4d",
      {{"a_re", uniform(rng, {2, 3}, -0.9, 0.9)}, {"b_re", randn(rng, {2, 3})}, {"c_re", randn(rng, {2, 3})}});
  CHECK_THROWS_WITH_AS(read_operator_file(s4d), doctest::Contains("seq_len"), InputError);
  OperatorReadOptions o;
  o.default_seq_len = 16;
  CHECK(read_operator_file(s4d, o)[0].op->seq_len() == 16);
  CHECK(read_operator_file(s4d, o)[0].op->batch() == 1);
  {
    h5::OutputFile out(dir + "/s4d_attr.h5");
    out.root().set_attr("format", std::string("ess-operators"));
    out.root().set_attr("format_version", std::vector<long long>{1, 0});
    auto g = out.root().create_group("layers/s");
    g.set_attr("family", std::string("s4d"));
    g.set_attr("layer_index", 0);
    g.set_attr("seq_len", 12);
    const Tensor a = uniform(rng, {2, 3}, -0.9, 0.9), ai = uniform(rng, {2, 3}, 0.1, 0.3);
    for (const char* n : {"a_re", "b_re", "c_re"}) g.write(n, a.shape, a.data.data());
    g.write("a_im", ai.shape, ai.data.data());
    out.commit();
    const auto layers = read_operator_file(dir + "/s4d_attr.h5");
    CHECK(layers[0].op->seq_len() == 12);
    CHECK(layers[0].op->realization_dim() == 6);
  }
  {
    // Several layers come back sorted by layer_index, not by name; softmax attributes are read.
    h5::OutputFile out(dir + "/multi.h5");
    out.root().set_attr("format", std::string("ess-operators"));
    out.root().set_attr("format_version", std::vector<long long>{1, 0});
    const Tensor q = randn(rng, {1, 1, L, 2});
    const char* names[] = {"a_late", "b_early", "c_mid"};
    const int index[] = {2, 0, 1};
    for (int k = 0; k < 3; ++k) {
      auto g = out.root().create_group(std::string("layers/") + names[k]);
      g.set_attr("family", std::string("softmax_attention"));
      g.set_attr("layer_index", index[k]);
      g.set_attr("window", 3);
      g.set_attr("scale", 0.5);
      g.set_attr("softcap", 7.5);
      g.write("q", q.shape, q.data.data());
      g.write("k", q.shape, q.data.data());
    }
    out.commit();
    const auto layers = read_operator_file(dir + "/multi.h5");
    REQUIRE(layers.size() == 3);
    CHECK(layers[0].name == "b_early");
    CHECK(layers[1].name == "c_mid");
    CHECK(layers[2].name == "a_late");
    const auto& sa = dynamic_cast<const SoftmaxAttentionOperator&>(*layers[0].op);
    CHECK(sa.window() == 3);
    CHECK(sa.scale() == 0.5);
    CHECK(sa.softcap() == 7.5);
    CHECK(sa.tss(5) == 2);
  }
  std::filesystem::remove_all(dir);
}

TEST_CASE("operators: bad operator files are refused with the file, layer and dataset named") {
  std::mt19937 rng(46);
  const std::string dir = ess::test::temp_dir("ops_bad");
  const int L = 6;
  auto expect_error = [&](const std::string& path, const std::vector<std::string>& fragments,
                          const std::string& layer = "blk0") {
    CAPTURE(path);
    try {
      read_operator_file(path);
      FAIL("no error for " << path);
    } catch (const InputError& e) {
      const std::string m = e.what();
      CAPTURE(m);
      CHECK(e.code() == ExitCode::bad_input);
      CHECK(m.find(std::filesystem::path(path).filename().string()) != std::string::npos);
      if (!layer.empty()) CHECK(m.find(layer) != std::string::npos);
      for (const auto& f : fragments) {
        CAPTURE(f);
        CHECK(m.find(f) != std::string::npos);
      }
    }
  };
  const Tensor q = randn(rng, {1, 2, L, 3});
  expect_error(write_ops(dir, "missing.h5", "softmax_attention", {{"q", q}}), {"missing dataset 'k'"});
  expect_error(write_ops(dir, "shape.h5", "softmax_attention", {{"q", q}, {"k", randn(rng, {1, 2, L, 4})}}),
               {"'k' has shape [1, 2, 6, 4], expected [1, 2, 6, 3]"});
  expect_error(write_ops(dir, "rank.h5", "linear_attention", {{"q", randn(rng, {2, L, 3})}, {"k", q}}),
               {"'q' has shape [2, 6, 3], expected [*, *, *, *]"});
  expect_error(write_ops(dir, "family.h5", "hyena9000", {{"q", q}}),
               {"unknown operator family 'hyena9000'", "softmax_attention", "mamba2", "conv"});
  Tensor nan = q;
  nan.data[1 * L * 3 + 2 * 3 + 1] = std::nan("");  // batch 0, head 1, position 2, feature 1
  expect_error(write_ops(dir, "nan.h5", "softmax_attention", {{"q", nan}, {"k", q}}),
               {"'q'", "NaN", "batch 0, head 1, position 2, feature 1"});
  Tensor inf = q;
  inf.data[2] = INFINITY;
  expect_error(write_ops(dir, "inf.h5", "linear_attention", {{"q", q}, {"k", inf}}), {"'k'", "Inf", "batch 0, head 0"});
  Tensor dt_nan = uniform(rng, {1, 3, L}, 0, 1);
  dt_nan.data[2 * L + 4] = std::nan("");
  expect_error(write_ops(dir, "dt_nan.h5", "mamba",
                         {{"dt", dt_nan},
                          {"A", uniform(rng, {3, 2}, -1, 0)},
                          {"B", randn(rng, {1, L, 2})},
                          {"C", randn(rng, {1, L, 2})}}),
               {"'dt'", "batch 0, channel 2, position 4"});
  Tensor upper = randn(rng, {1, 1, L, L});
  expect_error(write_ops(dir, "upper.h5", "dense", {{"T", upper}}),
               {"not lower-triangular", "batch 0, channel 0, (row 0, column 1)"});
  expect_error(
      write_ops(dir, "decay.h5", "gla", {{"q", q}, {"k", q}, {"log_decay", uniform(rng, {1, 2, L, 3}, 0.1, 1)}}),
      {"'log_decay' must be ≤ 0", "batch 0, head 0, position 0, feature 0"});
  expect_error(
      write_ops(
          dir, "gate.h5", "delta_net",
          {{"q", q}, {"k", q}, {"beta", uniform(rng, {1, 2, L}, 0, 1)}, {"log_gate", uniform(rng, {1, 2, L}, 0.1, 1)}}),
      {"'log_gate' must be ≤ 0"});
  expect_error(write_ops(dir, "mamba_A.h5", "mamba",
                         {{"dt", uniform(rng, {1, 3, L}, 0, 1)},
                          {"A", uniform(rng, {3, 2}, 0.1, 1)},
                          {"B", randn(rng, {1, L, 2})},
                          {"C", randn(rng, {1, L, 2})}}),
               {"'A' must be ≤ 0"});
  expect_error(write_ops(dir, "groups.h5", "mamba2",
                         {{"dt", uniform(rng, {1, 3, L}, 0, 1)},
                          {"A", uniform(rng, {3}, -1, 0)},
                          {"B", randn(rng, {1, 2, L, 4})},
                          {"C", randn(rng, {1, 2, L, 4})}}),
               {"3 heads cannot be split evenly over 2 groups"});
  expect_error(
      write_ops(dir, "decay_shape.h5", "retention", {{"q", q}, {"k", q}, {"decay", uniform(rng, {3}, 0.5, 0.9)}}),
      {"'decay' has shape [3], expected [2]"});
  expect_error(write_ops(dir, "conv_gate.h5", "conv", {{"h", randn(rng, {2, 3})}, {"pre_gate", randn(rng, {1, 3, L})}}),
               {"'pre_gate' has shape [1, 3, 6], expected [*, 2, *]"});
  expect_error(write_ops(dir, "fmt.h5", "dense", {{"T", upper}}, "ess-results"), {"format", "ess-operators"}, "");
  expect_error(write_ops(dir, "major.h5", "dense", {{"T", upper}}, "ess-operators", 2), {"newer"}, "");
  expect_error(write_ops(dir, "noindex.h5", "softmax_attention", {{"q", q}, {"k", q}}, "ess-operators", 1, false),
               {"layer_index"});
  {
    // Non-causal mask, a mask of the wrong dtype, an integer q, a seq_len attribute out of range.
    const std::string path = dir + "/mask.h5";
    h5::OutputFile out(path);
    out.root().set_attr("format", std::string("ess-operators"));
    out.root().set_attr("format_version", std::vector<long long>{1, 0});
    auto g = out.root().create_group("layers/att");
    g.set_attr("family", std::string("softmax_attention"));
    g.set_attr("layer_index", 0);
    g.write("q", q.shape, q.data.data());
    g.write("k", q.shape, q.data.data());
    std::vector<std::uint8_t> mask(L * L, 1);
    g.write("mask", {L, L}, mask.data());
    out.commit();
    expect_error(path, {"mask is not causal", "mask[0, 1]"}, "att");
  }
  {
    const std::string path = dir + "/mask_dtype.h5";
    h5::OutputFile out(path);
    out.root().set_attr("format", std::string("ess-operators"));
    auto g = out.root().create_group("layers/att");
    g.set_attr("family", std::string("softmax_attention"));
    g.set_attr("layer_index", 0);
    g.write("q", q.shape, q.data.data());
    g.write("k", q.shape, q.data.data());
    std::vector<std::int32_t> mask(L * L, 0);
    g.write("mask", {L, L}, mask.data());
    out.commit();
    expect_error(path, {"'mask' must be uint8"}, "att");
  }
  {
    const std::string path = dir + "/int_q.h5";
    h5::OutputFile out(path);
    out.root().set_attr("format", std::string("ess-operators"));
    auto g = out.root().create_group("layers/lin");
    g.set_attr("family", std::string("linear_attention"));
    g.set_attr("layer_index", 0);
    std::vector<std::int32_t> qi(q.size(), 1);
    g.write("q", q.shape, qi.data());
    g.write("k", q.shape, q.data.data());
    out.commit();
    expect_error(path, {"'q' must be float32 or float64"}, "lin");
  }
  {
    const std::string path = dir + "/seq_len.h5";
    h5::OutputFile out(path);
    out.root().set_attr("format", std::string("ess-operators"));
    auto g = out.root().create_group("layers/cv");
    g.set_attr("family", std::string("conv"));
    g.set_attr("layer_index", 0);
    g.set_attr("seq_len", -5);
    const Tensor h = randn(rng, {2, 3});
    g.write("h", h.shape, h.data.data());
    out.commit();
    expect_error(path, {"'seq_len' = -5 is out of range"}, "cv");
  }
  {
    // No /layers, and an empty /layers.
    const std::string path = dir + "/nolayers.h5";
    h5::OutputFile out(path);
    out.root().set_attr("format", std::string("ess-operators"));
    out.commit();
    expect_error(path, {"no /layers"}, "");
    h5::OutputFile out2(dir + "/empty.h5");
    out2.root().set_attr("format", std::string("ess-operators"));
    out2.root().create_group("layers");
    out2.commit();
    expect_error(dir + "/empty.h5", {"holds no layer"}, "");
  }
  {
    // Truncated file.
    const auto good = write_ops(dir, "good.h5", "softmax_attention", {{"q", q}, {"k", q}});
    const auto size = std::filesystem::file_size(good);
    std::filesystem::copy_file(good, dir + "/truncated.h5");
    std::filesystem::resize_file(dir + "/truncated.h5", size / 2);
    CHECK_THROWS_AS(read_operator_file(dir + "/truncated.h5"), InputError);
  }
  std::filesystem::remove_all(dir);
}

TEST_CASE("operators: constructors name their context, the dataset and the expected shape") {
  std::mt19937 rng(47);
  const Tensor q = randn(rng, {1, 2, 5, 3});
  CHECK_THROWS_WITH_AS(
      LinearAttentionOperator(q, randn(rng, {1, 2, 5, 2}), false, "model.safetensors:layer 3"),
      doctest::Contains("model.safetensors:layer 3: dataset 'k' has shape [1, 2, 5, 2], expected [1, 2, 5, 3]"),
      InputError);
  // Row normaliser zero: q ⟂ every k.
  Tensor qz({1, 1, 2, 2}, {1, 0, 1, 0}), kz({1, 1, 2, 2}, {0, 1, 0, 1});
  CHECK_THROWS_WITH_AS(LinearAttentionOperator(qz, kz, true, "ctx"), doctest::Contains("normaliser"), InputError);
  // A row of the mask with no allowed position.
  std::vector<std::uint8_t> mask(25, 0);
  for (int i = 0; i < 5; ++i) mask[i * 5 + i] = i != 3;
  CHECK_THROWS_WITH_AS(SoftmaxAttentionOperator(q, q, mask, 0.0, 0, "ctx"), doctest::Contains("row 3"), InputError);
  CHECK_THROWS_WITH_AS(
      S4dOperator(Tensor({2, 3}), Tensor({2, 2}), Tensor({2, 3}), Tensor(), Tensor({2, 3}), Tensor(), 8, "ctx"),
      doctest::Contains("'a_im' has shape [2, 2], expected [2, 3]"), InputError);
  CHECK_THROWS_WITH_AS(ConvOperator(Tensor({2, 0}), Tensor(), Tensor(), 8, "ctx"), doctest::Contains("empty axis"),
                       InputError);
  CHECK_THROWS_WITH_AS(DenseOperator(Tensor({1, 1, 3, 4}), "ctx"), doctest::Contains("L × L"), InputError);
}
