// Conformance of every registered operator family (operators/family.h), driven by the registry:
// a new family is checked here as soon as its ESS_REGISTER_FAMILY line exists. For each family's
// example operator: materialize == apply, T causal, realization == T, every engine's block spectra
// == an independent Jacobi SVD of the materialized T, rank(H_i) ≤ min(TSS_i, i, L − i), and the
// pipeline's tolerance-ESS identical across engines.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <set>

#include "libess/compute.h"
#include "operators/family.h"
#include "operators/registry.h"
#include "test_helpers.h"

using namespace ess;
using ess::test::relative_error;

namespace {

std::vector<EngineKind> engines_for(const LayerOperator& op) {
  std::vector<EngineKind> e = {EngineKind::dense, EngineKind::sweep};
  if (op.realization_dim() > 0) e.push_back(EngineKind::structured);
  return e;
}

}  // namespace

TEST_CASE("families: the shipped families are registered (and not dropped by the linker)") {
  for (const char* name : {"dense", "softmax_attention", "linear_attention", "retention", "gla", "delta_net", "mamba",
                           "mamba2", "s4d", "conv"}) {
    CAPTURE(name);
    CHECK(find_family(name) != nullptr);
  }
  CHECK(find_family("hyena9000") == nullptr);
  const auto names = known_families();
  CHECK(std::is_sorted(names.begin(), names.end()));
  CHECK(std::set<std::string>(names.begin(), names.end()).size() == names.size());
  CHECK_THROWS_AS(register_family({"dense", "again", find_family("dense")->read, find_family("dense")->example}),
                  std::logic_error);
}

TEST_CASE("families: every registered family's example is its family, generic and reproducible") {
  for (const auto& f : families()) {
    CAPTURE(f.name);
    CHECK(!f.summary.empty());
    const auto op = f.example(1), again = f.example(1), other = f.example(2);
    CHECK(op->family() == f.name);
    CHECK(op->batch() >= 1);
    CHECK(op->channels() >= 1);
    CHECK(op->seq_len() >= 8);
    CHECK(relative_error(op->dense_matrix(0, 0), again->dense_matrix(0, 0)) == 0.0);
    CHECK(relative_error(op->dense_matrix(0, 0), other->dense_matrix(0, 0)) > 1e-3);
  }
}

TEST_CASE(
    "families: every registered family's materialized T equals its own apply, is causal, and its "
    "realization reproduces T") {
  std::mt19937 rng(7);
  for (const auto& f : families()) {
    CAPTURE(f.name);
    const auto op = f.example(3);
    for (int b = 0; b < op->batch(); ++b)
      for (int c = 0; c < op->channels(); ++c) {
        CAPTURE(b);
        CAPTURE(c);
        const Matrix T = op->dense_matrix(b, c);
        CHECK(T.norm() > 0);
        CHECK(T.triangularView<Eigen::StrictlyUpper>().toDenseMatrix().norm() == 0.0);
        const Vector x = ess::test::random_matrix(rng, op->seq_len(), 1);
        CHECK(relative_error(T * x, op->apply(b, c, x)) < 1e-12);
        const auto r = op->realization(b, c);
        if (op->realization_dim() == 0) {
          CHECK(r == nullptr);
          continue;
        }
        REQUIRE(r != nullptr);
        CHECK(r->state_dim() == op->realization_dim());
        CHECK(r->length() == op->seq_len());
        CHECK(relative_error(materialize(*r), T) < 1e-12);
        CHECK(relative_error(run_recurrence(*r, x), op->apply(b, c, x)) < 1e-12);
      }
  }
}

TEST_CASE(
    "families: every engine's block spectra of every registered family equal a Jacobi SVD of T, and "
    "rank(H_i) <= min(TSS_i, i, L - i)") {
  for (const auto& f : families()) {
    CAPTURE(f.name);
    const auto op = f.example(4);
    const int L = op->seq_len();
    const std::vector<int> indices = parse_indices("", L);
    DenseWorkspace ws;
    for (int b = 0; b < op->batch(); ++b)
      for (int c = 0; c < op->channels(); ++c) {
        const Matrix T = op->dense_matrix(b, c);
        for (EngineKind engine : engines_for(*op)) {
          CAPTURE(to_string(engine));
          ess::test::CollectSink sink;
          channel_spectra(*op, b, c, engine, indices, 1e-14, ws, sink);
          REQUIRE(sink.sigma.size() == indices.size());
          for (size_t p = 0; p < indices.size(); ++p) {
            const int i = indices[p];
            CAPTURE(i);
            const auto ref = ess::test::reference_sigma(T, i);
            const double s1 = ref.empty() ? 0.0 : ref[0];
            const auto& got = sink.sigma[p];
            CHECK(sink.ok[p]);
            for (size_t k = 0; k < ref.size(); ++k) {
              const double g = k < got.size() ? got[k] : 0.0;
              CHECK(std::abs(g - ref[k]) <= 1e-9 * std::max(s1, 1.0));
            }
            for (size_t k = ref.size(); k < got.size(); ++k) CHECK(std::abs(got[k]) <= 1e-9 * std::max(s1, 1.0));
            if (engine == EngineKind::dense) {
              int rank = 0;
              for (double s : ref) rank += s > 1e-10 * std::max(s1, 1e-300);
              CHECK(rank <= std::min({op->tss(i), i, L - i}));
            }
          }
        }
      }
  }
}

TEST_CASE("families: the pipeline's tolerance-ESS of every registered family is the same with every engine") {
  for (const auto& f : families()) {
    CAPTURE(f.name);
    OperatorLayer layer{f.name, 0, f.example(5)};
    EssOptions o;
    o.engine = EngineKind::dense;
    o.tol = 1e-3;
    o.threads = 2;
    const LayerResult dense = compute_layer(layer, o);
    CHECK(dense.family == f.name);
    for (EngineKind engine : engines_for(*layer.op)) {
      CAPTURE(to_string(engine));
      o.engine = engine;
      const LayerResult R = compute_layer(layer, o);
      CHECK(R.engine == std::string(to_string(engine)));
      CHECK(R.tss == dense.tss);
      CHECK(R.tolerance_ess == dense.tolerance_ess);
      for (size_t k = 0; k < R.entropy_ess.size(); ++k)
        CHECK(R.entropy_ess[k] == doctest::Approx(dense.entropy_ess[k]).epsilon(1e-9));
    }
  }
}
