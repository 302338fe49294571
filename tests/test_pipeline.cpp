// The measuring pipeline (libess/pipeline.h) and the streaming results writer (libess/results_io.h):
// results equal compute_layer's, progress reports every channel of every layer, errors name the
// layer and the option, the streamed file equals write_results' byte for byte in every dataset and
// attribute, and an uncommitted writer leaves nothing behind.
#include <doctest/doctest.h>

#include <cmath>
#include <filesystem>
#include <limits>

#include "libess/error.h"
#include "libess/hdf5.h"
#include "libess/pipeline.h"
#include "libess/results_io.h"
#include "test_helpers.h"

using namespace ess;

namespace {

std::vector<OperatorLayer> random_layers(std::mt19937& rng) {
  std::vector<OperatorLayer> layers;
  for (int k = 0; k < 3; ++k) {
    const int L = 8 + 2 * k, B = 1 + k % 2, C = 2 + k;
    std::vector<Matrix> Ts;
    for (int m = 0; m < B * C; ++m) {
      Matrix T = ess::test::random_matrix(rng, L, L);
      Ts.push_back(T.triangularView<Eigen::Lower>());
    }
    layers.push_back({"blocks." + std::to_string(k) + ".mixer", 10 - k,
                      std::make_unique<ess::test::ExplicitOperator>(B, C, std::move(Ts))});
  }
  return layers;
}

struct Collect : ResultSink {
  std::vector<LayerResult> results;
  void add(LayerResult&& r) override { results.push_back(std::move(r)); }
};

// Every attribute and dataset of two HDF5 groups (recursively) holds the same values.
void check_same_objects(const h5::Object& a, const h5::Object& b, const std::vector<std::string>& skip_attrs) {
  CAPTURE(a.path());
  CHECK(a.attr_names() == b.attr_names());
  for (const auto& n : a.attr_names())
    if (std::find(skip_attrs.begin(), skip_attrs.end(), n) == skip_attrs.end()) {
      CAPTURE(n);
      CHECK(a.attr_as_text(n) == b.attr_as_text(n));
    }
  REQUIRE(a.children() == b.children());
  for (const auto& c : a.children()) {
    CAPTURE(c);
    if (a.is_group(c)) {
      check_same_objects(a.group(c), b.group(c), skip_attrs);
      continue;
    }
    CHECK(a.shape(c) == b.shape(c));
    CHECK(static_cast<int>(a.dtype(c)) == static_cast<int>(b.dtype(c)));
    const auto x = a.read_double(c), y = b.read_double(c);
    REQUIRE(x.size() == y.size());
    for (size_t k = 0; k < x.size(); ++k) CHECK(((x[k] == y[k]) || (std::isnan(x[k]) && std::isnan(y[k]))));
  }
}

}  // namespace

TEST_CASE("pipeline: measure_all gives compute_layer's results in order and reports every channel") {
  std::mt19937 rng(11);
  const auto layers = random_layers(rng);
  EssOptions o;
  o.engine = EngineKind::dense;
  o.keep_sigma = 3;
  o.threads = 2;
  std::vector<MeasureProgress> seen;
  const Pipeline pipeline(o, [&](const MeasureProgress& p) { seen.push_back(p); });
  const auto results = pipeline.measure_all(layers);
  REQUIRE(results.size() == layers.size());
  long channels = 0;
  for (size_t k = 0; k < layers.size(); ++k) {
    const LayerResult ref = compute_layer(layers[k], o);
    CHECK(results[k].name == layers[k].name);
    CHECK(results[k].layer_index == layers[k].layer_index);
    CHECK(results[k].tolerance_ess == ref.tolerance_ess);
    CHECK(results[k].entropy_ess == ref.entropy_ess);
    CHECK(results[k].sigma == ref.sigma);
    channels += static_cast<long>(layers[k].op->batch()) * layers[k].op->channels();
  }
  REQUIRE(static_cast<long>(seen.size()) == channels);
  for (size_t n = 0; n < seen.size(); ++n) {
    const auto& p = seen[n];
    CHECK(p.layers == 3);
    CHECK(p.name == layers[p.layer].name);
    CHECK(p.total == static_cast<long>(layers[p.layer].op->batch()) * layers[p.layer].op->channels());
    CHECK(p.done >= 1);
    CHECK(p.done <= p.total);
    if (n > 0) CHECK(p.layer >= seen[n - 1].layer);
  }
  CHECK(seen.back().done == seen.back().total);

  // A sink receives the same results as they are measured; the consuming overload frees operators.
  Collect sink;
  auto owned = random_layers(rng);
  const auto expect = pipeline.measure_all(owned);
  pipeline.measure_all(std::move(owned), sink);
  REQUIRE(sink.results.size() == 3);
  for (size_t k = 0; k < 3; ++k) CHECK(sink.results[k].tolerance_ess == expect[k].tolerance_ess);
  for (const auto& layer : owned) CHECK(layer.op == nullptr);  // NOLINT(bugprone-use-after-move): documented
}

TEST_CASE("pipeline: invalid options and layer errors name the option in library terms, and the layer") {
  EssOptions bad;
  bad.keep_sigma = -1;
  try {
    Pipeline p(bad);
    FAIL("no error");
  } catch (const UsageError& e) {
    CHECK(std::string(e.what()) == "keep_sigma must be ≥ 0");
    CHECK(e.options() == std::vector<std::string>{"keep_sigma"});
    CHECK(e.message([](const std::string& o) { return "--" + o; }) == "--keep_sigma must be ≥ 0");
  }
  std::mt19937 rng(12);
  const auto layers = random_layers(rng);
  EssOptions o;
  o.indices = "50:60";
  try {
    Pipeline(o).measure_all(layers);
    FAIL("no error");
  } catch (const UsageError& e) {
    const std::string m = e.what();
    CHECK(m.rfind("layer 'blocks.0.mixer': indices '50:60' selects no block", 0) == 0);
    CHECK(e.options() == std::vector<std::string>{"indices"});
    CHECK(e.code() == ExitCode::usage);
  }
  o.indices = "";
  o.engine = EngineKind::structured;  // dense operators have no realization
  try {
    Pipeline(o).measure(layers[1], 1, 3);
    FAIL("no error");
  } catch (const UsageError& e) {
    const std::string m = e.what();
    CHECK(m.find("layer 'blocks.1.mixer': family dense has no state-space realization") == 0);
    CHECK(e.options() == std::vector<std::string>{"engine"});
  }
  // Library messages never spell a command-line flag.
  for (auto fn : {+[] { parse_tol_mode("x"); }, +[] { parse_engine("x"); }, +[] { parse_indices("a:b", 8); }}) {
    try {
      fn();
      FAIL("no error");
    } catch (const UsageError& e) {
      CHECK(std::string(e.what()).find("--") == std::string::npos);
      CHECK(e.options().size() == 1);
    }
  }
}

TEST_CASE("results writer: streamed layers give the same file as write_results — no commit, no file") {
  std::mt19937 rng(13);
  const auto layers = random_layers(rng);
  EssOptions o;
  o.keep_sigma = 4;
  const Pipeline pipeline(o);
  const auto results = pipeline.measure_all(layers);
  const std::string dir = ess::test::temp_dir("results_writer");
  const Provenance prov{"ops.h5", "abc123", "operator file", "", 0.75, ""};
  write_results(dir + "/whole.h5", results, prov, "ess compute test");
  {
    ResultsWriter writer(dir + "/streamed.h5", "ess compute test");
    pipeline.measure_all(layers, writer);
    CHECK(writer.layers_written() == 3);
    CHECK(!std::filesystem::exists(dir + "/streamed.h5"));  // only the temporary exists until commit
    writer.commit(prov);
    CHECK_THROWS_AS(writer.commit(prov), std::logic_error);
  }
  const h5::Object a = h5::open_file(dir + "/whole.h5"), b = h5::open_file(dir + "/streamed.h5");
  check_same_objects(a, b, {"created", "seconds"});
  const auto back = read_results(dir + "/streamed.h5");
  CHECK(back.provenance.mqar_accuracy == 0.75);
  REQUIRE(back.layers.size() == 3);
  CHECK(back.layers[0].name == "blocks.2.mixer");  // sorted by layer_index
  {
    ResultsWriter writer(dir + "/abandoned.h5", "test");
    writer.add(LayerResult(results[0]));
  }
  CHECK(!std::filesystem::exists(dir + "/abandoned.h5"));
  size_t files = 0;
  for (const auto& entry : std::filesystem::directory_iterator(dir)) files += entry.is_regular_file();
  CHECK(files == 2);  // whole.h5 and streamed.h5: no temporary left behind
  std::filesystem::remove_all(dir);
}

TEST_CASE("results writer: the /model group (predictions) round-trips — files without it read as before") {
  std::mt19937 rng(5);
  const auto layers = random_layers(rng);
  const Pipeline pipeline{EssOptions{}};
  const auto results = pipeline.measure_all(layers);
  const std::string dir = ess::test::temp_dir("results_predictions");
  const Provenance prov{"ckpt", "abc", "tokens t.txt (2 × 3)", "LlamaForCausalLM", -1, ""};
  const double nan = std::numeric_limits<double>::quiet_NaN();
  Predictions p;
  p.batch = 2, p.seq_len = 3, p.vocab_size = 10;
  p.input_ids = {1, 2, 3, 4, 5, 6};
  p.argmax = {2, 0, 9, 5, 6, 7};
  p.logprobs = {std::log(0.5), std::log(0.25), nan, std::log(0.125), 0.0, nan};
  set_loss(p);
  CHECK(p.loss == doctest::Approx(-(std::log(0.5) + std::log(0.25) + std::log(0.125)) / 4).epsilon(1e-15));
  CHECK(p.perplexity == doctest::Approx(std::exp(p.loss)).epsilon(1e-15));
  auto write = [&](const std::string& path, const Predictions* pred) {
    ResultsWriter writer(path, "test");
    for (const auto& R : results) writer.write(R);
    if (pred) writer.write_predictions(*pred);
    writer.commit(prov);
  };
  write(dir + "/with.h5", &p);
  write(dir + "/without.h5", nullptr);
  const ResultsFile with = read_results(dir + "/with.h5"), without = read_results(dir + "/without.h5");
  REQUIRE(with.predictions.present());
  CHECK(with.predictions.input_ids == p.input_ids);
  CHECK(with.predictions.argmax == p.argmax);
  CHECK(with.predictions.vocab_size == 10);
  CHECK(with.predictions.logprobs[1] == p.logprobs[1]);
  CHECK(std::isnan(with.predictions.logprobs[2]));
  CHECK(with.predictions.loss == p.loss);
  CHECK(!without.predictions.present());
  CHECK(without.layers.size() == with.layers.size());
  const h5::Object root = h5::open_file(dir + "/with.h5");
  CHECK(root.group("model").attr_double("perplexity") == p.perplexity);
  CHECK(root.group("model").attr_int("scored_tokens") == 4);

  // Inconsistent sizes are a programming error; bad stored values are bad input naming /model.
  {
    Predictions short_p = p;
    short_p.argmax.pop_back();
    ResultsWriter writer(dir + "/bad.h5", "test");
    CHECK_THROWS_AS(writer.write_predictions(short_p), std::invalid_argument);
  }
  auto bad = [&](Predictions q, const char* what) {
    write(dir + "/bad.h5", &q);
    CHECK_THROWS_WITH_AS(read_results(dir + "/bad.h5"), doctest::Contains(what), InputError);
  };
  Predictions q = p;
  q.logprobs[0] = 0.5;  // not a log-probability
  bad(q, "/model/logprobs");
  q = p;
  q.logprobs[3] = nan;  // NaN before the last position
  bad(q, "/model/logprobs");
  q = p;
  q.argmax[4] = 10;  // outside the vocabulary
  bad(q, "/model/argmax");
  std::filesystem::remove_all(dir);
}
