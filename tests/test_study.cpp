// ess study: statistics against scipy's values, rows from known layers, bootstrap behaviour.
#include <doctest/doctest.h>

#include <cmath>
#include <random>

#include "analysis/study.h"
#include "libess/error.h"

using namespace ess;

namespace {

// Values from scipy 1.10.1: pearsonr(x, y)[0], spearmanr(x, y)[0], rankdata(x).
const std::vector<double> kX = {1.0, 2.0, 2.0, 3.5, 5.0, 5.0, 5.0, 8.0};
const std::vector<double> kY = {0.1, 0.4, 0.3, 0.35, 0.9, 0.7, 0.8, 0.95};
constexpr double kPearson = 0.9189233312788748;
constexpr double kSpearman = 0.932954370666449;

// One layer, L = 8, blocks 1..7, 2 channels, TSS 4: channel 0 ESS = attainable, channel 1 = 1.
LayerResult layer(const std::string& name, int index, int tss) {
  LayerResult R;
  R.name = name;
  R.family = "gla";
  R.layer_index = index;
  R.seq_len = 8;
  R.batch = 1;
  R.channels = 2;
  for (int i = 1; i < 8; ++i) {
    R.indices.push_back(i);
    R.tss.push_back(tss);
    R.attainable.push_back(std::min({tss, i, 8 - i}));
  }
  for (int c = 0; c < 2; ++c)
    for (int p = 0; p < 7; ++p) {
      R.tolerance_ess.push_back(c == 0 ? R.attainable[p] : 1);
      R.entropy_ess.push_back(c == 0 ? 0.5 * R.attainable[p] : 1.0);
    }
  return R;
}

}  // namespace

TEST_CASE("study: Pearson, Spearman and average ranks match scipy") {
  CHECK(pearson(kX, kY) == doctest::Approx(kPearson).epsilon(1e-13));
  CHECK(spearman(kX, kY) == doctest::Approx(kSpearman).epsilon(1e-13));
  const std::vector<double> ranks = average_ranks(kX);
  const std::vector<double> expected = {1, 2.5, 2.5, 4, 6, 6, 6, 8};
  for (size_t k = 0; k < ranks.size(); ++k) CHECK(ranks[k] == expected[k]);
  // Spearman is invariant under monotone maps; Pearson is not.
  std::vector<double> ex;
  for (double v : kX) ex.push_back(std::exp(v));
  CHECK(spearman(ex, kY) == doctest::Approx(kSpearman).epsilon(1e-13));
  CHECK(std::abs(pearson(ex, kY) - kPearson) > 0.05);
  // Perfect and degenerate cases.
  CHECK(pearson({1, 2, 3}, {2, 4, 6}) == doctest::Approx(1.0));
  CHECK(spearman({1, 2, 3, 4}, {4, 3, 2, 1}) == doctest::Approx(-1.0));
  CHECK(std::isnan(pearson({1, 1, 1}, {1, 2, 3})));
  CHECK(std::isnan(pearson({1, 2}, {1, 2})));
}

TEST_CASE("study: bootstrap intervals bracket the estimate and tighten with n") {
  std::mt19937 rng(3);
  std::normal_distribution<double> noise(0, 1);
  auto sample = [&](int n) {
    std::vector<double> x, y;
    for (int k = 0; k < n; ++k) {
      x.push_back(noise(rng));
      y.push_back(0.7 * x.back() + 0.5 * noise(rng));
    }
    return std::make_pair(x, y);
  };
  auto [x1, y1] = sample(30);
  auto [x2, y2] = sample(600);
  const Interval a = bootstrap_interval(x1, y1, false, 1000, 1);
  const Interval b = bootstrap_interval(x2, y2, false, 1000, 1);
  CHECK(a.valid == 1000);
  CHECK(a.lo <= pearson(x1, y1));
  CHECK(pearson(x1, y1) <= a.hi);
  CHECK(b.lo <= pearson(x2, y2));
  CHECK(pearson(x2, y2) <= b.hi);
  CHECK(b.hi - b.lo < 0.5 * (a.hi - a.lo));
  // Deterministic in the seed.
  const Interval a2 = bootstrap_interval(x1, y1, false, 1000, 1);
  CHECK(a2.lo == a.lo);
  CHECK(a2.hi == a.hi);
  // Constant accuracy: every resample is undefined.
  const Interval c = bootstrap_interval(x1, std::vector<double>(30, 1.0), true, 100, 1);
  CHECK(c.valid == 0);
  CHECK(std::isnan(c.lo));
}

TEST_CASE("study: a row's aggregates and predictors from known layers") {
  ResultsFile f;
  f.path = "known.h5";
  f.provenance.input = "mqar kv=2,len=8,n=1,seed=0,vocab=16";
  f.provenance.mqar_accuracy = 0.75;
  f.provenance.architecture = "GLAForCausalLM";
  f.layers = {layer("a", 0, 4), layer("b", 1, 2)};
  const StudyRow r = study_row(f, "m");
  CHECK(r.kv == 2);
  CHECK(r.len == 8);
  CHECK(r.accuracy == 0.75);
  // Layer a: attainable min(4, i, 8−i) = 1,2,3,4,3,2,1 (mean 16/7); channel 1 ESS 1.
  // Layer b: attainable min(2, i, 8−i) = 1,2,2,2,2,2,1 (mean 12/7).
  const double a_tol = 0.5 * (16.0 / 7 + 1), b_tol = 0.5 * (12.0 / 7 + 1);
  REQUIRE(r.layers.size() == 2);
  CHECK(r.layers[0].tolerance_ess == doctest::Approx(a_tol));
  CHECK(r.layers[0].total_tolerance_ess == doctest::Approx(2 * a_tol));
  CHECK(r.layers[0].entropy_ess == doctest::Approx(0.5 * (8.0 / 7 + 1)));
  CHECK(r.tolerance_ess == doctest::Approx(0.5 * (a_tol + b_tol)));
  CHECK(r.min_layer_tolerance_ess == doctest::Approx(b_tol));
  CHECK(r.tss == doctest::Approx(3.0));
  CHECK(r.total_tss == doctest::Approx(6.0));
  CHECK(r.predictors.at("tolerance_ess/kv") == doctest::Approx(0.25 * (a_tol + b_tol)));
  CHECK(r.predictors.at("tss/kv") == doctest::Approx(1.5));
  CHECK(r.predictors.at("total_tss/kv") == doctest::Approx(3.0));
  // Channel 0 uses the whole attainable state (u = 1); channel 1 has ESS 1 everywhere.
  double u_a = 0, u_b = 0;
  for (int i = 1; i < 8; ++i) {
    u_a += 1.0 / std::min({4, i, 8 - i});
    u_b += 1.0 / std::min({2, i, 8 - i});
  }
  CHECK(r.layers[0].utilization == doctest::Approx(0.5 * (1 + u_a / 7)));
  CHECK(r.utilization == doctest::Approx(0.5 * (0.5 * (1 + u_a / 7) + 0.5 * (1 + u_b / 7))));

  // Not an MQAR input: kv 0, ratios undefined, so they drop out of the correlations.
  f.provenance.input = "tokens t.txt (1 × 8)";
  f.provenance.mqar_accuracy = -1;
  const StudyRow t = study_row(f, "t");
  CHECK(t.kv == 0);
  CHECK(std::isnan(t.predictors.at("tss/kv")));
  const auto cors = correlate({t, t, t}, StudyOptions{});
  for (const auto& c : cors) CHECK(c.n == 0);
}

TEST_CASE("study: parse_mqar_input and option checks") {
  int kv = 0, len = 0;
  CHECK(parse_mqar_input("mqar kv=16,len=256,n=8,seed=0,vocab=160", &kv, &len));
  CHECK(kv == 16);
  CHECK(len == 256);
  CHECK_FALSE(parse_mqar_input("tokens x.txt", &kv, &len));
  CHECK_FALSE(parse_mqar_input("mqar n=8", &kv, &len));
  StudyOptions bad;
  bad.level = 1.5;
  CHECK_THROWS_AS(correlate({}, bad), UsageError);
  CHECK_THROWS_AS(study_svg({}, {}, {"nope"}, "family"), UsageError);
}
