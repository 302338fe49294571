// diagnose, compress and the SVG writer on inputs with known answers.
#include <doctest/doctest.h>
#include <zlib.h>

#include <cmath>
#include <filesystem>
#include <random>

#include "analysis/compressibility.h"
#include "analysis/diagnosis.h"
#include "analysis/figures.h"
#include "analysis/svg.h"
#include "libess/compute.h"
#include "libess/error.h"
#include "libess/results_io.h"
#include "test_helpers.h"

using namespace ess;

namespace {

// L = 10, blocks i = 1..9, TSS = 4, attainable = min(4, i, 10 − i) = 1,2,3,4,4,4,3,2,1; channels:
// 0 uses the whole attainable state, 1 is dead, 2 has ESS 1 at a single block, 3 uses half.
// With fewer than 4 channels every channel is dead.
LayerResult known_layer(int channels = 4) {
  LayerResult R;
  R.name = "mixer";
  R.family = "mamba";
  R.layer_index = 2;
  R.seq_len = 10;
  R.batch = 1;
  R.channels = channels;
  for (int i = 1; i < 10; ++i) {
    R.indices.push_back(i);
    R.tss.push_back(4);
    R.attainable.push_back(std::min({4, i, 10 - i}));
  }
  const int I = 9;
  R.tolerance_ess.assign(channels * I, 0);
  R.entropy_ess.assign(channels * I, 0.0);
  if (channels < 4) return R;  // all dead
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

void set_channel(LayerResult& R, int c, const std::vector<int>& ess) {
  for (int p = 0; p < R.num_indices(); ++p) {
    R.tolerance_ess[R.at(0, c, p)] = ess[p];
    R.entropy_ess[R.at(0, c, p)] = ess[p];
  }
}

// The class and verdict mechanics below are stated on the attainable basis with thresholds 0.9 / 0.1
// (the defaults before the zoo calibration, still available as options); the calibrated defaults
// (state basis, 0.8 / 0.3) are tested in test_calibration.cpp.
DiagnosisOptions attainable_options() {
  DiagnosisOptions o;
  o.basis = UtilizationBasis::attainable;
  o.saturated = 0.9;
  o.collapsed = 0.1;
  return o;
}

const std::vector<int> kBound = {1, 2, 3, 4, 4, 4, 3, 2, 1};
const std::vector<int> kZero(9, 0);
const std::vector<int> kOne = {0, 0, 0, 0, 1, 0, 0, 0, 0};

}  // namespace

TEST_CASE("diagnose: saturated, dead, collapsed and healthy channels with the right utilization") {
  const LayerResult R = known_layer();
  DiagnosisOptions o = attainable_options();
  const LayerDiagnosis d = diagnose_layer(R, o);
  CHECK(d.channel_class[0] == ChannelClass::saturated);
  CHECK(d.channel_class[1] == ChannelClass::dead);
  CHECK(d.channel_class[2] == ChannelClass::collapsed);
  CHECK(d.channel_class[3] == ChannelClass::healthy);
  CHECK(d.channel_utilization[0] == doctest::Approx(1.0));
  CHECK(d.channel_utilization[1] == 0.0);
  CHECK(d.channel_utilization[2] == doctest::Approx((1.0 / 4) / 9));  // one block at ESS 1 of bound 4
  // Channel 3: ESS = floor(bound / 2): bounds 1,2,3,4,4,4,3,2,1 → ESS 0,1,1,2,2,2,1,1,0.
  const double u3 = (0 + 0.5 + 1.0 / 3 + 0.5 + 0.5 + 0.5 + 1.0 / 3 + 0.5 + 0) / 9;
  CHECK(d.channel_utilization[3] == doctest::Approx(u3));
  CHECK(d.saturated == 1);
  CHECK(d.dead == 1);
  CHECK(d.collapsed == 1);
  CHECK(d.healthy == 1);
  CHECK(d.verdict == "mixed");  // no class holds more than half of the 3 live channels
  CHECK(d.tss == 4);
  CHECK(d.channel_kind == "channel");
  CHECK(d.utilization == doctest::Approx((1.0 + 0.0 + 1.0 / 36 + u3) / 4));  // dead counts 0, as `ess report`
  CHECK(d.live_utilization == doctest::Approx((1.0 + 1.0 / 36 + u3) / 3));
  CHECK(d.advice.find("1 of 4 channels is dead") != std::string::npos);
  CHECK(d.advice.find("pruned") != std::string::npos);
  // Entropy metric: entropy-ESS of channel 3 is exactly half the bound.
  o.metric = Metric::entropy;
  const LayerDiagnosis e = diagnose_layer(R, o);
  CHECK(e.channel_class[3] == ChannelClass::healthy);
  CHECK(e.channel_utilization[3] == doctest::Approx(0.5));
}

TEST_CASE("diagnose: verdicts follow the documented rules") {
  DiagnosisOptions o = attainable_options();
  SUBCASE("ESS equal to the attainable bound everywhere: saturated, utilization 1") {
    LayerResult R = known_layer();
    for (int c = 0; c < 4; ++c) set_channel(R, c, kBound);
    const auto d = diagnose_layer(R, o);
    CHECK(d.verdict == "saturated");
    CHECK(d.saturated == 4);
    CHECK(d.utilization == doctest::Approx(1.0));
    CHECK(d.advice.find("larger state") != std::string::npos);
  }
  SUBCASE("ESS equal to TSS everywhere (above the bound near the ends) is saturated too") {
    LayerResult R = known_layer();
    for (int c = 0; c < 4; ++c) set_channel(R, c, std::vector<int>(9, 4));
    const auto d = diagnose_layer(R, o);
    CHECK(d.verdict == "saturated");
    double u = 0;
    for (int b : kBound) u += 4.0 / b;
    CHECK(d.utilization == doctest::Approx(u / 9));
  }
  SUBCASE("a channel or layer without any usable block is unmeasured, not dead") {
    // (Uncertified lanczos blocks carry ESS values that are excluded: a layer of them was called
    // dead, "ESS 0 at every block", before 2026-12-02.)
    LayerResult R = known_layer();
    R.status.assign(R.tolerance_ess.size(), block_ok);
    for (int p = 0; p < R.num_indices(); ++p) R.status[R.at(0, 1, p)] = block_uncertified;  // the dead one
    auto d = diagnose_layer(R, o);
    CHECK(d.channel_class[1] == ChannelClass::unmeasured);
    CHECK(d.dead == 0);
    CHECK(d.unmeasured == 1);
    CHECK(d.saturated + d.healthy + d.collapsed == 3);
    R.status.assign(R.tolerance_ess.size(), block_uncertified);
    d = diagnose_layer(R, o);
    CHECK(d.verdict == "unmeasured");
    CHECK(d.dead == 0);
    CHECK(d.unmeasured == 4);
    CHECK(d.advice.find("could not be measured") != std::string::npos);
    const std::string summary = model_summary({d});
    CHECK(summary.find("without a usable block") != std::string::npos);
    CHECK(summary.find("dead") == std::string::npos);
    // No utilization either: 0 % read as collapsed (the table's "0.0%", the plot's mean diamond
    // on the 0 % line) before 2026-12-03.
    CHECK(std::isnan(d.utilization));
    CHECK(std::isnan(d.live_utilization));
    CHECK(std::isnan(d.mean_ess));
    const std::string svg = ess_figure_svg({&R}, o, "t");
    CHECK(svg.find("mean utilization —") != std::string::npos);
    CHECK(svg.find("nan") == std::string::npos);
    CHECK(svg.find("stroke=\"white\" stroke-width=\"0.8\"") == std::string::npos);  // no mean diamond
  }
  SUBCASE("ESS near zero: collapsed, advice points to ess compress") {
    LayerResult R = known_layer();
    for (int c = 0; c < 4; ++c) set_channel(R, c, kOne);
    const auto d = diagnose_layer(R, o);
    CHECK(d.verdict == "collapsed");
    CHECK(d.collapsed == 4);
    CHECK(d.dead == 0);
    CHECK(d.advice.find("ess compress") != std::string::npos);
  }
  SUBCASE("all channels dead: dead") {
    LayerResult R = known_layer();
    for (int c = 0; c < 4; ++c) set_channel(R, c, kZero);
    const auto d = diagnose_layer(R, o);
    CHECK(d.verdict == "dead");
    CHECK(d.dead == 4);
    CHECK(d.utilization == 0.0);
    CHECK(d.live_utilization == 0.0);
  }
  SUBCASE("more than half dead: partly dead; exactly half dead: judged on the live channels") {
    LayerResult R = known_layer();
    set_channel(R, 2, kZero);
    set_channel(R, 3, kZero);
    auto d = diagnose_layer(R, o);  // channels 1, 2, 3 dead
    CHECK(d.dead == 3);
    CHECK(d.verdict == "partly dead");
    CHECK(d.advice.find("prune") != std::string::npos);
    set_channel(R, 2, kBound);  // 2 dead, 2 saturated
    d = diagnose_layer(R, o);
    CHECK(d.dead == 2);
    CHECK(d.verdict == "saturated");
  }
  SUBCASE("a dead channel among collapsed ones: collapsed, with the dead count") {
    LayerResult R = known_layer();
    set_channel(R, 0, kOne);
    set_channel(R, 3, kOne);
    const auto d = diagnose_layer(R, o);
    CHECK(d.verdict == "collapsed");
    CHECK(d.collapsed == 3);
    CHECK(d.dead == 1);
  }
  SUBCASE("healthy majority") {
    LayerResult R = known_layer();
    set_channel(R, 0, {0, 1, 1, 2, 2, 2, 1, 1, 0});
    set_channel(R, 1, {0, 1, 1, 2, 2, 2, 1, 1, 0});
    const auto d = diagnose_layer(R, o);
    CHECK(d.healthy == 3);
    CHECK(d.verdict == "healthy");
  }
  SUBCASE("blocks whose status is not ok are ignored: a channel positive only there is dead") {
    LayerResult R = known_layer();
    R.status.assign(R.tolerance_ess.size(), block_ok);
    R.status[R.at(0, 2, 4)] = block_not_converged;
    const auto d = diagnose_layer(R, o);
    CHECK(d.channel_class[2] == ChannelClass::dead);
  }
  SUBCASE("custom thresholds move the classes") {
    LayerResult R = known_layer();
    o.saturated = 0.3;  // channel 3 (u ≈ 0.35) becomes saturated
    const auto d = diagnose_layer(R, o);
    CHECK(d.channel_class[3] == ChannelClass::saturated);
    CHECK(d.verdict == "saturated");
  }
  SUBCASE("attention with a window: the advice talks about the window") {
    LayerResult R = known_layer();
    R.family = "softmax_attention";
    R.channel_kind = ChannelKind::head;
    for (int c = 0; c < 4; ++c) set_channel(R, c, kBound);
    const auto d = diagnose_layer(R, o);  // TSS 4 < i for i > 4: windowed
    CHECK(d.advice.find("window") != std::string::npos);
    CHECK(d.advice.find("heads") != std::string::npos);
  }
}

TEST_CASE("diagnose: invalid thresholds and metrics are usage errors") {
  DiagnosisOptions o;
  std::string why;
  CHECK(o.IsValid(&why));
  o.collapsed = 0.95;
  CHECK_FALSE(o.IsValid(&why));
  CHECK(why == "collapsed must be below saturated");  // library terms: the CLI names its flags
  CHECK_THROWS_AS(diagnose_layer(known_layer(), o), UsageError);
  o = DiagnosisOptions{};
  o.saturated = 1.5;
  CHECK_FALSE(o.IsValid(&why));
  o.saturated = std::nan("");
  CHECK_FALSE(o.IsValid(&why));
  o = DiagnosisOptions{};
  o.collapsed = -0.1;
  CHECK_FALSE(o.IsValid(&why));
  o = DiagnosisOptions{};
  o.collapsed = o.saturated = 0.5;  // collapsed must be strictly below saturated
  CHECK_FALSE(o.IsValid(&why));
  CHECK_THROWS_AS(parse_metric("rank"), UsageError);
  CHECK(parse_metric("entropy") == Metric::entropy);
}

TEST_CASE("diagnose: results written to disk and read back give the same verdicts") {
  LayerResult sat = known_layer(), col = known_layer(), dead = known_layer(2);
  sat.name = "sat";
  sat.layer_index = 0;
  for (int c = 0; c < 4; ++c) set_channel(sat, c, kBound);
  col.name = "col";
  col.layer_index = 1;
  for (int c = 0; c < 4; ++c) set_channel(col, c, c == 3 ? kZero : kOne);
  dead.name = "dead";
  dead.layer_index = 2;
  for (auto* R : {&sat, &col, &dead}) {  // the writer stores every per-block dataset
    R->engine = "dense";
    R->status.assign(R->tolerance_ess.size(), block_ok);
    R->frobenius.assign(R->tolerance_ess.size(), 1.0);
    R->error_bound.assign(R->tolerance_ess.size(), 0.0);
    R->layer_sigma_max.assign(R->batch, 1.0);
  }
  const std::string dir = ess::test::temp_dir("diagnosis");
  write_results(dir + "/r.h5", {sat, col, dead}, Provenance{"synthetic", "", "test", "", -1, ""}, "test");
  const auto layers = diagnose(read_results(dir + "/r.h5"), attainable_options());
  std::filesystem::remove_all(dir);
  REQUIRE(layers.size() == 3);
  CHECK(layers[0].verdict == "saturated");
  CHECK(layers[1].verdict == "collapsed");
  CHECK(layers[1].collapsed == 3);
  CHECK(layers[1].dead == 1);
  CHECK(layers[2].verdict == "dead");
  CHECK(layers[2].dead == 2);
  const std::string s = model_summary(layers);
  CHECK(s.find("Saturated layers: 0") != std::string::npos);
  CHECK(s.find("Collapsed layers: 1") != std::string::npos);
  CHECK(s.find("Dead or mostly dead layers: 2") != std::string::npos);
}

namespace {

// σ_k = 0.5^k (k = 0, 1, …) kept up to K in every block: ‖H‖_F² = 1/(1 − 0.25) and
// Σ_{k≥n} σ_k² = 0.25^n/(1 − 0.25), so the Eckart–Young tail for state n is exactly 0.5^n.
LayerResult geometric_layer(int K) {
  LayerResult R = known_layer();
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
  return R;
}

}  // namespace

TEST_CASE("compress: Eckart–Young tails of a geometric spectrum equal 0.5^N_s") {
  const int K = 8;
  LayerResult R = geometric_layer(K);
  const auto c = compressibility(R, {1, 2, 4, 8}, 0.1);
  REQUIRE(c.targets.size() == 4);
  CHECK(c.sigma_k == K);
  CHECK(c.blocks == 36);
  for (const auto& t : c.targets) {
    CHECK(t.mean_tail == doctest::Approx(std::pow(0.5, t.state)).epsilon(1e-6));
    CHECK(t.max_tail == doctest::Approx(std::pow(0.5, t.state)).epsilon(1e-6));
  }
  REQUIRE(c.recommended_state.has_value());
  CHECK(*c.recommended_state == 4);  // 0.5^4 = 0.0625 ≤ 0.1 < 0.125
  // frac_exceeding: blocks with tolerance-ESS > 1 — channel 0: bound > 1 at 7 blocks; channel 3:
  // ESS 2 at 3 blocks — out of 36.
  CHECK(c.targets[0].frac_exceeding == doctest::Approx(10.0 / 36));
  CHECK(c.targets[2].frac_exceeding == 0.0);
  // No state small enough: recommended_state is empty.
  CHECK_FALSE(compressibility(R, {1, 2}, 1e-3).recommended_state.has_value());
  // Order of the requested states does not matter for the recommendation.
  CHECK(*compressibility(R, {8, 4, 2}, 0.2).recommended_state == 4);
  // Without frobenius and tail datasets the norm comes from the stored σ.
  R.frobenius.clear();
  R.sigma_tail.clear();
  const auto c2 = compressibility(R, {2}, 0.1);
  double all = 0, tail = 0;
  for (int k = 0; k < K; ++k) all += std::pow(0.25, k);
  for (int k = 2; k < K; ++k) tail += std::pow(0.25, k);
  CHECK(c2.targets[0].mean_tail == doctest::Approx(std::sqrt(tail / all)).epsilon(1e-6));
}

TEST_CASE("compress: mean and max over blocks with different spectra, bad blocks skipped") {
  LayerResult R = geometric_layer(4);
  // Block (0, 0, 0): rank 2 with σ = (4, 3), ‖H‖_F = 5: tail(1) = 3/5.
  const size_t k0 = R.at(0, 0, 0);
  R.sigma[k0 * 4 + 0] = 4;
  R.sigma[k0 * 4 + 1] = 3;
  R.sigma[k0 * 4 + 2] = R.sigma[k0 * 4 + 3] = 0;
  R.sigma_tail[k0] = 0;
  R.frobenius[k0] = 5;
  // Block (0, 1, 0) is a zero block: tail 0.
  const size_t k1 = R.at(0, 1, 0);
  for (int k = 0; k < 4; ++k) R.sigma[k1 * 4 + k] = 0;
  R.sigma_tail[k1] = 0;
  R.frobenius[k1] = 0;
  // Block (0, 2, 0) did not converge: skipped.
  R.status.assign(R.tolerance_ess.size(), block_ok);
  R.status[R.at(0, 2, 0)] = block_not_converged;
  const auto c = compressibility(R, {1}, 0.01);
  const double expected = (0.6 + 0.0 + 33 * 0.5) / 35;
  CHECK(c.blocks == 35);
  CHECK(c.targets[0].mean_tail == doctest::Approx(expected).epsilon(1e-7));
  CHECK(c.targets[0].max_tail == doctest::Approx(0.6).epsilon(1e-7));
}

TEST_CASE("compress: missing or too few singular values are input errors — bad states are usage errors") {
  LayerResult R = known_layer();
  CHECK_THROWS_WITH_AS(compressibility(R, {4}, 0.01), doctest::Contains("with keep_sigma K"), InputError);
  R = geometric_layer(2);
  CHECK_THROWS_WITH_AS(compressibility(R, {1, 8}, 0.01), doctest::Contains("K = 2"), InputError);
  CHECK_THROWS_WITH_AS(compressibility(R, {8}, 0.01), doctest::Contains("layer 'mixer'"), InputError);
  CHECK_THROWS_AS(compressibility(R, {0}, 0.01), UsageError);
  CHECK_THROWS_AS(compressibility(R, {2, -1}, 0.01), UsageError);
  CHECK_THROWS_AS(compressibility(R, {}, 0.01), UsageError);
  CHECK_THROWS_AS(compressibility(R, {1}, -1.0), UsageError);
  // All-zero spectra: every tail is 0.
  R.sigma.assign(R.sigma.size(), 0.0f);
  R.sigma_tail.assign(R.sigma_tail.size(), 0.0);
  R.frobenius.assign(R.frobenius.size(), 0.0);
  const auto c = compressibility(R, {1, 2}, 0.0);
  CHECK(c.targets[0].mean_tail == 0.0);
  CHECK(c.targets[1].max_tail == 0.0);
  CHECK(*c.recommended_state == 1);
}

TEST_CASE("compress: tails from compute_layer match an independent Jacobi SVD of every block") {
  // Random causal T with a decaying spectrum; dense engine; σ kept to K = 5, the rest as sigma_tail.
  std::mt19937 rng(7);
  const int L = 14, C = 2, K = 5;
  std::vector<Matrix> Ts;
  for (int c = 0; c < C; ++c) {
    Matrix T = ess::test::random_matrix(rng, L, L);
    for (int i = 0; i < L; ++i)
      for (int j = 0; j < L; ++j) T(i, j) = j > i ? 0.0 : T(i, j) * std::pow(0.6, i - j);
    Ts.push_back(T);
  }
  OperatorLayer layer;
  layer.name = "random";
  layer.op = std::make_unique<ess::test::ExplicitOperator>(1, C, Ts);
  EssOptions o;
  o.keep_sigma = K;
  o.engine = EngineKind::dense;
  const LayerResult R = compute_layer(layer, o);
  const std::vector<int> states = {1, 2, 3, 5};
  const auto got = compressibility(R, states, 0.05);
  for (size_t s = 0; s < states.size(); ++s) {
    const int n = states[s];
    double sum = 0, mx = 0;
    long blocks = 0, exceeding = 0;
    for (int c = 0; c < C; ++c)
      for (int i = 1; i < L; ++i) {
        const auto sig = ess::test::reference_sigma(Ts[c], i);
        long double all = 0, tail = 0;
        int rank = 0;
        for (size_t k = 0; k < sig.size(); ++k) {
          all += static_cast<long double>(sig[k]) * sig[k];
          if (static_cast<int>(k) >= n) tail += static_cast<long double>(sig[k]) * sig[k];
          rank += sig[k] > o.tol;
        }
        const double t = all > 0 ? static_cast<double>(std::sqrt(tail / all)) : 0.0;
        sum += t;
        mx = std::max(mx, t);
        exceeding += rank > n;
        ++blocks;
      }
    CAPTURE(n);
    CHECK(got.targets[s].mean_tail == doctest::Approx(sum / blocks).epsilon(1e-6));
    CHECK(got.targets[s].max_tail == doctest::Approx(mx).epsilon(1e-6));
    CHECK(got.targets[s].frac_exceeding == doctest::Approx(static_cast<double>(exceeding) / blocks));
  }
}

TEST_CASE("svg: ticks, colours and escaping") {
  CHECK(svg::nice_ticks(0, 100, 5) == std::vector<double>{0, 20, 40, 60, 80, 100});
  CHECK(svg::nice_ticks(0, 16, 4) == std::vector<double>{0, 5, 10, 15});
  CHECK(svg::nice_ticks(1, 191, 6) == std::vector<double>{50, 100, 150});
  CHECK(svg::nice_ticks(0, 1, 4) == std::vector<double>{0, 0.25, 0.5, 0.75, 1});
  CHECK(svg::integer_ticks(0, 3, 4) == std::vector<double>{0, 1, 2, 3});
  CHECK(svg::integer_ticks(0, 0, 4) == std::vector<double>{0});
  CHECK(svg::integer_ticks(0, 1535, 4) == std::vector<double>{0, 500, 1000, 1500});
  CHECK(svg::format_tick(0.5) == "0.5");
  CHECK(svg::format_tick(150) == "150");
  CHECK(svg::format_tick(1e6) == "1e+06");
  CHECK(svg::colormap(0) == "#440154");  // viridis end points
  CHECK(svg::colormap(1) == "#fde725");
  CHECK(svg::colormap(2) == "#fde725");  // clamped
  CHECK(svg::colormap(std::nan("")) == "#cccccc");
  // Luminance increases along the map (readable in grey scale).
  double last = -1;
  for (int k = 0; k <= 20; ++k) {
    const auto c = svg::colormap_rgb(k / 20.0);
    const double y = 0.2126 * c[0] + 0.7152 * c[1] + 0.0722 * c[2];
    CHECK(y > last);
    last = y;
  }
  CHECK(svg::escape("a<b & \"c\" 'd'") == "a&lt;b &amp; &quot;c&quot; &apos;d&apos;");
}

TEST_CASE("svg: base64 matches RFC 4648's test vectors") {
  CHECK(svg::base64("") == "");
  CHECK(svg::base64("f") == "Zg==");
  CHECK(svg::base64("fo") == "Zm8=");
  CHECK(svg::base64("foo") == "Zm9v");
  CHECK(svg::base64("foobar") == "Zm9vYmFy");
  CHECK(svg::base64(std::string("\xff\xfe\x00", 3)) == "//4A");
}

namespace {
std::uint32_t be32(const std::string& s, size_t at) {
  return (static_cast<std::uint32_t>(static_cast<unsigned char>(s[at])) << 24) |
         (static_cast<unsigned char>(s[at + 1]) << 16) | (static_cast<unsigned char>(s[at + 2]) << 8) |
         static_cast<unsigned char>(s[at + 3]);
}
}  // namespace

TEST_CASE("svg: palette PNG has valid chunks and stores the pixels exactly") {
  for (auto [W, H] : {std::pair<int, int>{3, 2}, {300, 260}}) {
    std::vector<std::uint8_t> pixels(static_cast<size_t>(W) * H);
    for (size_t k = 0; k < pixels.size(); ++k) pixels[k] = static_cast<std::uint8_t>((k * 31) % 7);
    std::vector<svg::Rgb> palette(7);
    for (int k = 0; k < 7; ++k) palette[k] = svg::colormap_rgb(k / 6.0);
    const std::string png = svg::png_palette(W, H, pixels, palette);
    REQUIRE(png.substr(0, 8) == std::string("\x89PNG\r\n\x1a\n", 8));
    size_t at = 8;
    std::string idat, types;
    while (at < png.size()) {
      const std::uint32_t n = be32(png, at);
      const std::string type = png.substr(at + 4, 4);
      const std::string data = png.substr(at + 8, n);
      const std::string body = type + data;
      CHECK(be32(png, at + 8 + n) ==
            ::crc32(0L, reinterpret_cast<const Bytef*>(body.data()), static_cast<uInt>(body.size())));
      types += type + " ";
      if (type == "IHDR") {
        CHECK(be32(data, 0) == static_cast<std::uint32_t>(W));
        CHECK(be32(data, 4) == static_cast<std::uint32_t>(H));
        CHECK(data[8] == 8);  // bit depth
        CHECK(data[9] == 3);  // palette
      }
      if (type == "PLTE") CHECK(data.size() == 3 * palette.size());
      if (type == "IDAT") idat += data;
      at += 12 + n;
    }
    CHECK(at == png.size());
    CHECK(types == "IHDR PLTE IDAT IEND ");
    // Inflate IDAT with zlib (which also checks the Adler-32) and compare every scanline.
    std::string raw(static_cast<size_t>(W + 1) * H + 16, '\0');
    uLongf raw_size = static_cast<uLongf>(raw.size());
    REQUIRE(::uncompress(reinterpret_cast<Bytef*>(raw.data()), &raw_size, reinterpret_cast<const Bytef*>(idat.data()),
                         static_cast<uLong>(idat.size())) == Z_OK);
    raw.resize(raw_size);
    if (W * H > 1000) CHECK(idat.size() < raw.size() / 4);  // actually compressed
    REQUIRE(raw.size() == static_cast<size_t>(W + 1) * H);
    bool same = true;
    for (int r = 0; r < H; ++r) {
      same = same && raw[static_cast<size_t>(r) * (W + 1)] == 0;
      for (int x = 0; x < W; ++x)
        same = same && static_cast<std::uint8_t>(raw[static_cast<size_t>(r) * (W + 1) + 1 + x]) ==
                           pixels[static_cast<size_t>(r) * W + x];
    }
    CHECK(same);
  }
  CHECK_THROWS_AS(svg::png_palette(2, 2, {0, 0, 0}, {{0, 0, 0}}), std::invalid_argument);
  CHECK_THROWS_AS(svg::png_palette(1, 1, {3}, {{0, 0, 0}}), std::invalid_argument);
}

TEST_CASE("svg: a document is one self-contained, escaped SVG") {
  svg::Document doc(200, 100);
  svg::Axes ax(doc, 40, 10, 150, 60, 0, 10, 0, 5);
  CHECK(ax.px(0) == 40);
  CHECK(ax.px(10) == 190);
  CHECK(ax.py(0) == 70);
  CHECK(ax.py(5) == 10);
  ax.frame("layer <1> & co", "block index i", "state size");
  doc.polyline({ax.px(0), ax.px(5), std::nan("")}, {ax.py(0), ax.py(5), 1}, "#1f77b4");
  doc.begin_group("tip \"x\"");
  doc.image_png(0, 0, 10, 10, svg::png_palette(1, 1, {0}, {{1, 2, 3}}));
  doc.end_group();
  const std::string s = doc.str();
  CHECK(s.rfind("<?xml", 0) == 0);
  CHECK(s.find("</svg>\n") == s.size() - 7);
  CHECK(s.find("layer &lt;1&gt; &amp; co") != std::string::npos);
  CHECK(s.find("<title>tip &quot;x&quot;</title>") != std::string::npos);
  CHECK(s.find("block index i") != std::string::npos);
  CHECK(s.find("state size") != std::string::npos);
  CHECK(s.find("data:image/png;base64,") != std::string::npos);
  CHECK(s.find("http://www.w3.org/2000/svg") != std::string::npos);
  CHECK(s.find("points=\"40.0,70.0 115.0,10.0 \"") != std::string::npos);  // NaN point dropped
  // No external references: the only URLs are the two namespace declarations.
  size_t urls = 0;
  for (size_t at = s.find("http"); at != std::string::npos; at = s.find("http", at + 1)) ++urls;
  CHECK(urls == 2);
}
