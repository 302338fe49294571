// Sparse students (libess/students.h) and the plan (analysis/plan.h) on hand-made operators.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <numeric>
#include <random>

#include "analysis/plan.h"
#include "libess/error.h"
#include "libess/students.h"
#include "operators/dense.h"
#include "test_helpers.h"

using namespace ess;

namespace {

// Row-stochastic T of B = 1, C = 1: row r uniform over keys j with r − j < width (a hard band).
Tensor band(int L, int width) {
  Tensor T({1, 1, L, L});
  for (int r = 0; r < L; ++r) {
    const int n = std::min(width, r + 1);
    for (int j = r - n + 1; j <= r; ++j) T.data[static_cast<size_t>(r) * L + j] = 1.0 / n;
  }
  return T;
}

Tensor random_rows(int L, unsigned seed) {  // positive random rows summing to 1
  std::mt19937 rng(seed);
  std::uniform_real_distribution<double> u(0.1, 1.0);
  Tensor T({1, 2, L, L});
  for (int c = 0; c < 2; ++c)
    for (int r = 0; r < L; ++r) {
      double sum = 0;
      for (int j = 0; j <= r; ++j) sum += (T.data[(static_cast<size_t>(c) * L + r) * L + j] = u(rng));
      for (int j = 0; j <= r; ++j) T.data[(static_cast<size_t>(c) * L + r) * L + j] /= sum;
    }
  return T;
}

}  // namespace

TEST_CASE("students: option parsing and the patterns measured at a length") {
  const StudentOptions d = parse_student_options("default");
  CHECK(d.enabled);
  CHECK(d.applies_to("softmax_attention"));
  CHECK_FALSE(d.applies_to("mamba"));
  CHECK_FALSE(parse_student_options("off").applies_to("softmax_attention"));
  const StudentOptions o = parse_student_options("window=8,4;sinks=0,2;topk=;ess=all;families=all");
  CHECK(o.windows == std::vector<int>{4, 8});
  CHECK(o.sinks == std::vector<int>{2});
  CHECK(o.topk.empty());
  CHECK(o.applies_to("mamba"));
  CHECK(parse_student_options(to_string(o)).windows == o.windows);
  // L = 10: window 8 + 2 sinks keeps all of T, window ≥ L too.
  const auto p = o.patterns(10);
  REQUIRE(p.size() == 3);
  CHECK(to_string(p[0]) == "window=4");
  CHECK(to_string(p[1]) == "window=4+sinks=2");
  CHECK(to_string(p[2]) == "window=8");
  CHECK_THROWS_AS(parse_student_options("window=x"), UsageError);
  CHECK_THROWS_AS(parse_student_options("window=0"), UsageError);
  CHECK_THROWS_AS(parse_student_options("colour=3"), UsageError);
  CHECK_THROWS_AS(parse_student_options("ess=2"), UsageError);
}

TEST_CASE("students: a band of width w is exact for windows ≥ w and loses its outside energy below") {
  const int L = 24, w = 6;
  DenseOperator op(band(L, w), "band");
  StudentOptions o = parse_student_options("window=3,6,12;sinks=;topk=2;ess=all");
  std::vector<int> indices;
  for (int i = 1; i < L; ++i) indices.push_back(i);
  const StudentResults S = measure_students(op, indices, o, {1e-6, TolMode::absolute, 1e-13, {}}, 1);
  REQUIRE(S.patterns.size() == 4);
  const int I = static_cast<int>(indices.size());
  const Matrix T = op.dense_matrix(0, 0);
  for (int pos = 0; pos < I; ++pos) {
    const int i = indices[pos];
    const Matrix H = T.block(i, 0, L - i, i);
    // window 3: the block keeps r − j < 3; masked error = energy outside / total.
    double out = 0;
    for (int r = i; r < L; ++r)
      for (int j = 0; j < i; ++j)
        if (r - j >= 3) out += T(r, j) * T(r, j);
    CHECK(S.masked_error[S.at(0, 0, 0, pos, I)] == doctest::Approx(std::sqrt(out) / H.norm()).epsilon(1e-12));
    // renormalized: row r scaled by 1/(mass kept) = n / min(3, n)
    CHECK(S.renormalized_error[S.at(0, 0, 0, pos, I)] >= S.masked_error[S.at(0, 0, 0, pos, I)] - 1e-15);
    CHECK(S.masked_error[S.at(1, 0, 0, pos, I)] == 0.0);  // window 6 = the band
    CHECK(S.renormalized_error[S.at(1, 0, 0, pos, I)] == doctest::Approx(0.0).epsilon(1e-15));
    CHECK(S.masked_error[S.at(2, 0, 0, pos, I)] == 0.0);
    // ESS of the window-6 student (compact path) = rank of the band's block, min(i, 5, L − i)
    CHECK(S.tolerance_ess[S.at(1, 0, 0, pos, I)] == std::min({i, w - 1, L - i}));
    // top-2 (sweep path) against an independent SVD of the masked block
    Matrix M = Matrix::Zero(L, L);
    for (int r = 0; r < L; ++r)
      for (int j = std::max(0, r - 1); j <= r; ++j) M(r, j) = T(r, j);  // ties: the two most recent keys
    const auto ref = test::reference_sigma(M, i);
    int count = 0;
    for (double s : ref) count += s > 1e-6;
    CHECK(S.tolerance_ess[S.at(3, 0, 0, pos, I)] == count);
  }
  CHECK(S.operator_masked_error[S.at(1, 0, 0, 0, 1)] == 0.0);
}

TEST_CASE("students: every pattern's errors and ESS equal sums and SVDs of the students built from the definitions") {
  // Random positive rows (2 channels); windows alone and with sinks, top-k; blocks at the edges, in
  // the middle and around the window widths. Each student is built here entry by entry from
  // students.h's definitions, its errors summed directly and its blocks' values from a dense SVD.
  const int L = 41;
  DenseOperator op(random_rows(L, 5), "random");
  const StudentOptions o = parse_student_options("window=3,8;sinks=2;topk=5;ess=all");
  const std::vector<int> indices{1, 2, 3, 7, 9, 19, 20, 33, 38, 39, 40};
  const StudentResults S = measure_students(op, indices, o, {1e-3, TolMode::absolute, 1e-14, {}}, 1);
  REQUIRE(S.patterns.size() == 5);
  const int I = static_cast<int>(indices.size());
  for (int p = 0; p < 5; ++p)
    for (int c = 0; c < 2; ++c) {
      const StudentPattern& pat = S.patterns[static_cast<size_t>(p)];
      CAPTURE(to_string(pat));
      CAPTURE(c);
      const Matrix T = op.dense_matrix(0, c);
      Matrix M = Matrix::Zero(L, L), R = Matrix::Zero(L, L);
      for (int r = 0; r < L; ++r) {
        std::vector<int> keys;
        if (pat.topk > 0) {  // the k largest |T(r, j)|, ties to the more recent key
          std::vector<int> all(static_cast<size_t>(r) + 1);
          std::iota(all.begin(), all.end(), 0);
          std::sort(all.begin(), all.end(), [&](int a, int b) {
            return std::abs(T(r, a)) != std::abs(T(r, b)) ? std::abs(T(r, a)) > std::abs(T(r, b)) : a > b;
          });
          keys.assign(all.begin(), all.begin() + std::min(pat.topk, r + 1));
        } else {
          for (int j = 0; j <= r; ++j)
            if (r - j < pat.window || j < pat.sinks) keys.push_back(j);
        }
        double row = 0, in = 0;
        for (int j = 0; j <= r; ++j) row += T(r, j);
        for (int j : keys) in += T(r, j);
        for (int j : keys) {
          M(r, j) = T(r, j);
          R(r, j) = T(r, j) * row / in;
        }
      }
      CHECK(S.operator_masked_error[S.at(p, 0, c, 0, 1)] == doctest::Approx((T - M).norm() / T.norm()).epsilon(1e-12));
      CHECK(S.operator_renormalized_error[S.at(p, 0, c, 0, 1)] ==
            doctest::Approx((T - R).norm() / T.norm()).epsilon(1e-12));
      for (int pos = 0; pos < I; ++pos) {
        const int i = indices[static_cast<size_t>(pos)];
        CAPTURE(i);
        const double h = T.block(i, 0, L - i, i).norm();
        CHECK(S.masked_error[S.at(p, 0, c, pos, I)] ==
              doctest::Approx((T - M).block(i, 0, L - i, i).norm() / h).epsilon(1e-12).scale(1e-14));
        CHECK(S.renormalized_error[S.at(p, 0, c, pos, I)] ==
              doctest::Approx((T - R).block(i, 0, L - i, i).norm() / h).epsilon(1e-12).scale(1e-14));
        const std::vector<double> sigma = test::reference_sigma(M, i);
        const int n = static_cast<int>(sigma.size());
        CHECK(S.tolerance_ess[S.at(p, 0, c, pos, I)] == count_above(sigma.data(), n, 1e-3));
        CHECK(S.entropy_ess[S.at(p, 0, c, pos, I)] == doctest::Approx(entropy_ess(sigma.data(), n)).epsilon(1e-9));
      }
    }
}

TEST_CASE("students: a sparse index set (dense SVDs) gives the values of the full sweep") {
  const int L = 30;
  DenseOperator op(random_rows(L, 3), "random");
  const StudentOptions o = parse_student_options("window=5;sinks=2;topk=4;ess=all");
  std::vector<int> all, some{3, 11, 20, 28};
  for (int i = 1; i < L; ++i) all.push_back(i);
  const StudentResults A = measure_students(op, all, o, {1e-3, TolMode::block, 1e-14, {}}, 2);
  const StudentResults B = measure_students(op, some, o, {1e-3, TolMode::block, 1e-14, {}}, 1);
  const int IA = static_cast<int>(all.size()), IB = static_cast<int>(some.size());
  for (int p = 0; p < 3; ++p)
    for (int c = 0; c < 2; ++c)
      for (int k = 0; k < IB; ++k) {
        const int pa = some[k] - 1;
        CHECK(B.masked_error[B.at(p, 0, c, k, IB)] == doctest::Approx(A.masked_error[A.at(p, 0, c, pa, IA)]));
        CHECK(B.renormalized_error[B.at(p, 0, c, k, IB)] ==
              doctest::Approx(A.renormalized_error[A.at(p, 0, c, pa, IA)]));
        CHECK(B.tolerance_ess[B.at(p, 0, c, k, IB)] == A.tolerance_ess[A.at(p, 0, c, pa, IA)]);
        CHECK(B.entropy_ess[B.at(p, 0, c, k, IB)] ==
              doctest::Approx(A.entropy_ess[A.at(p, 0, c, pa, IA)]).epsilon(1e-9));
      }
}
