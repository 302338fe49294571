#include <doctest/doctest.h>

#include <cmath>

#include "libess/compute.h"
#include "libess/error.h"
#include "libess/metrics.h"

using namespace ess;

TEST_CASE("entropy-ESS of hand-checked spectra") {
  const double equal[] = {1.0, 1.0};
  CHECK(entropy_ess(equal, 2) == doctest::Approx(2.0).epsilon(1e-15));
  const double one[] = {3.0, 0.0, 0.0};
  CHECK(entropy_ess(one, 3) == doctest::Approx(1.0).epsilon(1e-15));
  // p = (1/2, 1/4, 1/4): H = 1.5 ln 2, exp(H) = 2^1.5.
  const double uneven[] = {2.0, 1.0, 1.0};
  CHECK(entropy_ess(uneven, 3) == doctest::Approx(std::pow(2.0, 1.5)).epsilon(1e-14));
  // Uses σ, not σ²: scaling does not matter, four equal values give 4.
  const double four[] = {7.0, 7.0, 7.0, 7.0};
  CHECK(entropy_ess(four, 4) == doctest::Approx(4.0).epsilon(1e-14));
}

TEST_CASE("entropy-ESS of a zero block is 0 and of an empty block is 0") {
  const double zero[] = {0.0, 0.0, 0.0};
  CHECK(entropy_ess(zero, 3) == 0.0);
  CHECK(entropy_ess(nullptr, 0) == 0.0);
}

TEST_CASE("tolerance-ESS counts strictly above the threshold in all three modes") {
  const double s[] = {5.0, 1.0, 0.01, 0.0};
  CHECK(count_above(s, 4, tolerance_threshold(TolMode::absolute, 1e-3, 5.0, 10.0)) == 3);
  CHECK(count_above(s, 4, tolerance_threshold(TolMode::absolute, 1.0, 5.0, 10.0)) == 1);  // strict: 1.0 is not > 1.0
  CHECK(count_above(s, 4, tolerance_threshold(TolMode::block, 0.1, 5.0, 10.0)) == 2);     // > 0.5
  CHECK(count_above(s, 4, tolerance_threshold(TolMode::layer, 0.1, 5.0, 10.0)) == 1);     // > 1.0
  // A zero block has ESS 0 in every mode (block threshold is 0, nothing is > 0).
  const double z[] = {0.0, 0.0};
  CHECK(count_above(z, 2, tolerance_threshold(TolMode::block, 0.1, 0.0, 0.0)) == 0);
  CHECK(count_above(z, 2, tolerance_threshold(TolMode::layer, 0.1, 0.0, 0.0)) == 0);
  CHECK(count_above(z, 2, tolerance_threshold(TolMode::absolute, 0.0, 0.0, 0.0)) == 0);
}

TEST_CASE("threshold mode names parse and round-trip, unknown ones are usage errors") {
  for (auto m : {TolMode::absolute, TolMode::block, TolMode::layer}) CHECK(parse_tol_mode(to_string(m)) == m);
  CHECK_THROWS_AS(parse_tol_mode("relative"), UsageError);
}

TEST_CASE("Frobenius norm from singular values, safe against overflow") {
  const double s[] = {3.0, 4.0};
  CHECK(frobenius_from_sigma(s, 2) == doctest::Approx(5.0));
  const double big[] = {3e200, 4e200};
  CHECK(frobenius_from_sigma(big, 2) == doctest::Approx(5e200));
  CHECK(frobenius_from_sigma(nullptr, 0) == 0.0);
}

TEST_CASE("--indices selects blocks Python-style and rejects nonsense") {
  CHECK(parse_indices("", 5) == std::vector<int>{1, 2, 3, 4});
  CHECK(parse_indices("2:", 5) == std::vector<int>{2, 3, 4});
  CHECK(parse_indices(":3", 5) == std::vector<int>{1, 2});
  CHECK(parse_indices("1:10:4", 10) == std::vector<int>{1, 5, 9});
  CHECK(parse_indices("0:5", 5) == std::vector<int>{1, 2, 3, 4});  // i = 0 has no block
  CHECK(parse_indices("-2:", 8) == std::vector<int>{6, 7});
  CHECK(parse_indices("3", 8) == std::vector<int>{3});
  CHECK_THROWS_AS(parse_indices("1:5:0", 8), UsageError);
  CHECK_THROWS_AS(parse_indices("a:b", 8), UsageError);
  CHECK_THROWS_AS(parse_indices("7:3", 8), UsageError);
  CHECK_THROWS_AS(parse_indices("1:2:3:4", 8), UsageError);
  CHECK_THROWS_AS(parse_indices("", 1), UsageError);
}

TEST_CASE("--indices lists: exact blocks, sorted, deduplicated, negatives from L — count agrees") {
  CHECK(parse_indices("100,200,300", 1000) == std::vector<int>{100, 200, 300});
  CHECK(parse_indices("9,2,-1,2", 14) == std::vector<int>{2, 9, 13});
  CHECK(parse_indices("5,5", 8) == std::vector<int>{5});
  CHECK(count_indices("9,2,-1,2", 14) == 3);
  CHECK(count_indices("1:10:4", 10) == 3);
  CHECK_THROWS_AS(parse_indices("0,3", 8), UsageError);   // i = 0 has no block
  CHECK_THROWS_AS(parse_indices("3,8", 8), UsageError);   // nor i = L
  CHECK_THROWS_AS(parse_indices("3,-9", 8), UsageError);  // −9 + 8 < 1
  CHECK_THROWS_AS(parse_indices("3,,4", 8), UsageError);
  CHECK_THROWS_AS(count_indices("3,x", 8), UsageError);
}

TEST_CASE("--blocks N: evenly spaced interior blocks round((j+1)·L/(N+1)) — count agrees with the list") {
  EssOptions o;
  o.blocks = 4;
  CHECK(o.block_indices(14) == std::vector<int>{3, 6, 8, 11});  // 2.8, 5.6, 8.4, 11.2
  CHECK(o.block_count(14) == 4);
  o.blocks = 64;
  const auto b = o.block_indices(16384);
  REQUIRE(b.size() == 64);
  CHECK(b.front() == 252);   // 16384/65 = 252.06
  CHECK(b.back() == 16132);  // 64·16384/65 = 16131.94
  o.blocks = 1000;           // more than there are: every block once
  CHECK(o.block_indices(6) == std::vector<int>{1, 2, 3, 4, 5});
  CHECK(o.block_count(6) == 5);
  o.indices = "1:3";
  CHECK_THROWS_AS(o.validate(), UsageError);  // not both
  o.indices.clear();
  o.blocks = -1;
  CHECK_THROWS_AS(o.validate(), UsageError);
}
