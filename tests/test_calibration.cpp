// Issue 13: compress's layer-state notice and entropy-ESS under truncation; the calibrated
// diagnosis rules on known cases.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

#include "analysis/compressibility.h"
#include "analysis/diagnosis.h"
#include "libess/error.h"
#include "libess/metrics.h"

using namespace ess;

namespace {

// One channel, L = 12, blocks i = 1..11, TSS `tss`, K stored singular values per block given by
// `spectrum` (descending; padded with zeros), entropy-ESS from the whole spectrum.
LayerResult spectral_layer(int tss, const std::vector<double>& spectrum, int K) {
  LayerResult R;
  R.name = "mixer";
  R.family = "gla";
  R.seq_len = 12;
  R.batch = 1;
  R.channels = 1;
  R.sigma_k = K;
  for (int i = 1; i < 12; ++i) {
    R.indices.push_back(i);
    R.tss.push_back(tss);
    R.attainable.push_back(std::min({tss, i, 12 - i}));
  }
  for (int p = 0; p < 11; ++p) {
    const int rank = std::min<int>(R.attainable[p], static_cast<int>(spectrum.size()));
    std::vector<double> s(spectrum.begin(), spectrum.begin() + rank);
    double f2 = 0;
    for (double v : s) f2 += v * v;
    for (int k = 0; k < K; ++k) R.sigma.push_back(k < rank ? static_cast<float>(s[k]) : 0.0f);
    R.sigma_tail.push_back(0.0);
    R.frobenius.push_back(std::sqrt(f2));
    R.tolerance_ess.push_back(rank);
    R.entropy_ess.push_back(entropy_ess(s.data(), rank));
  }
  return R;
}

}  // namespace

TEST_CASE("compress: a recommendation above the layer's own state is flagged, with a note") {
  // The layer's own state is 2 (rank ≤ 2 everywhere); students of 4 and 8 are exact.
  const LayerResult R = spectral_layer(2, {1.0, 0.5}, 8);
  const auto c = compressibility(R, {4, 8}, 1e-2);
  CHECK(c.layer_state == 2);
  REQUIRE(c.recommended_state.has_value());
  CHECK(*c.recommended_state == 4);
  CHECK(c.recommended_exceeds_layer_state);
  CHECK(c.note.find("exceeds the layer's own state (2)") != std::string::npos);
  CHECK(c.targets[0].exceeds_layer_state);
  CHECK(c.targets[0].mean_tail == 0.0);
  // A student of 1 is a real compression: no flag.
  const auto d = compressibility(R, {1, 4}, 0.5);
  CHECK(*d.recommended_state == 1);
  CHECK_FALSE(d.recommended_exceeds_layer_state);
  CHECK(d.note.empty());
  CHECK_FALSE(d.targets[0].exceeds_layer_state);
  // A state above K is accepted when K covers every possible rank (here K = 8 ≥ 2).
  CHECK_NOTHROW(compressibility(R, {16}, 1e-2));
}

TEST_CASE("compress: entropy-ESS of the truncated spectrum and its loss") {
  // σ = 4, 2, 1, 1 (where the block's rank allows): entropy-ESS of the rank-2 truncation is
  // exp(H(2/3, 1/3)).
  const float s[4] = {4, 2, 1, 1};
  const double p = 2.0 / 3, q = 1.0 / 3;
  CHECK(truncated_entropy_ess(s, 4, 2) == doctest::Approx(std::exp(-(p * std::log(p) + q * std::log(q)))));
  CHECK(truncated_entropy_ess(s, 4, 1) == doctest::Approx(1.0));
  CHECK(truncated_entropy_ess(s, 4, 9) == doctest::Approx(truncated_entropy_ess(s, 4, 4)));
  const float z[2] = {0, 0};
  CHECK(truncated_entropy_ess(z, 2, 2) == 0.0);

  const LayerResult R = spectral_layer(4, {4, 2, 1, 1}, 4);
  const auto c = compressibility(R, {2, 4}, 1e-2);
  // Per block, loss = entropy-ESS(whole) − entropy-ESS(σ_1..σ_2); averaged over the 11 blocks.
  double loss = 0, full = 0, trunc = 0;
  for (int p2 = 0; p2 < 11; ++p2) {
    const float* sig = R.sigma.data() + p2 * 4;
    trunc += truncated_entropy_ess(sig, 4, 2);
    full += R.entropy_ess[p2];
    loss += R.entropy_ess[p2] - truncated_entropy_ess(sig, 4, 2);
  }
  CHECK(c.targets[0].truncated_entropy_ess == doctest::Approx(trunc / 11));
  CHECK(c.targets[0].entropy_ess_loss == doctest::Approx(loss / 11));
  CHECK(c.targets[0].relative_entropy_ess_loss == doctest::Approx(loss / full));
  CHECK(c.targets[0].entropy_ess_loss > 0);
  // Keeping every singular value loses nothing.
  CHECK(c.targets[1].entropy_ess_loss == doctest::Approx(0.0).epsilon(1e-7));
  CHECK(c.targets[1].truncated_entropy_ess == doctest::Approx(full / 11).epsilon(1e-6));
}

TEST_CASE("diagnose: utilization against the layer's state or against the attainable bound") {
  // TSS 8 on L = 12: attainable min(8, i, 12 − i) = 1,2,3,4,5,6,5,4,3,2,1; the channel uses it all.
  LayerResult R = spectral_layer(8, {8, 7, 6, 5, 4, 3, 2, 1}, 8);
  DiagnosisOptions o;
  o.basis = UtilizationBasis::attainable;
  const auto a = diagnose_layer(R, o);
  CHECK(a.utilization == doctest::Approx(1.0));
  CHECK(a.verdict == "saturated");
  // Against the state: mean of attainable_i / 8 = 36 / 88 — the input cannot fill this state.
  o.basis = UtilizationBasis::state;
  const auto s = diagnose_layer(R, o);
  CHECK(s.utilization == doctest::Approx(36.0 / 88.0));
  CHECK(s.verdict == "healthy");
  CHECK(std::string(to_string(UtilizationBasis::state)) == "state");
  CHECK(parse_utilization_basis("attainable") == UtilizationBasis::attainable);
  CHECK_THROWS_AS(parse_utilization_basis("tss"), UsageError);
  // Blocks with TSS_i = 0 are skipped on the state basis.
  R.tss[0] = 0;
  const auto z = diagnose_layer(R, o);
  CHECK(z.utilization == doctest::Approx(35.0 / 80.0));
}

namespace {

// One channel on L = 40 (blocks i = 1..39) with TSS `tss` whose every block has rank min(rank,
// tss, i, 40 − i), singular values all 1.
LayerResult ranked_layer(const std::string& family, int tss, int rank) {
  LayerResult R;
  R.name = "mixer";
  R.family = family;
  R.seq_len = 40;
  R.batch = 1;
  R.channels = 1;
  for (int i = 1; i < 40; ++i) {
    const int t = tss > 0 ? tss : i;  // tss 0: a full KV cache, TSS_i = i
    R.indices.push_back(i);
    R.tss.push_back(t);
    R.attainable.push_back(std::min({t, i, 40 - i}));
    const int r = std::min({rank, t, i, 40 - i});
    R.tolerance_ess.push_back(r);
    R.entropy_ess.push_back(r);
  }
  return R;
}

}  // namespace

TEST_CASE("diagnose: calibrated defaults (state basis, 0.8 / 0.3) on known ranks") {
  const DiagnosisOptions o;  // the defaults
  CHECK(o.basis == UtilizationBasis::state);
  CHECK(o.metric == Metric::tolerance);
  // A state of 4 used in full wherever the input can fill it: Σ_i min(4, i, 40 − i) = 144 of 39·4.
  auto d = diagnose_layer(ranked_layer("gla", 4, 4), o);
  CHECK(d.utilization == doctest::Approx(144.0 / 156));
  CHECK(d.verdict == "saturated");
  CHECK(d.advice.find("larger state") != std::string::npos);
  // The same rank-4 use of a state of 32: collapsed (the state is 8× larger than what is used).
  d = diagnose_layer(ranked_layer("gla", 32, 4), o);
  CHECK(d.utilization == doctest::Approx(144.0 / (39 * 32)));
  CHECK(d.verdict == "collapsed");
  CHECK(d.advice.find("ess compress") != std::string::npos);
  // Rank 4 of a state of 8: healthy (no advice to grow or shrink).
  d = diagnose_layer(ranked_layer("gla", 8, 4), o);
  CHECK(d.utilization == doctest::Approx(144.0 / 312));
  CHECK(d.verdict == "healthy");
  // The attainable basis calls all three saturated (every block at its largest possible rank for
  // the first; the others at ≥ 90%): what the calibration replaced.
  DiagnosisOptions a;
  a.basis = UtilizationBasis::attainable;
  CHECK(diagnose_layer(ranked_layer("gla", 4, 4), a).verdict == "saturated");
  // A full-rank softmax-attention head (TSS_i = i, rank min(i, L − i)) reads Σ min(i, 40 − i) / i
  // over 39 blocks ≈ 0.70 < 0.8: a full KV cache never runs out of state, so it is never saturated.
  d = diagnose_layer(ranked_layer("softmax_attention", 0, 1000), o);
  double u = 0;
  for (int i = 1; i < 40; ++i) u += std::min(i, 40 - i) / static_cast<double>(i);
  CHECK(d.utilization == doctest::Approx(u / 39));
  CHECK(d.verdict == "healthy");
}
