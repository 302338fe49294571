// The lanczos engine (libess/engine.h) and the block products it runs on (libess/block_products.h)
// against an independent dense SVD (Eigen's JacobiSVD) of the same blocks of the materialized T.
#include <doctest/doctest.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <random>
#include <thread>

#include "analysis/bench_cases.h"
#include "libess/compute.h"
#include "libess/metrics.h"
#include "libess/skinny_gemm.h"
#include "operators/dense.h"
#include "operators/family.h"
#include "operators/mamba.h"
#include "operators/softmax_attention.h"
#include "test_helpers.h"

namespace ess {
namespace {

using test::reference_sigma;

Tensor gaussian(std::mt19937& rng, std::vector<std::int64_t> shape, double scale) {
  Tensor t(std::move(shape));
  std::normal_distribution<double> n(0.0, scale);
  for (auto& v : t.data) v = n(rng);
  return t;
}

// Every product of the products object against the same product with the dense block: the
// products the engine picks, and the realization's where the family has one (the engine takes a
// materialized T instead when the state is large against L).
void check_products(const LayerOperator& op, int b, int c, const std::vector<int>& blocks, bool prefer_realization);

void check_products(const LayerOperator& op, int b, int c, const std::vector<int>& blocks) {
  for (bool prefer_realization : {false, true}) {
    if (prefer_realization && (op.realization_dim() == 0 || !lanczos_products_use_T(op))) continue;
    CAPTURE(prefer_realization);
    check_products(op, b, c, blocks, prefer_realization);
  }
}

void check_products(const LayerOperator& op, int b, int c, const std::vector<int>& blocks, bool prefer_realization) {
  const Matrix T = op.dense_matrix(b, c);
  DenseWorkspace ws;
  const auto P = channel_products(op, b, c, ws, prefer_realization);
  const int L = op.seq_len();
  std::mt19937 rng(5);
  P->prepare(blocks);
  for (int i : blocks) {
    const Matrix H = T.block(i, 0, L - i, i);
    const double scale = std::max(H.norm(), 1e-300);
    const Matrix X = test::random_matrix(rng, i, 3), Yt = test::random_matrix(rng, L - i, 3);
    const BlockSupport sup = P->support(i);
    Matrix Y(L - i, 3), Z(i, 3), G(i, 3), Hm(sup.rows, sup.cols);
    P->apply(i, X, Y);
    P->apply_transpose(i, Yt, Z);
    P->gram(i, X, G);
    P->materialize_block(i, Hm);
    CAPTURE(op.family());
    CAPTURE(i);
    CHECK((Y - H * X).norm() <= 1e-12 * scale * X.norm());
    CHECK((Z - H.transpose() * Yt).norm() <= 1e-12 * scale * Yt.norm());
    CHECK((G - H.transpose() * (H * X)).norm() <= 1e-12 * scale * scale * X.norm());
    // H_i vanishes outside its support, and the support written out is H_i there.
    CHECK((Hm - H.block(sup.row0, sup.col0, sup.rows, sup.cols)).norm() <= 1e-13 * scale);
    CHECK(std::abs(Hm.squaredNorm() - H.squaredNorm()) <= 1e-13 * scale * scale);
    CHECK(P->frobenius2(i) == doctest::Approx(H.squaredNorm()).epsilon(1e-11));
  }
}

// Per block: the lanczos result and the exact values from the dense SVD.
struct Agreement {
  long certified = 0, partial = 0, whole = 0, ties = 0;
};

Agreement check_engine(const LayerOperator& op, const std::vector<int>& blocks, const EssOptions& o) {
  Agreement a;
  const EssOptions& lo = o;
  const int L = op.seq_len();
  for (int b = 0; b < op.batch(); ++b)
    for (int c = 0; c < op.channels(); ++c) {
      const Matrix T = op.dense_matrix(b, c);
      DenseWorkspace ws;
      struct Sink : SpectrumSink {
        std::vector<Partial> parts;
        std::vector<std::vector<double>> sigma;
        void block(int, const double*, int, double, bool) override { FAIL("lanczos must report partial blocks"); }
        void partial_block(int pos, const Partial& p) override {
          if (static_cast<int>(parts.size()) <= pos) parts.resize(pos + 1), sigma.resize(pos + 1);
          parts[pos] = p;
          sigma[pos].assign(p.sigma, p.sigma + p.count);
        }
      } sink;
      LanczosOptions opt = lo.lanczos;
      opt.tol = lo.tol;
      opt.tol_mode = lo.tol_mode;
      channel_spectra(op, b, c, EngineKind::lanczos, blocks, 0.0, ws, sink, opt);
      REQUIRE(sink.parts.size() == blocks.size());
      for (size_t pos = 0; pos < blocks.size(); ++pos) {
        const int i = blocks[pos];
        const std::vector<double> exact = reference_sigma(T, i);
        const auto& p = sink.parts[pos];
        const auto& s = sink.sigma[pos];
        CAPTURE(op.family());
        CAPTURE(L);
        CAPTURE(i);
        CAPTURE(p.count);
        REQUIRE(p.converged);
        // The rank bound is min(i, L − i), or less where H_i vanishes outside its support (window):
        // the exact values beyond it are then zero.
        CHECK(p.rank_bound <= std::min(i, L - i));
        for (size_t k = static_cast<size_t>(p.rank_bound); k < exact.size(); ++k) CHECK(exact[k] <= 1e-12 * exact[0]);
        const double f2 = T.block(i, 0, L - i, i).squaredNorm();
        CHECK(p.frobenius2 == doctest::Approx(f2).epsilon(1e-10).scale(1e-300));
        // Computed values are the largest exact ones.
        for (int k = 0; k < p.count; ++k)
          CHECK(std::abs(s[k] - exact[k]) <= 1e-8 * exact[0] + 2 * p.error_bound + 1e-300);
        const double threshold =
            tolerance_threshold(o.tol_mode == TolMode::absolute ? TolMode::absolute : TolMode::block, o.tol,
                                exact.empty() ? 0.0 : exact[0], 0.0);
        bool tie = false;
        for (double x : exact) tie = tie || std::abs(x - threshold) <= 1e-8 * std::max(threshold, 1e-300);
        if (p.certified) {
          ++a.certified;
          if (tie)
            ++a.ties;
          else
            CHECK(count_above(s.data(), p.count, threshold) ==
                  count_above(exact.data(), static_cast<int>(exact.size()), threshold));
        }
        // Entropy-ESS: exact with the whole spectrum, inside the certified interval otherwise.
        const EssInterval e = partial_entropy_interval(s.data(), p.count, p.rank_bound, p.frobenius2, p.error_bound);
        const double h = entropy_ess(exact.data(), static_cast<int>(exact.size()));
        if (p.count >= p.rank_bound) {
          ++a.whole;
          // (Exact up to the values' own errors: an iterative solver's whole spectrum has them.)
          if (p.error_bound <= 1e-12 * (s.empty() ? 0.0 : s[0]))
            CHECK(h == doctest::Approx(entropy_ess(s.data(), p.count)).epsilon(1e-8));
          CHECK(e.lower <= h * (1 + 1e-9));
          CHECK(h <= e.upper * (1 + 1e-9));
        } else {
          ++a.partial;
          CHECK(e.lower <= h * (1 + 1e-9));
          CHECK(h <= e.upper * (1 + 1e-9));
        }
      }
    }
  return a;
}

// Mamba channels whose blocks span 10⁻¹⁴·σ_1 and more (B scaled over 10⁻⁸…10⁴, bursty and huge dt).
MambaOperator wide_range_mamba() {
  const int L = 512, N = 16, C = 4;
  std::mt19937 rng(3);
  std::normal_distribution<double> normal(0.0, 1.0);
  std::uniform_real_distribution<double> u(0.0, 1.0);
  Tensor dt({1, C, L}), A({C, N}), B({1, L, N}), Cm({1, L, N});
  for (auto& v : A.data) v = -std::exp(2 * normal(rng));
  for (auto& v : Cm.data) v = normal(rng);
  for (int c = 0; c < C; ++c)
    for (int t = 0; t < L; ++t)
      // bursty (channels 0, 1): dt 20 on one step in ten, else 10⁻⁴; channel 2: dt = 100 (decays
      // down to e^−2800 per step); channel 3: 0.1.
      dt.data[static_cast<size_t>(c) * L + t] = c < 2 ? (u(rng) < 0.1 ? 20.0 : 1e-4) : c == 2 ? 100.0 : 0.1;
  for (int t = 0; t < L; ++t)
    for (int n = 0; n < N; ++n)
      B.data[static_cast<size_t>(t) * N + n] = normal(rng) * std::pow(10.0, -8 + 12.0 * n / (N - 1));
  return MambaOperator(dt, A, B, Cm, "wide range");
}

}  // namespace

TEST_CASE("skinny products: Hᵀ Y and H X equal Eigen's products at odd shapes, strides and chunk edges") {
  // Rows not a multiple of 8 (masked tails) and past the 512-row chunk (Hᵀ Y) and the 192-row
  // panel (H X), columns not a multiple of 4 and past the 128-column panel, vector counts not a
  // multiple of 6 or 8, leading dimensions larger than the rows; the AVX-512 kernels (where the CPU
  // has them), the AVX2 kernel (where it has AVX2) and the BLAS fallback.
  std::mt19937 rng(11);
  std::normal_distribution<double> normal(0.0, 1.0);
  for (const int path : {0, 1, 2}) {
    CAPTURE(path);
    skinny_gemm_use_blas(path == 1);
    skinny_gemm_use_avx2(path == 2);
    for (const auto& shape : std::vector<std::array<int, 3>>{{1, 1, 1},
                                                             {7, 5, 3},
                                                             {9, 13, 7},
                                                             {17, 9, 9},
                                                             {23, 130, 8},
                                                             {517, 6, 13},
                                                             {1030, 37, 25},
                                                             {2100, 53, 9},
                                                             {64, 1, 6},
                                                             {3, 300, 64},
                                                             {401, 259, 17},
                                                             {200, 129, 40},
                                                             {600, 50, 70},
                                                             {700, 389, 20}}) {
      // Plain ints, not structured bindings: CAPTURE's lambda may not capture those before C++20
      // (clang refuses; the sanitizer build uses clang).
      const int m = shape[0], n = shape[1], w = shape[2];
      const int ldh = m + 3, ldy = m + 1, ldz = n + 2, ldx = n + 5;
      Matrix Hs(ldh, n), Ys(ldy, w), Xs(ldx, w);
      for (auto* M : {&Hs, &Ys, &Xs})
        for (Index k = 0; k < M->size(); ++k) M->data()[k] = normal(rng);
      const Matrix H = Hs.topRows(m), Y = Ys.topRows(m), X = Xs.topRows(n);
      Matrix Z = Matrix::Constant(ldz, w, 7.0), out = Matrix::Constant(ldh, w, 7.0);
      skinny_gemm_tn(m, n, w, Hs.data(), ldh, Ys.data(), ldy, Z.data(), ldz);
      skinny_gemm_nn(m, n, w, Hs.data(), ldh, Xs.data(), ldx, out.data(), ldh);
      const Matrix Zref = H.transpose() * Y, Oref = H * X;
      CAPTURE(m);
      CAPTURE(n);
      CAPTURE(w);
      CHECK((Z.topRows(n) - Zref).cwiseAbs().maxCoeff() <= 1e-12 * (1 + Zref.cwiseAbs().maxCoeff()));
      CHECK((out.topRows(m) - Oref).cwiseAbs().maxCoeff() <= 1e-12 * (1 + Oref.cwiseAbs().maxCoeff()));
      // Entries past the rows (the leading dimension's padding) are left alone.
      if (ldz > n) CHECK(Z.bottomRows(ldz - n).isConstant(7.0));
      CHECK(out.bottomRows(ldh - m).isConstant(7.0));
      // The fused pair (one pass over H in panels of 128 columns where it applies, n ≥ 256):
      // Z = Hᵀ Y, then out = H Z.
      Z.setConstant(7.0);
      out.setConstant(7.0);
      skinny_gemm_tn_nn(m, n, w, Hs.data(), ldh, Ys.data(), ldy, Z.data(), ldz, out.data(), ldh);
      const Matrix HZref = H * Zref;
      CHECK((Z.topRows(n) - Zref).cwiseAbs().maxCoeff() <= 1e-12 * (1 + Zref.cwiseAbs().maxCoeff()));
      CHECK((out.topRows(m) - HZref).cwiseAbs().maxCoeff() <= 1e-12 * (1 + HZref.cwiseAbs().maxCoeff()));
      if (ldz > n) CHECK(Z.bottomRows(ldz - n).isConstant(7.0));
      CHECK(out.bottomRows(ldh - m).isConstant(7.0));
    }
  }
  skinny_gemm_use_blas(false);
  skinny_gemm_use_avx2(false);
}

TEST_CASE("lanczos products: every family's H_i x, H_iᵀ y, Gram, ‖H_i‖_F² and H_i equal the dense block") {
  for (const Family& f : families()) {
    const auto op = f.example(3);
    const int L = op->seq_len();
    check_products(*op, 0, 0, {1, 2, L / 2, L - 2, L - 1});
    check_products(*op, op->batch() - 1, op->channels() - 1, {3, L / 3});
  }
}

TEST_CASE("lanczos products: every variant of every family (its attributes included) equals the dense block") {
  // The conformance variants of tests/test_operators.cpp (windows, masks, scales, soft caps,
  // normalizers, gates, per-head or per-dimension decays, conjugate pairs, gated convolutions).
  std::mt19937 rng(21);
  for (const auto& c : test::operator_cases(rng)) {
    CAPTURE(c.name);
    const int L = c.op->seq_len();
    check_products(*c.op, 0, 0, {1, 2, L / 2, L - 2, L - 1});
    check_products(*c.op, c.op->batch() - 1, c.op->channels() - 1, {3, L / 3});
  }
  // Which products the engine takes: the realization for a small state, T for a large one (a long
  // convolution, N = K ≈ L, took 19× the dense engine's time through its realization at L = 2048).
  const BenchCase mamba = make_bench_case("mamba", 256, 1, 16, 1), conv = make_bench_case("longconv", 256, 1, 16, 1);
  CHECK(mamba.op->realization_dim() * 4 <= 256);
  CHECK_FALSE(lanczos_products_use_T(*mamba.op));
  CHECK(conv.op->realization_dim() * 4 > 256);
  CHECK(lanczos_products_use_T(*conv.op));
}

TEST_CASE("lanczos products: softmax attention in tiles equals the dense T (plain, window, mask, softcap)") {
  std::mt19937 rng(11);
  const int L = 300;  // > 2 tiles of query rows
  std::vector<std::uint8_t> mask(static_cast<size_t>(L) * L, 0);
  std::bernoulli_distribution keep(0.6);
  for (int t = 0; t < L; ++t)
    for (int s = 0; s <= t; ++s) mask[static_cast<size_t>(t) * L + s] = s == 0 || s == t || keep(rng);
  const std::vector<int> blocks = {1, 5, 127, 128, 129, 150, 256, 299};
  // Variants 3 and 4: Gemma-2's capped logits c·tanh(s/c) (plain, then in a window). The products
  // ignored the cap before 2026-12-02: the capped head's blocks were the uncapped head's.
  for (int variant = 0; variant < 5; ++variant) {
    CAPTURE(variant);
    SoftmaxAttentionOperator op(gaussian(rng, {1, 2, L, 16}, 1.5), gaussian(rng, {1, 2, L, 16}, 1.5),
                                variant == 2 ? mask : std::vector<std::uint8_t>{}, 0.0,
                                variant == 1 || variant == 4 ? 40 : 0, "test", variant >= 3 ? 1.2 : 0.0);
    check_products(op, 0, 1, blocks);
  }
}

TEST_CASE("lanczos products: softmax attention's table of P, written by its first sweep, holds every block") {
  std::mt19937 rng(12);
  const int L = 300;
  std::vector<std::uint8_t> mask(static_cast<size_t>(L) * L, 0);
  std::bernoulli_distribution keep(0.6);
  for (int t = 0; t < L; ++t)
    for (int s = 0; s <= t; ++s) mask[static_cast<size_t>(t) * L + s] = s == 0 || s == t || keep(rng);
  const std::vector<int> blocks = {5, 127, 128, 129, 150, 256, 290};
  for (int variant = 0; variant < 3; ++variant) {  // 2: capped logits (Gemma-2)
    SoftmaxAttentionOperator op(gaussian(rng, {1, 1, L, 16}, 1.5), gaussian(rng, {1, 1, L, 16}, 1.5),
                                variant == 1 ? mask : std::vector<std::uint8_t>{}, 0.0, 0, "test",
                                variant == 2 ? 1.2 : 0.0);
    const Matrix T = op.dense_matrix(0, 0);
    DenseWorkspace ws;
    const auto P = channel_products(op, 0, 0, ws);
    // The table first (the engine's order): the sweep that makes the row statistics writes it.
    REQUIRE(P->cache(blocks, 1e9));
    P->prepare(blocks);
    for (int i : blocks) {
      CAPTURE(variant);
      CAPTURE(i);
      const BlockView v = P->cached_block(i);
      REQUIRE(v.data != nullptr);
      const Matrix H = T.block(i, 0, L - i, i);
      const Matrix C = Eigen::Map<const Matrix, 0, Eigen::OuterStride<>>(v.data, L - i, i, Eigen::OuterStride<>(v.ld));
      CHECK((C - H).norm() <= 1e-14 * H.norm());
      CHECK(P->frobenius2(i) == doctest::Approx(H.squaredNorm()).epsilon(1e-11));
    }
  }
}

TEST_CASE("lanczos products: softmax tables share one thread's storage — a superseded table is never read") {
  std::mt19937 rng(13);
  // Blocks whose table (rows [100, L) × keys [0, 160)) is less work than the blocks one by one.
  const int L = 260;
  const std::vector<int> blocks = {100, 130, 160};
  SoftmaxAttentionOperator a(gaussian(rng, {1, 1, L, 16}, 1.5), gaussian(rng, {1, 1, L, 16}, 1.5), {}, 0.0, 0, "a");
  SoftmaxAttentionOperator b(gaussian(rng, {1, 1, L, 16}, 1.5), gaussian(rng, {1, 1, L, 16}, 1.5), {}, 0.0, 0, "b");
  const Matrix Ta = a.dense_matrix(0, 0), Tb = b.dense_matrix(0, 0);
  DenseWorkspace ws;
  const auto Pa = channel_products(a, 0, 0, ws), Pb = channel_products(b, 0, 0, ws);
  REQUIRE(Pa->cache(blocks, 1e9));
  const double* first = Pa->cached_block(blocks[0]).data;
  REQUIRE(first != nullptr);
  // b's table takes the same storage (no fresh pages); a's is superseded and no longer viewed.
  REQUIRE(Pb->cache(blocks, 1e9));
  CHECK(Pb->cached_block(blocks[0]).data == first);
  for (int i : blocks) {
    CAPTURE(i);
    CHECK(Pa->cached_block(i).data == nullptr);
    const BlockView v = Pb->cached_block(i);
    REQUIRE(v.data != nullptr);
    const Matrix H = Tb.block(i, 0, L - i, i);
    const Matrix C = Eigen::Map<const Matrix, 0, Eigen::OuterStride<>>(v.data, L - i, i, Eigen::OuterStride<>(v.ld));
    CHECK((C - H).norm() <= 1e-14 * H.norm());
  }
  // A table taken on another thread is that thread's: this thread's b table stays valid.
  std::thread([&] {
    DenseWorkspace other;
    const auto Pc = channel_products(a, 0, 0, other);
    CHECK(Pc->cache(blocks, 1e9));
    CHECK(Pc->cached_block(blocks[0]).data != first);
  }).join();
  // a's blocks are still written out from q and k (what the engine does without a table).
  for (int i : blocks) {
    Matrix Hm(L - i, i);
    Pa->materialize_block(i, Hm);
    CHECK((Hm - Ta.block(i, 0, L - i, i)).norm() <= 1e-13 * Hm.norm());
  }
  CHECK(Pb->cached_block(blocks[1]).data != nullptr);
}

TEST_CASE("lanczos engine: whole spectra by QR or LQ first (aspect ratios 1.3–2.2) equal the dense SVD") {
  // A high-rank head: every block gets its whole spectrum. Blocks (L − i) / i = 2, 1.5, 1.31 (QR
  // first), 1.1 (dgesdd directly), and their mirror images (LQ first), each against the dense SVD
  // of the same block (check_engine: every value, the entropy-ESS, the tolerance-ESS).
  EssOptions o;
  o.tol = 1e-3;
  const int L = 600;
  const BenchCase bc = make_bench_case("long-random", L, 1, 8, 3);
  const std::vector<int> blocks = {200, 240, 260, 285, 315, 340, 360, 400};
  const Agreement a = check_engine(*bc.op, blocks, o);
  CHECK(a.whole == static_cast<long>(blocks.size()));
}

TEST_CASE("lanczos engine: after blocks given up on cost, the next ones go to the dense SVD (back-off)") {
  // A local head with a noisy tail (`ess bench --long` long-local; L = 768 here, to keep the test
  // short under the sanitizers): its blocks have dozens of values above τ without a gap, so the
  // block Krylov SVD gives most of them up once it has spent a dense SVD's cost. Without the
  // back-off it tries 19 of the 32 blocks and gives 15 up (at L = 1024, 18 and 15: the engine at
  // 0.7× the dense engine's speed); with it, 4 tries and 15 blocks skipped.
  EssOptions o;
  o.tol = 1e-3;
  const int L = 768;
  const BenchCase bc = make_bench_case("long-local", L, 1, 8, 0);
  std::vector<int> blocks;
  for (int j = 1; j <= 32; ++j) blocks.push_back(j * L / 33);
  LanczosStats with, without;
  o.lanczos.stats = &with;
  check_engine(*bc.op, blocks, o);  // against the dense SVD of every block
  // Without the back-off: only the counts (its blocks are the solver's or the dense SVD's, as
  // checked by the other tests).
  struct Counted : SpectrumSink {
    int blocks = 0;
    void block(int, const double*, int, double, bool) override {}
    void partial_block(int, const Partial&) override { ++blocks; }
  } counted;
  LanczosOptions opt = o.lanczos;
  opt.tol = o.tol;
  opt.stats = &without;
  opt.krylov_backoff = false;
  DenseWorkspace ws;
  channel_spectra(*bc.op, 0, 0, EngineKind::lanczos, blocks, 0.0, ws, counted, opt);
  CHECK(counted.blocks == 32);
  CAPTURE(without.krylov_tries);
  CAPTURE(without.krylov_over_cost);
  CAPTURE(with.krylov_tries);
  CAPTURE(with.krylov_over_cost);
  CAPTURE(with.krylov_skipped);
  CHECK(without.krylov_skipped == 0);
  CHECK(without.krylov_over_cost >= 8);
  CHECK(with.krylov_over_cost <= without.krylov_over_cost / 2);
  CHECK(with.krylov_skipped >= 8);
  CHECK(with.krylov_tries + with.krylov_skipped == without.krylov_tries);
}

TEST_CASE("lanczos engine: warm and cold starts, targeted and plain Krylov growth all match dense SVD") {
  // Every combination certifies the same tolerance-ESS as the dense SVD and its entropy intervals
  // contain the exact entropy-ESS (check_engine) on these softmax heads. (The warm start, off by
  // default, fails this on some mamba / deltanet blocks: see LanczosOptions::warm_start.)
  for (bool warm : {true, false})
    for (bool targeted : {true, false}) {
      CAPTURE(warm);
      CAPTURE(targeted);
      EssOptions o;
      o.tol = 1e-3;
      o.lanczos.compare_cost = false;
      o.lanczos.warm_start = warm;
      o.lanczos.krylov_targeted = targeted;
      Agreement total;
      for (const std::string name : {"long-sink", "long-diffuse", "long-induction", "attn-lowrank", "long-local"})
        for (int L : {300, 640}) {
          const BenchCase bc = make_bench_case(name, L, 1, 8, 5);
          std::vector<int> blocks;
          for (int j = 1; j <= 12; ++j) blocks.push_back(j * L / 13);
          const Agreement a = check_engine(*bc.op, blocks, o);
          total.certified += a.certified;
          total.partial += a.partial;
        }
      CHECK(total.partial > 40);
    }
}

TEST_CASE("lanczos engine: every family at its example length matches dense SVD (tolerance-ESS, entropy interval)") {
  EssOptions o;
  o.tol = 1e-3;
  o.lanczos.initial_k = 2;  // small k: partial spectra and k growth are exercised
  o.lanczos.full_fraction = 1.0;
  o.lanczos.compare_cost = false;
  for (const Family& f : families()) {
    const auto op = f.example(7);
    std::vector<int> blocks;
    for (int i = 1; i < op->seq_len(); ++i) blocks.push_back(i);
    check_engine(*op, blocks, o);
  }
}

TEST_CASE("lanczos engine: bench operators at several L match dense SVD — intervals contain the exact entropy") {
  // With the cost comparison (production) and without it (Krylov on every block it can run on:
  // partial spectra and intervals exercised at these small L).
  for (bool compare_cost : {true, false}) {
    CAPTURE(compare_cost);
    EssOptions o;
    o.tol = 1e-3;
    o.lanczos.initial_k = 4;
    o.lanczos.compare_cost = compare_cost;
    Agreement total;
    for (const std::string name : {"mamba", "gla", "deltanet", "attn-local", "attn-lowrank", "attn-random", "longconv",
                                   "long-local", "long-sink", "long-diffuse", "long-induction"})
      for (int L : {96, 257, 512}) {
        const BenchCase bc = make_bench_case(name, L, 1, 8, 3);
        std::vector<int> blocks;
        for (int j = 1; j <= 6; ++j) blocks.push_back(j * L / 7);
        blocks.push_back(1);
        blocks.push_back(L - 1);
        std::sort(blocks.begin(), blocks.end());
        const Agreement a = check_engine(*bc.op, blocks, o);
        total.certified += a.certified;
        total.partial += a.partial;
        total.whole += a.whole;
        total.ties += a.ties;
      }
    // The adaptive k really stops early on low-rank blocks, and the intervals were exercised.
    if (!compare_cost) CHECK(total.partial > 20);
    CHECK(total.whole > 20);
    CHECK(total.ties <= 2);
  }
}

TEST_CASE("lanczos engine: repeated and clustered singular values are all found (copy heads, wide clusters)") {
  // A block Krylov space of block width b holds at most b copies of a repeated singular value, and
  // takes a cluster of nearly equal values in at most b per step. Copy and induction heads give
  // blocks with dozens to hundreds of singular values equal (or nearly) to 1; a diffuse head with
  // head dimension d_k gives ~d_k nearly equal values above the threshold, more than a block. Each
  // once had certified blocks with too small a tolerance-ESS (up to 222 of 300 values missed), and
  // Ritz values above σ_1 from a basis that had lost its orthogonality.
  EssOptions o;
  o.tol = 1e-3;
  o.lanczos.compare_cost = false;  // the block Krylov solver on every block, not the dense SVD
  const int L = 1024;
  std::mt19937 rng(11);
  std::vector<std::unique_ptr<LayerOperator>> ops;
  // Query t copies key t − D exactly (a repeated text, D tokens apart; earlier queries: token 0),
  // or puts 0.97 there and spreads the rest over its past.
  for (int D : {40, 300})
    for (bool soft : {false, true}) {
      Tensor T({1, 1, L, L});
      for (int t = 0; t < L; ++t) {
        if (soft)
          for (int j = 0; j <= t; ++j) T.data[static_cast<size_t>(t) * L + j] = 0.03 / (t + 1);
        T.data[static_cast<size_t>(t) * L + (t >= D ? t - D : 0)] += soft ? 0.97 : 1.0;
      }
      ops.push_back(std::make_unique<DenseOperator>(std::move(T), "copy head"));
    }
  {  // Each key copied by at most one later query, chosen at random: values 1 and √(count).
    Tensor T({1, 1, L, L});
    std::vector<char> used(L, 0);
    for (int t = 0; t < L; ++t) {
      int j = 0;
      for (int tries = 0; tries < 20 && t > 0; ++tries) {
        const int c = std::uniform_int_distribution<int>(0, t - 1)(rng);
        if (!used[c]) {
          j = c;
          break;
        }
      }
      used[j] = 1;
      T.data[static_cast<size_t>(t) * L + j] = 1.0;
    }
    ops.push_back(std::make_unique<DenseOperator>(std::move(T), "matching head"));
  }
  {  // Diffuse softmax head with d_k = 128: content scores N(0, 0.1²).
    const int d = 128;
    Tensor q({1, 1, L, d}), k({1, 1, L, d});
    std::normal_distribution<double> normal(0.0, std::sqrt(0.1));
    for (auto& x : q.data) x = normal(rng);
    for (auto& x : k.data) x = normal(rng);
    ops.push_back(std::make_unique<SoftmaxAttentionOperator>(std::move(q), std::move(k), std::vector<std::uint8_t>{},
                                                             0.0, 0, "diffuse d_k 128"));
  }
  const std::vector<int> blocks = {186, 403, 528, 559, 714};
  long certified = 0;
  for (const auto& op : ops) certified += check_engine(*op, blocks, o).certified;
  CHECK(certified == static_cast<long>(ops.size() * blocks.size()));
  // The Spectra path (blocks not in memory) on the same operators: each certified block agrees.
  o.lanczos.max_block_bytes = 64;
  for (const auto& op : ops) check_engine(*op, {186, 528}, o);
}

TEST_CASE("lanczos engine: values under the Gram form's rounding are never reported, and intervals hold") {
  // Mamba channels whose blocks span 10⁻¹⁴·σ_1 and more: σ̃² are eigenvalues of BtᵀBt, good to
  // about s·ε·σ̃_1², so σ̃ under √(s·ε)·σ̃_1 are noise. Reported, they stood in for the exact values
  // they missed (4·10⁻⁷ reported as 6·10⁻¹⁴), and entropy intervals excluded the exact entropy by
  // 3·10⁻⁹; a block whose errors took up all the computed mass got the point interval [1, 1].
  EssOptions o;
  o.tol = 1e-3;
  o.lanczos.compare_cost = false;
  const MambaOperator op = wide_range_mamba();
  const Agreement a = check_engine(op, {50, 120, 226, 330, 400, 470}, o);
  CHECK(a.certified >= 12);
}

TEST_CASE("lanczos engine, Spectra path: no certificate from an unresolved value, none from an underflowed norm") {
  EssOptions o;
  o.tol = 1e-3;
  o.lanczos.max_block_bytes = 64;  // no block in memory: the Spectra solver on the products
  SUBCASE("values near the threshold resolved before they decide the count") {
    // The solver stopped at residuals of ‖H_i‖_F²·10⁻¹² (2.6·10⁻⁷ in σ² units here), and only the
    // last computed value was checked against τ: a σ̃ = 2.5·10⁻⁴ whose residual exceeded its σ̃²
    // certified a count of 6 where the exact 7th value is 1.07·10⁻³ (and counts of 8 where the
    // exact 9th is 2.2·10⁻³, errors 2·10⁻³ reported).
    const int L = 512, N = 16, C = 4;
    std::mt19937 rng(4);
    std::normal_distribution<double> normal(0.0, 1.0);
    std::uniform_real_distribution<double> u(0.0, 1.0);
    Tensor dt({1, C, L}), A({C, N}), B({1, L, N}), Cm({1, L, N});
    for (auto& v : dt.data) v = u(rng) < 0.1 ? 20.0 : 1e-4;  // bursts
    for (auto& v : A.data) v = -std::exp(2 * normal(rng));
    for (auto& v : B.data) v = normal(rng);
    for (auto& v : Cm.data) v = normal(rng);
    const MambaOperator op(dt, A, B, Cm, "bursty");
    std::vector<int> blocks;
    for (int i = 8; i < L; i += 8) blocks.push_back(i);
    const Agreement a = check_engine(op, blocks, o);
    MESSAGE("certified ", a.certified, " of ", 4 * blocks.size());
    CHECK(a.certified >= 150);
  }
  SUBCASE("a block whose squared norm underflows is not a zero block") {
    // dt·A = −500 on every step: every entry of every H_i is below 10⁻²¹⁷, ‖H_i‖_F² underflows
    // to 0, and so does every σ² the Gram operator gives. Reported before as a certified zero
    // block (entropy interval [0, 0] around an exact 1–6).
    const int L = 200, N = 4;
    std::mt19937 rng(5);
    std::normal_distribution<double> normal(0.0, 1.0);
    Tensor dt({1, 1, L}), A({1, N}), B({1, L, N}), Cm({1, L, N});
    for (auto& v : dt.data) v = 100.0;
    for (auto& v : A.data) v = -5.0;
    for (auto& v : B.data) v = normal(rng);
    for (auto& v : Cm.data) v = normal(rng);
    const MambaOperator op(dt, A, B, Cm, "underflow");
    const Agreement a = check_engine(op, {40, 100, 180}, o);
    CHECK(a.certified == 0);
  }
}

TEST_CASE("lanczos engine: ‖H_i‖_F of a block behind a gate of e^−700 is its norm, not 0") {
  // Every path across step 20 decays by e^−700: blocks 1…20 have ‖H_i‖_F ≈ 10⁻³⁰⁰, whose square
  // underflows. With the whole spectrum the norm comes from the values (as in the dense engine);
  // it was sqrt(0) = 0 beside nonzero values before 2026-12-03.
  const int L = 64, N = 4;
  std::mt19937 rng(8);
  std::normal_distribution<double> normal(0.0, 1.0);
  Tensor dt({1, 1, L}), A({1, N}), B({1, L, N}), Cm({1, L, N});
  for (int t = 0; t < L; ++t) dt.data[t] = t == 20 ? 700.0 : 0.05;
  for (auto& v : A.data) v = -1.0;
  for (auto& v : B.data) v = normal(rng);
  for (auto& v : Cm.data) v = normal(rng);
  OperatorLayer layer;
  layer.name = "reset";
  layer.op = std::make_unique<MambaOperator>(dt, A, B, Cm, "reset");
  EssOptions o;
  o.threads = 1;
  o.engine = EngineKind::dense;
  const LayerResult dense = compute_layer(layer, o);
  o.engine = EngineKind::lanczos;
  const LayerResult lz = compute_layer(layer, o);
  int tiny = 0;
  for (size_t k = 0; k < dense.frobenius.size(); ++k) {
    CAPTURE(k);
    REQUIRE(lz.status[k] == block_ok);
    CHECK(lz.frobenius[k] == doctest::Approx(dense.frobenius[k]).epsilon(1e-12));
    CHECK((lz.frobenius[k] > 0) == (dense.frobenius[k] > 0));
    tiny += dense.frobenius[k] > 0 && dense.frobenius[k] < 1e-154;
  }
  CHECK(tiny > 0);
}

TEST_CASE("lanczos engine: blocks not in memory go through the family's products (Spectra path)") {
  // max_block_bytes too small for any block or table: no block Krylov SVD on a written-out block,
  // no dense fallback; the products path must still agree with dense SVD.
  EssOptions o;
  o.tol = 1e-3;
  o.lanczos.initial_k = 4;
  o.lanczos.max_block_bytes = 64;
  // (long-diffuse's blocks have rank ~64 of at most 150 here: uncertified, with valid intervals.)
  long certified = 0;
  for (const std::string name : {"long-sink", "long-diffuse", "mamba"}) {
    const BenchCase bc = make_bench_case(name, 300, 1, 8, 2);
    certified += check_engine(*bc.op, {40, 100, 150, 220}, o).certified;
  }
  CHECK(certified >= 6);
}

TEST_CASE("lanczos engine: block tolerance mode certifies against τ·σ_1") {
  EssOptions o;
  o.tol = 1e-2;
  o.tol_mode = TolMode::block;
  o.lanczos.initial_k = 2;
  const BenchCase bc = make_bench_case("long-sink", 400, 1, 8, 1);
  check_engine(*bc.op, {50, 100, 200, 300}, o);
}

TEST_CASE("entropy_ess_bounds: contains the entropy of any tail consistent with the constraints") {
  std::mt19937 rng(3);
  std::uniform_real_distribution<double> u(0.0, 1.0);
  for (int trial = 0; trial < 200; ++trial) {
    const int r = 5 + static_cast<int>(u(rng) * 40), k = 1 + static_cast<int>(u(rng) * (r - 1));
    std::vector<double> s(r);
    for (auto& x : s) x = std::pow(u(rng), 3.0);
    std::sort(s.rbegin(), s.rend());
    double tail = 0;
    for (int j = k; j < r; ++j) tail += s[j] * s[j];
    const EssInterval e = entropy_ess_bounds(s.data(), k, r, tail, 0.0);
    const double h = entropy_ess(s.data(), r);
    CHECK(e.lower <= h);
    CHECK(h <= e.upper);
  }
  // Whole spectrum: a point.
  const std::vector<double> s = {3, 2, 1};
  const EssInterval e = entropy_ess_bounds(s.data(), 3, 3, 0.0, 0.0);
  CHECK(e.lower == doctest::Approx(entropy_ess(s.data(), 3)));
  CHECK(e.upper == doctest::Approx(entropy_ess(s.data(), 3)));
}

TEST_CASE("compute_layer with the lanczos engine stores intervals, counts and statuses") {
  OperatorLayer layer{"attn", 0, make_bench_case("long-local", 600, 2, 8, 2).op};
  EssOptions o;
  o.engine = EngineKind::lanczos;
  o.indices = "50:600:50";
  o.threads = 2;
  o.keep_sigma = 4;
  const LayerResult R = compute_layer(layer, o);
  EssOptions d = o;
  d.engine = EngineKind::dense;
  const LayerResult D = compute_layer(layer, d);
  CHECK(R.engine == "lanczos");
  REQUIRE(R.entropy_ess_lower.size() == R.entropy_ess.size());
  REQUIRE(R.sigma_count.size() == R.entropy_ess.size());
  for (size_t k = 0; k < R.entropy_ess.size(); ++k) {
    CAPTURE(k);
    CHECK(R.status[k] == block_ok);
    CHECK(R.tolerance_ess[k] == D.tolerance_ess[k]);
    CHECK(R.entropy_ess_lower[k] <= D.entropy_ess[k] * (1 + 1e-9));
    CHECK(D.entropy_ess[k] <= R.entropy_ess_upper[k] * (1 + 1e-9));
    CHECK(R.frobenius[k] == doctest::Approx(D.frobenius[k]).epsilon(1e-9));
    CHECK(R.sigma_tail[k] == doctest::Approx(D.sigma_tail[k]).epsilon(1e-6).scale(1e-12));
    CHECK(R.sigma[k * 4] == doctest::Approx(D.sigma[k * 4]).epsilon(1e-6));
  }
}

TEST_CASE("auto picks lanczos only for long unstructured operators at sparse blocks") {
  const BenchCase small = make_bench_case("attn-random", 512, 1, 8, 0);
  CHECK(choose_engine(*small.op, EngineKind::automatic, parse_indices("1:512:64", 512)) == EngineKind::dense);
  CHECK(choose_engine(*small.op, EngineKind::automatic, parse_indices("", 512)) == EngineKind::sweep);
  const BenchCase short_head = make_bench_case("long-sink", 1024, 1, 8, 0);
  CHECK(choose_engine(*short_head.op, EngineKind::automatic, parse_indices("64:1024:64", 1024)) == EngineKind::dense);
  const BenchCase mid = make_bench_case("long-sink", 2048, 1, 8, 0);
  CHECK(choose_engine(*mid.op, EngineKind::automatic, parse_indices("128:2048:128", 2048)) == EngineKind::lanczos);
  const BenchCase big = make_bench_case("long-sink", 8192, 1, 8, 0);
  CHECK(choose_engine(*big.op, EngineKind::automatic, parse_indices("256:8192:256", 8192)) == EngineKind::lanczos);
  CHECK(choose_engine(*big.op, EngineKind::automatic, parse_indices("", 8192)) == EngineKind::sweep);
  const BenchCase mamba = make_bench_case("mamba", 8192, 1, 8, 0);
  CHECK(choose_engine(*mamba.op, EngineKind::automatic, parse_indices("256:8192:256", 8192)) == EngineKind::structured);
}

}  // namespace ess
