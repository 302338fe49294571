// The C++ forward passes against the independent PyTorch reference (tools/reference/reference_forward.py)
// on the shipped tiny checkpoints: logits within 1e-4 relative, every captured operator's T within
// 1e-5 relative; plus bad checkpoints and token inputs.
#include <doctest/doctest.h>

#include <filesystem>
#include <fstream>

#include "libess/error.h"
#include "libess/hdf5.h"
#include "models/model.h"
#include "models/tokens.h"
#include "operators/registry.h"
#include "test_helpers.h"

using namespace ess;
namespace fs = std::filesystem;

namespace {
std::vector<std::string> fixtures() {
  std::vector<std::string> out;
  for (const auto& e : fs::directory_iterator(std::string(ESS_SOURCE_DIR) + "/data/checkpoints"))
    if (e.is_directory() && fs::exists(e.path() / "expected.h5")) out.push_back(e.path().string());
  std::sort(out.begin(), out.end());
  return out;
}
}  // namespace

TEST_CASE("every architecture matches the PyTorch reference: logits 1e-4, operators 1e-5") {
  const auto dirs = fixtures();
  REQUIRE(dirs.size() >= 5);
  for (const auto& dir : dirs) {
    CAPTURE(dir);
    auto model = models::load_causal_lm(dir);
    const TokenBatch batch = read_tokens_file(dir + "/tokens.txt", model->vocab_size());
    const models::ModelRun run = model->run(batch.tokens, true);
    // Logits.
    h5::Object ref = h5::open_file(dir + "/expected.h5");
    std::vector<std::int64_t> shape;
    const auto logits = ref.read_double("logits", &shape);
    REQUIRE(shape.size() == 3);
    const std::int64_t B = shape[0], L = shape[1], V = shape[2];
    REQUIRE(run.logits.size() == static_cast<size_t>(B));
    double max_ref = 0, max_diff = 0;
    for (std::int64_t b = 0; b < B; ++b)
      for (std::int64_t t = 0; t < L; ++t)
        for (std::int64_t v = 0; v < V; ++v) {
          const double r = logits[(b * L + t) * V + v];
          max_ref = std::max(max_ref, std::abs(r));
          max_diff = std::max(max_diff, std::abs(run.logits[b](t, v) - r));
        }
    CHECK(max_diff <= 1e-4 * max_ref);
    // Operators: same layers, same T.
    const auto expected = read_operator_file(dir + "/expected.h5");
    REQUIRE(expected.size() == run.layers.size());
    for (size_t k = 0; k < expected.size(); ++k) {
      CAPTURE(expected[k].name);
      const auto& a = *run.layers[k].op;
      const auto& e = *expected[k].op;
      CHECK(run.layers[k].name == expected[k].name);
      CHECK(a.family() == e.family());
      REQUIRE(a.channels() == e.channels());
      REQUIRE(a.batch() == e.batch());
      for (int b = 0; b < a.batch(); ++b)
        for (int c = 0; c < a.channels(); ++c) {
          const Matrix Ta = a.dense_matrix(b, c), Te = e.dense_matrix(b, c);
          CHECK((Ta - Te).cwiseAbs().maxCoeff() <= 1e-5 * std::max(1e-300, Te.cwiseAbs().maxCoeff()));
        }
      for (int i = 1; i < a.seq_len(); ++i) CHECK(a.tss(i) == e.tss(i));
    }
  }
}

TEST_CASE("bad checkpoints and token inputs name the file and tensor") {
  const std::string dir = ess::test::temp_dir("models_bad");
  const std::string src = std::string(ESS_SOURCE_DIR) + "/data/checkpoints/tiny-mamba";
  auto copy_fixture = [&](const std::string& name) {
    const std::string d = dir + "/" + name;
    fs::create_directories(d);
    for (const auto& e : fs::directory_iterator(src)) fs::copy_file(e.path(), d + "/" + e.path().filename().string());
    return d;
  };
  {
    const auto d = copy_fixture("config_shape");
    std::ifstream in(d + "/config.json");
    std::string cfg((std::istreambuf_iterator<char>(in)), {});
    cfg.replace(cfg.find("\"state_size\": 8"), 15, "\"state_size\": 6");
    std::ofstream(d + "/config.json") << cfg;
    CHECK_THROWS_WITH_AS(models::load_causal_lm(d), doctest::Contains("but config.json implies"), InputError);
  }
  {
    const auto d = copy_fixture("arch");
    std::ofstream(d + "/config.json") << R"({"architectures": ["GPT2LMHeadModel"]})";
    CHECK_THROWS_WITH_AS(models::load_causal_lm(d), doctest::Contains("MambaForCausalLM"), InputError);
  }
  {
    const auto d = copy_fixture("truncated");
    fs::resize_file(d + "/model.safetensors", fs::file_size(d + "/model.safetensors") - 100);
    CHECK_THROWS_WITH_AS(models::load_causal_lm(d), doctest::Contains("model.safetensors"), InputError);
  }
  {
    const auto d = copy_fixture("tokens");
    auto model = models::load_causal_lm(d);
    std::ofstream(d + "/range.txt") << "1 2 3\n4 5 999\n";
    CHECK_THROWS_WITH_AS(read_tokens_file(d + "/range.txt", model->vocab_size()), doctest::Contains("range.txt:2"),
                         InputError);
    std::ofstream(d + "/ragged.txt") << "1 2 3\n4 5\n";
    CHECK_THROWS_WITH_AS(read_tokens_file(d + "/ragged.txt", model->vocab_size()), doctest::Contains("same length"),
                         InputError);
    std::ofstream(d + "/words.txt") << "1 two 3\n";
    CHECK_THROWS_AS(read_tokens_file(d + "/words.txt", model->vocab_size()), InputError);
  }
  fs::remove_all(dir);
}

TEST_CASE("MQAR batches: keys from the lower half, values from the upper half, recall targets") {
  MqarSpec s = parse_mqar("kv=4,len=20,n=3,seed=5,vocab=40");
  const TokenBatch b = make_mqar(s, 96);
  REQUIRE(b.tokens.size() == 3);
  for (size_t k = 0; k < 3; ++k) {
    const auto& seq = b.tokens[k];
    REQUIRE(seq.size() == 20);
    std::map<int, int> kv;
    for (int p = 0; p < 8; p += 2) {
      CHECK(seq[p] >= 1);
      CHECK(seq[p] < 20);
      CHECK(seq[p + 1] >= 20);
      CHECK(seq[p + 1] < 40);
      kv[seq[p]] = seq[p + 1];
    }
    CHECK(kv.size() == 4);  // distinct keys
    int targets = 0;
    for (size_t p = 8; p < 20; ++p)
      if (b.target[k][p] >= 0) {
        ++targets;
        CHECK(kv.at(seq[p]) == b.target[k][p]);
        CHECK(seq[p + 1] == b.target[k][p]);
      }
    CHECK(targets == 6);
  }
  // A perfect predictor scores 1, a wrong one 0.
  std::vector<std::vector<int>> perfect(3, std::vector<int>(20, -7)), wrong = perfect;
  for (size_t k = 0; k < 3; ++k)
    for (size_t p = 0; p + 1 < 20; ++p) perfect[k][p] = b.tokens[k][p + 1];
  CHECK(mqar_accuracy(b, perfect) == 1.0);
  CHECK(mqar_accuracy(b, wrong) == 0.0);
  CHECK_THROWS_AS(parse_mqar("kv=4,len=5"), UsageError);
  CHECK_THROWS_AS(parse_mqar("kv=four"), UsageError);
  CHECK_THROWS_AS(parse_mqar("keys=4"), UsageError);
}
