// diagnose and compress on results with known answers.
#include <doctest/doctest.h>

#include <cmath>

#include "libess/compressibility.h"
#include "libess/diagnosis.h"
#include "libess/error.h"

using namespace ess;

namespace {

// L = 10, blocks i = 1..9, TSS = 4, attainable = min(4, i, 10 − i); four channels:
// 0 uses the whole attainable state, 1 is dead, 2 has ESS 1 at a single block, 3 uses half.
LayerResult known_layer() {
  LayerResult R;
  R.name = "mixer";
  R.family = "mamba";
  R.layer_index = 2;
  R.seq_len = 10;
  R.batch = 1;
  R.channels = 4;
  for (int i = 1; i < 10; ++i) {
    R.indices.push_back(i);
    R.tss.push_back(4);
    R.attainable.push_back(std::min({4, i, 10 - i}));
  }
  const int I = 9;
  R.tolerance_ess.assign(4 * I, 0);
  R.entropy_ess.assign(4 * I, 0.0);
  for (int p = 0; p < I; ++p) {
    R.tolerance_ess[R.at(0, 0, p)] = R.attainable[p];
    R.entropy_ess[R.at(0, 0, p)] = R.attainable[p];
    R.tolerance_ess[R.at(0, 3, p)] = R.attainable[p] / 2;
    R.entropy_ess[R.at(0, 3, p)] = 0.5 * R.attainable[p];
  }
  R.tolerance_ess[R.at(0, 2, 4)] = 1;
  R.entropy_ess[R.at(0, 2, 4)] = 1.0;
  return R;
}

}  // namespace

TEST_CASE("diagnose: saturated, dead, collapsed and healthy channels with the right utilization") {
  const LayerResult R = known_layer();
  DiagnosisOptions o;
  const LayerDiagnosis d = diagnose_layer(R, o);
  CHECK(d.channel_class[0] == ChannelClass::saturated);
  CHECK(d.channel_class[1] == ChannelClass::dead);
  CHECK(d.channel_class[2] == ChannelClass::collapsed);
  CHECK(d.channel_class[3] == ChannelClass::healthy);
  CHECK(d.channel_utilization[0] == doctest::Approx(1.0));
  CHECK(d.channel_utilization[2] == doctest::Approx((1.0 / 4) / 9));  // one block at ESS 1 of bound 4
  // Channel 3: ESS = floor(bound / 2): bounds 1,2,3,4,4,4,3,2,1 → ESS 0,1,1,2,2,2,1,1,0.
  CHECK(d.channel_utilization[3] == doctest::Approx((0 + 0.5 + 1.0 / 3 + 0.5 + 0.5 + 0.5 + 1.0 / 3 + 0.5 + 0) / 9));
  CHECK(d.saturated == 1);
  CHECK(d.dead == 1);
  CHECK(d.collapsed == 1);
  CHECK(d.healthy == 1);
  CHECK(d.verdict == "mixed");
  CHECK(d.tss == 4);
  CHECK(d.utilization == doctest::Approx((d.channel_utilization[0] + d.channel_utilization[2] + d.channel_utilization[3]) / 3));
  CHECK(d.advice.find("dead") != std::string::npos);
  // Entropy metric: the same classes here (entropy values were set to the same profile).
  o.metric = Metric::entropy;
  const LayerDiagnosis e = diagnose_layer(R, o);
  CHECK(e.channel_class[3] == ChannelClass::healthy);
  CHECK(e.channel_utilization[3] == doctest::Approx(0.5));
}

TEST_CASE("diagnose: layer verdicts follow the majority of live channels") {
  LayerResult R = known_layer();
  DiagnosisOptions o;
  // All channels saturated.
  for (int c = 0; c < 4; ++c)
    for (int p = 0; p < 9; ++p) R.tolerance_ess[R.at(0, c, p)] = R.attainable[p];
  CHECK(diagnose_layer(R, o).verdict == "saturated");
  // All channels dead.
  std::fill(R.tolerance_ess.begin(), R.tolerance_ess.end(), 0);
  CHECK(diagnose_layer(R, o).verdict == "dead");
  CHECK(diagnose_layer(R, o).dead == 4);
  // Thresholds are validated.
  o.collapsed = 0.95;
  std::string why;
  CHECK_FALSE(o.IsValid(&why));
  CHECK_THROWS_AS(parse_metric("rank"), UsageError);
}

TEST_CASE("compress: Eckart–Young tails of a geometric spectrum equal 0.5^N_s") {
  // σ_k = 0.5^k for k = 0..∞: ‖H‖_F² = 1/(1 − 0.25), tail(n)² = 0.25^n / (1 − 0.25), so tail = 0.5^n.
  LayerResult R = known_layer();
  const int K = 8;
  R.sigma_k = K;
  const size_t blocks = R.tolerance_ess.size();
  R.sigma.assign(blocks * K, 0.0f);
  R.sigma_tail.assign(blocks, 0.0);
  R.frobenius.assign(blocks, 0.0);
  for (size_t b = 0; b < blocks; ++b) {
    for (int k = 0; k < K; ++k) R.sigma[b * K + k] = static_cast<float>(std::pow(0.5, k));
    R.sigma_tail[b] = std::sqrt(std::pow(0.25, K) / 0.75);
    R.frobenius[b] = std::sqrt(1 / 0.75);
  }
  const auto c = compressibility(R, {1, 2, 4, 8}, 0.1);
  REQUIRE(c.targets.size() == 4);
  for (const auto& t : c.targets) {
    CHECK(t.mean_tail == doctest::Approx(std::pow(0.5, t.state)).epsilon(1e-6));
    CHECK(t.max_tail == doctest::Approx(std::pow(0.5, t.state)).epsilon(1e-6));
  }
  REQUIRE(c.recommended_state.has_value());
  CHECK(*c.recommended_state == 4);  // 0.5^4 = 0.0625 ≤ 0.1 < 0.125
  // frac_exceeding: fraction of blocks with tolerance-ESS > 1 (channel 0: bounds > 1 at 7 blocks;
  // channel 3: ESS 2 at 3 blocks) over 36 blocks.
  CHECK(c.targets[0].frac_exceeding == doctest::Approx(10.0 / 36));
  // Without frobenius and tail datasets the norm comes from the stored σ (exact when complete).
  R.frobenius.clear();
  R.sigma_tail.clear();
  const auto c2 = compressibility(R, {2}, 0.1);
  double all = 0, tail = 0;
  for (int k = 0; k < K; ++k) all += std::pow(0.25, k);
  for (int k = 2; k < K; ++k) tail += std::pow(0.25, k);
  CHECK(c2.targets[0].mean_tail == doctest::Approx(std::sqrt(tail / all)).epsilon(1e-6));
}

TEST_CASE("compress: zero blocks have tail 0; missing or too few singular values are input errors") {
  LayerResult R = known_layer();
  CHECK_THROWS_WITH_AS(compressibility(R, {4}, 0.01), doctest::Contains("--keep-sigma"), InputError);
  R.sigma_k = 2;
  R.sigma.assign(R.tolerance_ess.size() * 2, 0.0f);  // all-zero blocks: complete, tail 0
  auto c = compressibility(R, {1, 8}, 0.01);
  CHECK(c.targets[0].mean_tail == 0.0);
  CHECK(c.targets[1].mean_tail == 0.0);
  R.sigma[1] = 0.5f;  // a block whose spectrum may continue beyond K = 2
  CHECK_THROWS_WITH_AS(compressibility(R, {8}, 0.01), doctest::Contains("K = 2"), InputError);
}
