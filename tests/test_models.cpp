// The C++ forward passes against the independent PyTorch reference (tools/reference/reference_forward.py)
// on the shipped tiny checkpoints: logits within 1e-4 relative, every captured operator's T within
// 1e-5 relative; every registered architecture has such a fixture; streaming capture; declared
// weights (validation, loading by role, what inspect shows); bad checkpoints and token inputs.
#include <doctest/doctest.h>

#include <array>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <set>

#include "libess/block_products.h"
#include "libess/error.h"
#include "libess/hdf5.h"
#include "libess/parallel.h"
#include "models/model.h"
#include "models/models.h"
#include "models/tokens.h"
#include "operators/registry.h"
#include "operators/softmax_attention.h"
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
    // Predictions: argmax and next-token log-probabilities from the reference's logits
    // (log-softmax written out here in long double), NaN at the last position.
    REQUIRE(run.logprobs.size() == static_cast<size_t>(B));
    double lp_diff = 0;
    for (std::int64_t b = 0; b < B; ++b) {
      REQUIRE(run.logprobs[b].size() == static_cast<size_t>(L));
      CHECK(std::isnan(run.logprobs[b][L - 1]));
      for (std::int64_t t = 0; t < L; ++t) {
        const double* row = &logits[(b * L + t) * V];
        CHECK(run.argmax[b][t] == std::max_element(row, row + V) - row);
        if (t + 1 == L) continue;
        long double z = 0;
        for (std::int64_t v = 0; v < V; ++v) z += std::exp(static_cast<long double>(row[v]));
        const double want = static_cast<double>(row[batch.tokens[b][t + 1]] - std::log(z));
        lp_diff = std::max(lp_diff, std::abs(run.logprobs[b][t] - want));
      }
    }
    CHECK(lp_diff <= 1e-9);
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

TEST_CASE("next-token log-probabilities: stable log-softmax for logits far beyond exp's range") {
  // Hidden states of one dimension, head rows = the logits per unit of x: at x = 1 the logits are
  // (s, s, 0), at x = −1 (−s, −s, 0); exp(±s) overflows a double for s ≥ 710.
  for (double s : {1.0, 800.0, 1e5, 1e300}) {
    CAPTURE(s);
    RowMatrix head(3, 1);
    head << s, s, 0;
    Matrix X(4, 1);
    X << 1, 1, -1, 1;
    const models::Tokens tokens{{2, 1, 0, 2}};
    models::ModelRun out;
    out.inputs = &tokens;
    models::finish_logits(X, head, true, out);
    REQUIRE(out.logprobs.size() == 1);
    const auto& lp = out.logprobs[0];
    const double log2 = std::log(2.0);
    // t = 0: logits (s, s, 0), next token 1 → −log(2 + e^−s).
    CHECK(lp[0] == doctest::Approx(-log2 - std::log1p(std::exp(-s) / 2)).epsilon(1e-15));
    // t = 1: logits (s, s, 0), next token 0 (x = −1 at t = 2 does not matter: causal).
    CHECK(lp[1] == doctest::Approx(-log2 - std::log1p(std::exp(-s) / 2)).epsilon(1e-15));
    // t = 2: logits (−s, −s, 0), next token 2 → −log(1 + 2e^−s).
    CHECK(lp[2] == doctest::Approx(-std::log1p(2 * std::exp(-s))).epsilon(1e-15));
    CHECK(std::isnan(lp[3]));
    CHECK(out.argmax[0] == std::vector<int>{0, 0, 2, 0});
    for (int t = 0; t < 3; ++t) CHECK(std::isfinite(lp[t]));
  }
  // The hidden states must belong to the tokens being run.
  models::ModelRun out;
  RowMatrix head = RowMatrix::Ones(3, 1);
  CHECK_THROWS_AS(models::finish_logits(Matrix::Ones(2, 1), head, false, out), std::logic_error);
}

TEST_CASE("every registered architecture has a fixture with expected outputs") {
  std::set<std::string> covered;
  for (const auto& dir : fixtures())
    covered.insert(st::read_config_json(dir + "/config.json")["architectures"][0].get<std::string>());
  const auto archs = models::supported_architectures();
  REQUIRE(archs.size() >= 6);
  for (const auto& a : archs) {
    CAPTURE(a);
    CHECK(covered.count(a) == 1);  // add data/checkpoints/tiny-<arch>/ (CONTRIBUTING.md, "Adding an architecture")
  }
  for (const auto& a : covered) CHECK(std::find(archs.begin(), archs.end(), a) != archs.end());
}

TEST_CASE("streaming: each layer is handed over once, in order, and the result equals run()") {
  for (const auto& dir : fixtures()) {
    CAPTURE(dir);
    auto model = models::load_causal_lm(dir);
    const TokenBatch batch = read_tokens_file(dir + "/tokens.txt", model->vocab_size());
    const models::ModelRun all = model->run(batch.tokens, true);
    std::vector<OperatorLayer> got;
    const models::ModelRun streamed = model->stream(
        batch.tokens,
        [&](OperatorLayer&& layer) {
          // Block indices in order; a hybrid block with two mixers hands over two with the same index.
          const int before = got.empty() ? -1 : got.back().layer_index;
          CHECK((layer.layer_index == before + 1 ||
                 (layer.layer_index == before && model->num_mixers() > model->num_layers())));
          REQUIRE(layer.op != nullptr);
          got.push_back(std::move(layer));
        },
        true);
    CHECK(streamed.layers.empty());
    REQUIRE(got.size() == all.layers.size());
    CHECK(static_cast<int>(got.size()) == model->num_mixers());
    CHECK(got.back().layer_index == model->num_layers() - 1);
    CHECK(streamed.argmax == all.argmax);
    REQUIRE(streamed.logprobs.size() == all.logprobs.size());
    for (size_t b = 0; b < all.logprobs.size(); ++b)
      for (size_t t = 0; t < all.logprobs[b].size(); ++t)
        CHECK((streamed.logprobs[b][t] == all.logprobs[b][t] ||
               (std::isnan(streamed.logprobs[b][t]) && std::isnan(all.logprobs[b][t]))));
    REQUIRE(streamed.logits.size() == all.logits.size());
    for (size_t b = 0; b < all.logits.size(); ++b) CHECK(streamed.logits[b] == all.logits[b]);
    for (size_t k = 0; k < got.size(); ++k) {
      CHECK(got[k].name == all.layers[k].name);
      CHECK(got[k].op->dense_matrix(0, 0) == all.layers[k].op->dense_matrix(0, 0));
    }
    // Tokens outside the vocabulary or ragged batches are refused before any work.
    CHECK_THROWS_WITH_AS(model->run({{0, model->vocab_size()}}), doctest::Contains("outside the vocabulary"),
                         InputError);
    CHECK_THROWS_WITH_AS(model->run({{0, 1}, {0}}), doctest::Contains("same length"), InputError);
  }
}

TEST_CASE("declared weights: every fixture tensor is declared, present and consumed") {
  for (const auto& dir : fixtures()) {
    CAPTURE(dir);
    auto model = models::open_causal_lm(dir);
    const auto& W = model->weights();
    CHECK(W.undeclared().empty());  // the reference forward refuses unused tensors too
    int ok = 0;
    for (const auto& c : W.check()) {
      CAPTURE(c.name);
      CHECK(!c.problem());
      ok += c.state == models::WeightCheck::State::ok;
    }
    CHECK(ok == static_cast<int>(W.checkpoint().names().size()));
    // The architecture's roles are unique and patterns of per-layer weights name the layer.
    std::set<std::string> roles;
    for (const auto& d : W.declarations().list()) {
      CHECK(roles.insert(d.role).second);
      CHECK((d.names[0].find("{l}") != std::string::npos) == d.per_layer);
    }
    CHECK(roles.count("embed") == 1);
    CHECK(roles.count("lm_head") == 1);
  }
}

namespace {

// A safetensors file of F64 tensors (name → shape, filled with 0.5).
void write_f64_safetensors(const std::string& path, const std::map<std::string, std::vector<std::int64_t>>& tensors) {
  nlohmann::json header = nlohmann::json::object();
  std::string buffer;
  for (const auto& [name, shape] : tensors) {
    std::int64_t n = 1;
    for (auto d : shape) n *= d;
    const size_t begin = buffer.size();
    for (std::int64_t k = 0; k < n; ++k) {
      const double v = 0.5;
      char bytes[8];
      std::memcpy(bytes, &v, 8);
      buffer.append(bytes, 8);
    }
    header[name] = {{"dtype", "F64"}, {"shape", shape}, {"data_offsets", {begin, buffer.size()}}};
  }
  std::string h = header.dump();
  while (h.size() % 8) h += ' ';
  std::uint64_t len = h.size();
  std::ofstream out(path, std::ios::binary);
  out.write(reinterpret_cast<const char*>(&len), 8);
  out << h << buffer;
}

}  // namespace

TEST_CASE("declared weights: conditions, alternatives, optional, per-layer masks and items") {
  const std::string dir = ess::test::temp_dir("models_decls");
  write_f64_safetensors(dir + "/model.safetensors", {{"emb.alt", {4, 2}},
                                                     {"blk.0.w", {2, 2}},
                                                     {"blk.1.w", {2, 3}},
                                                     {"blk.1.attn", {2}},
                                                     {"blk.0.e.0", {1}},
                                                     {"blk.0.e.1", {1}},
                                                     {"blk.1.e.0", {1}},
                                                     {"blk.0.b", {2}},
                                                     {"stray", {1}}});
  models::ModelWeights W(dir);
  models::WeightDecls d(2);
  d.global("embed", "emb", {4, 2}).or_named("emb.alt");
  d.layer("w", "blk.{l}.w", {2, 2});
  d.layer("bias", "blk.{l}.b", {2}).when(false, "use_bias");
  d.layer("attn", "blk.{l}.attn", {2}).only_in_layers({false, true}, "attention layers");
  d.layer("expert", "blk.{l}.e.{i}", {1}).repeated(2);
  d.global("head", "head", {4, 2}).optional("tied");
  W.declare(d);
  using State = models::WeightCheck::State;
  std::map<std::string, State> state;
  for (const auto& c : W.check()) state[c.name] = c.state;
  CHECK(state.at("emb.alt") == State::ok);  // the alternative spelling is found
  CHECK(state.at("blk.0.w") == State::ok);
  CHECK(state.at("blk.1.w") == State::wrong_shape);
  CHECK(state.at("blk.0.b") == State::off);
  CHECK(state.at("blk.0.attn") == State::off);
  CHECK(state.at("blk.1.attn") == State::ok);
  CHECK(state.at("blk.0.e.1") == State::ok);
  CHECK(state.at("blk.1.e.1") == State::missing);
  CHECK(state.at("head") == State::off);
  // Not claimed: a tensor nobody declares, and one whose declaration is off (use_bias false).
  CHECK(W.undeclared() == std::vector<std::string>{"blk.0.b", "stray"});
  CHECK_THROWS_WITH_AS(
      W.validate(), doctest::Contains("tensor 'blk.1.w' has shape [2, 3], but config.json implies [2, 2]"), InputError);
  CHECK(W.has("embed"));
  CHECK(!W.has("head"));
  CHECK(!W.has("attn", 0));
  CHECK(W.has("attn", 1));
  CHECK(W.load("embed").shape == std::vector<std::int64_t>{4, 2});
  const models::LoadedWeights l0 = W.load_layer(0);
  CHECK(l0.has("w"));
  CHECK(!l0.has("attn"));
  CHECK(l0.has("expert", 1));
  CHECK(l0.matrix("w").rows() == 2);
  CHECK(l0.vector("expert", 1)(0) == 0.5);
  CHECK_THROWS_AS(l0.matrix("attn"), std::logic_error);   // absent: the forward asks has() first
  CHECK_THROWS_AS(W.load("nonsense"), std::logic_error);  // undeclared role: a programming error
  CHECK_THROWS_WITH_AS(W.load_layer(1), doctest::Contains("blk.1.w"), InputError);
  CHECK_THROWS_AS(d.global("embed", "x", {1}), std::logic_error);  // roles are unique
  fs::remove_all(dir);
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
    std::ofstream(d + "/config.json") << R"({"architectures": ["BertForMaskedLM"]})";
    CHECK_THROWS_WITH_AS(models::load_causal_lm(d), doctest::Contains("MambaForCausalLM"), InputError);
  }
  {
    const auto d = copy_fixture("untied");
    std::ifstream in(d + "/config.json");
    std::string cfg((std::istreambuf_iterator<char>(in)), {});
    const std::string tied = "\"tie_word_embeddings\": true";
    cfg.replace(cfg.find(tied), tied.size(), "\"tie_word_embeddings\": false");
    std::ofstream(d + "/config.json") << cfg;
    CHECK_THROWS_WITH_AS(models::load_causal_lm(d),
                         doctest::Contains("no tensor 'lm_head.weight' (config.json implies shape [96, 32]; "
                                           "tie_word_embeddings is false)"),
                         InputError);
    // open_causal_lm does not check: inspect shows the problem.
    auto model = models::open_causal_lm(d);
    bool missing = false;
    for (const auto& c : model->weights().check())
      missing = missing || (c.name == "lm_head.weight" && c.state == models::WeightCheck::State::missing);
    CHECK(missing);
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

TEST_CASE("attention architectures: unsupported config options and inputs are refused, naming file and option") {
  const std::string dir = ess::test::temp_dir("models_refused");
  // A copy of fixture `name` with config.json fields changed.
  auto variant = [&](const std::string& name, const nlohmann::json& changes) {
    const std::string src = std::string(ESS_SOURCE_DIR) + "/data/checkpoints/" + name;
    const std::string d = dir + "/" + name + std::to_string(std::hash<std::string>()(changes.dump()));
    fs::create_directories(d);
    for (const auto& e : fs::directory_iterator(src)) fs::copy_file(e.path(), d + "/" + e.path().filename().string());
    nlohmann::json cfg = st::read_config_json(d + "/config.json");
    for (const auto& [k, v] : changes.items()) cfg[k] = v;
    std::ofstream(d + "/config.json") << cfg.dump(2);
    return d;
  };
  struct Case {
    std::string fixture;
    nlohmann::json changes;
    std::string message;
  };
  const std::vector<Case> cases = {
      {"tiny-gpt2",
       {{"scale_attn_by_inverse_layer_idx", true}},
       "scale_attn_by_inverse_layer_idx true is not supported"},
      {"tiny-gpt2", {{"add_cross_attention", true}}, "add_cross_attention"},
      {"tiny-gpt2", {{"activation_function", "quick_gelu"}}, "activation_function 'quick_gelu' is not supported"},
      {"tiny-gpt-neox", {{"rope_scaling", {{"type", "linear"}, {"factor", 2.0}}}}, "rope scaling is not supported"},
      {"tiny-phi", {{"qk_layernorm", true}}, "qk_layernorm true is not supported"},
      {"tiny-phi", {{"partial_rotary_factor", 0.2}}, "3 rotary features"},  // int(16 · 0.2) = 3: odd
      {"tiny-qwen2", {{"use_sliding_window", true}}, "use_sliding_window true is not supported"},
      {"tiny-qwen3", {{"use_sliding_window", true}}, "use_sliding_window true is not supported"},
      {"tiny-gemma2", {{"layer_types", {"sliding_attention"}}}, "layer_types must list one type per layer"},
      {"tiny-gemma2", {{"layer_types", {"sliding_attention", "chunked_attention"}}}, "chunked_attention"},
      {"tiny-gemma2", {{"query_pre_attn_scalar", 0}}, "query_pre_attn_scalar"},
      {"tiny-lfm2", {{"layer_types", {"conv", "full_attention"}}}, "layer_types must list one type per layer (3)"},
      {"tiny-lfm2", {{"layer_types", {"conv", "sliding_attention", "conv"}}}, "sliding_attention"},
      {"tiny-lfm2", {{"layer_types", nullptr}, {"full_attn_idxs", {1, 3}}}, "full_attn_idxs entry 3"},
      {"tiny-lfm2", {{"num_key_value_heads", 3}}, "multiple of num_key_value_heads"},
      {"tiny-lfm2", {{"rope_scaling", {{"rope_type", "yarn"}, {"factor", 2.0}}}}, "rope type 'yarn'"},
      {"tiny-falcon-h1",
       {{"mamba_d_head", 7}},
       "mamba_n_heads × mamba_d_head = 6 × 7 does not equal the Mamba width 48"},
      // mamba_d_ssm null: the width is mamba_expand × hidden_size = 64, not a multiple of the 6 heads.
      {"tiny-falcon-h1", {{"mamba_d_ssm", nullptr}}, "does not equal the Mamba width 64"},
      {"tiny-falcon-h1", {{"mamba_n_groups", 4}}, "mamba_n_groups must divide"},
      {"tiny-falcon-h1", {{"rope_theta", nullptr}}, "needs rope_theta"},
      // (the fixture's time_step_limit [0, Infinity] is written back by nlohmann as [0, null]: replaced)
      {"tiny-falcon-h1",
       {{"ssm_multipliers", {1.0, 2.0}}, {"time_step_limit", {0.0, 100.0}}},
       "'ssm_multipliers' must be an array of 5 numbers"},
      {"tiny-falcon-h1",
       {{"mlp_multipliers", {1.0, "x"}}, {"time_step_limit", {0.0, 100.0}}},
       "'mlp_multipliers' must be an array of 2 numbers"},
      {"tiny-falcon-h1", {{"hidden_act", "quick_gelu"}}, "hidden_act 'quick_gelu' is not supported"},
      {"tiny-jamba", {{"sliding_window", 8}}, "sliding_window is not supported"},
      {"tiny-jamba", {{"attn_layer_offset", 2}}, "must be smaller than its period"},
      {"tiny-jamba", {{"num_experts_per_tok", 5}}, "num_experts_per_tok 5 exceeds num_experts 4"},
      {"tiny-jamba", {{"mamba_dt_rank", "big"}}, "mamba_dt_rank must be an integer or \"auto\""},
  };
  for (const auto& c : cases) {
    CAPTURE(c.fixture);
    CAPTURE(c.changes.dump());
    const std::string d = variant(c.fixture, c.changes);
    CHECK_THROWS_WITH_AS(models::load_causal_lm(d), doctest::Contains(c.message.c_str()), InputError);
    CHECK_THROWS_WITH_AS(models::load_causal_lm(d), doctest::Contains((d + "/config.json").c_str()), InputError);
  }
  {
    // LFM2: which tensors a layer needs follows layer_types (else full_attn_idxs), and the MLP width
    // follows Lfm2MLP's adjustment (block_ffn_dim_multiplier null: int(2·96/3) = 64, no rounding to 72).
    const std::string attn0 = variant("tiny-lfm2", {{"layer_types", nullptr}, {"full_attn_idxs", {0, 1}}});
    CHECK_THROWS_WITH_AS(models::load_causal_lm(attn0),
                         doctest::Contains("model.layers.0.self_attn.q_proj.weight' (config.json implies shape [32, "
                                           "32]; layer_types: full_attention)"),
                         InputError);
    const std::string narrow = variant("tiny-lfm2", {{"block_ffn_dim_multiplier", nullptr}});
    CHECK_THROWS_WITH_AS(models::load_causal_lm(narrow),
                         doctest::Contains("model.layers.0.feed_forward.w1.weight' has shape [72, 32], but config.json "
                                           "implies [64, 32]"),
                         InputError);
    // Jamba: the experts are declared per layer of expert_layer_period/offset (offset 1: layers 1, 4 …
    // would need them; the fixture has them in 0 and 3).
    const std::string shifted = variant("tiny-jamba", {{"expert_layer_offset", 1}});
    CHECK_THROWS_WITH_AS(models::load_causal_lm(shifted),
                         doctest::Contains("model.layers.0.feed_forward.gate_proj.weight' (config.json implies shape "
                                           "[48, 32]; dense MLP layer)"),
                         InputError);
    // One expert per token instead of two: a different model, but a valid one.
    auto top1 = models::load_causal_lm(variant("tiny-jamba", {{"num_experts_per_tok", 1}}));
    auto top2 = models::load_causal_lm(std::string(ESS_SOURCE_DIR) + "/data/checkpoints/tiny-jamba");
    const models::Tokens ids{{1, 2, 3, 4, 5, 6, 7, 8}};
    const models::ModelRun r1 = top1->run(ids, true), r2 = top2->run(ids, true);
    REQUIRE(r1.layers.size() == 4);
    CHECK(r1.layers[0].op->family() == "mamba");
    CHECK(r1.layers[1].op->family() == "softmax_attention");
    CHECK((r1.logits[0] - r2.logits[0]).cwiseAbs().maxCoeff() > 1e-6);
    // No adjustment at all: the width is block_ff_dim itself (96).
    const std::string plain = variant("tiny-lfm2", {{"block_auto_adjust_ff_dim", false}});
    CHECK_THROWS_WITH_AS(models::load_causal_lm(plain), doctest::Contains("implies [96, 32]"), InputError);
  }
  {
    // GPT-2's learned positions end at n_positions (32 in the fixture).
    auto model = models::load_causal_lm(std::string(ESS_SOURCE_DIR) + "/data/checkpoints/tiny-gpt2");
    CHECK_THROWS_WITH_AS(model->run({models::Tokens::value_type(33, 1)}), doctest::Contains("exceeds n_positions 32"),
                         InputError);
    CHECK_NOTHROW(model->run({models::Tokens::value_type(32, 1)}));
  }
  {
    // Variants the fixtures do not cover but the config allows: they load and run.
    // (no structured binding: clang rejects capturing one in CAPTURE's lambda before C++20)
    for (const auto& variant_case : std::vector<std::pair<std::string, nlohmann::json>>{
             {"tiny-gpt2", {{"tie_word_embeddings", false}}},  // then lm_head.weight is required
             {"tiny-gemma2", {{"layer_types", {"full_attention", "sliding_attention"}}}},
             {"tiny-gemma2", {{"attn_logit_softcapping", nullptr}, {"final_logit_softcapping", nullptr}}},
         }) {
      const std::string& fixture = variant_case.first;
      const nlohmann::json& changes = variant_case.second;
      CAPTURE(changes.dump());
      const std::string d = variant(fixture, changes);
      if (fixture == "tiny-gpt2") {
        CHECK_THROWS_WITH_AS(models::load_causal_lm(d), doctest::Contains("lm_head.weight"), InputError);
        continue;
      }
      auto model = models::load_causal_lm(d);
      const models::ModelRun run = model->run({{1, 2, 3, 4, 5, 6, 7, 8, 9, 10}});
      REQUIRE(run.layers.size() == 2);
      const auto& l0 = dynamic_cast<const SoftmaxAttentionOperator&>(*run.layers[0].op);
      const auto& l1 = dynamic_cast<const SoftmaxAttentionOperator&>(*run.layers[1].op);
      if (changes.contains("layer_types")) {  // swapped: layer 1 slides (window 6 < L = 10), layer 0 does not
        CHECK(l0.window() == 0);
        CHECK(l1.window() == 6);
        CHECK(l0.softcap() == 2.0);
      } else {  // absent field: upstream defaults 50 / 30; present but null: none
        CHECK(l0.window() == 6);
        CHECK(l1.window() == 0);
        CHECK(l0.softcap() == 0.0);
      }
    }
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

TEST_CASE("memory guard of a hybrid: one layer's weights are those of its largest layer, not every layer type's") {
  const auto model = models::load_causal_lm(std::string(ESS_SOURCE_DIR) + "/data/checkpoints/tiny-jamba");
  const auto& decls = model->weights().declarations();
  // tiny-jamba: Mamba + MoE (layer 0), attention + dense (1), Mamba + dense (2), attention + MoE (3).
  std::vector<std::uint64_t> per_layer(decls.num_layers(), 0);
  std::uint64_t all_types = 0, widest = 0;
  for (const auto& d : decls.list()) {
    if (!d.active || !d.per_layer) continue;
    std::uint64_t n = static_cast<std::uint64_t>(d.items);
    for (auto x : d.shape) {
      n *= static_cast<std::uint64_t>(x);
      widest = std::max(widest, static_cast<std::uint64_t>(x));
    }
    all_types += n;
    for (int l = 0; l < decls.num_layers(); ++l)
      if (d.declared_in(l)) per_layer[l] += n;
  }
  const std::uint64_t largest = *std::max_element(per_layer.begin(), per_layer.end());
  CHECK(largest == per_layer[0]);  // Mamba with 4 experts
  CHECK(largest < all_types);
  const std::uint64_t V = 96, D = 32, B = 2, L = 1000;
  CHECK(models::forward_bytes_lower_bound(decls, static_cast<int>(V), B, L, false) ==
        8 * (B * L * (2 * D + widest) + L * V + largest + V * D));
}

TEST_CASE("--at-tokens: the blocks within the window of every position holding an id, union over the batch") {
  const models::Tokens one = {{5, 1, 2, 5, 0, 0, 0, 0, 0, 3}};
  // positions 0, 3, 9; window 1 → i ∈ {1} ∪ {2, 3, 4} ∪ {8, 9} (i = 0 and i = L have no block)
  CHECK(blocks_at_tokens(one, {{5, 3}, 1}) == std::vector<int>{1, 2, 3, 4, 8, 9});
  CHECK(blocks_at_tokens(one, {{3}, 0}) == std::vector<int>{9});
  CHECK(indices_at_tokens(one, {{3}, 0}) == "9,9");  // a one-entry list, not the range "9"
  CHECK(indices_at_tokens(one, {{5}, 0}) == "3,3");  // position 0 gives no block at window 0
  models::Tokens two = one;
  two.push_back({0, 0, 0, 0, 0, 0, 3, 0, 0, 0});  // adds position 6 → 5, 6, 7
  CHECK(blocks_at_tokens(two, {{5, 3}, 1}) == std::vector<int>{1, 2, 3, 4, 5, 6, 7, 8, 9});
  CHECK(blocks_at_tokens(one, {{7}, 3}).empty());
  CHECK_THROWS_AS(indices_at_tokens(one, {{7}, 3}), UsageError);
  CHECK(parse_token_ids("2,50256") == std::vector<int>{2, 50256});
  CHECK_THROWS_AS(parse_token_ids("2,-1"), UsageError);
  CHECK_THROWS_AS(parse_token_ids("2,"), UsageError);
}

// The forward passes' products with weights and the attention's score tiles go through the BLAS
// (models::matmul_nt / matmul_nn, blas_gemm_rows_nt); checked against plain sums, for shapes with a
// single row or column (where Eigen reports an arbitrary outer stride), empty ones, and views
// into larger matrices (outer strides past the view's width).
TEST_CASE("forward products: BLAS paths equal plain sums, edge shapes and strided views included") {
  std::mt19937 rng(7);
  std::normal_distribution<double> nd;
  auto fill = [&](auto& M) {
    for (Index r = 0; r < M.rows(); ++r)
      for (Index c = 0; c < M.cols(); ++c) M(r, c) = nd(rng);
  };
  const std::vector<std::array<int, 3>> shapes = {{5, 7, 3},    {1, 7, 3}, {5, 1, 3}, {5, 7, 1}, {1, 1, 1},
                                                  {64, 33, 17}, {0, 4, 3}, {4, 0, 3}, {4, 3, 0}};
  for (const auto& shape : shapes) {
    const int m = shape[0], k = shape[1], n = shape[2];  // (not a structured binding: CAPTURE's lambda)
    CAPTURE(m);
    CAPTURE(k);
    CAPTURE(n);
    // X [m, k] as the middle of a larger column-major matrix; W [n, k] and V [k, n] row-major views.
    Matrix Xbig(m + 3, k + 2);
    RowMatrix Wbig(n + 2, k + 5), Vbig(k + 1, n + 4);
    fill(Xbig);
    fill(Wbig);
    fill(Vbig);
    const auto X = Xbig.block(1, 1, m, k);
    const auto W = Wbig.block(1, 2, n, k);
    const auto V = Vbig.block(0, 3, k, n);
    const Matrix Ynt = models::matmul_nt(X, W), Ynn = models::matmul_nn(X, V);
    Matrix S(m, n);
    blas_gemm_rows_nt(0.5, RowMatrix(X), W, S);
    REQUIRE(Ynt.rows() == m);
    REQUIRE(Ynt.cols() == n);
    REQUIRE(Ynn.rows() == m);
    REQUIRE(Ynn.cols() == n);
    for (int r = 0; r < m; ++r)
      for (int c = 0; c < n; ++c) {
        long double nt = 0, nn = 0, mag = 0;
        for (int j = 0; j < k; ++j) {
          nt += static_cast<long double>(X(r, j)) * W(c, j);
          nn += static_cast<long double>(X(r, j)) * V(j, c);
          mag += std::abs(X(r, j)) * (std::abs(W(c, j)) + std::abs(V(j, c)));
        }
        const double tol = 1e-14 * static_cast<double>(mag) + 1e-300;
        CHECK(std::abs(Ynt(r, c) - static_cast<double>(nt)) <= tol);
        CHECK(std::abs(Ynn(r, c) - static_cast<double>(nn)) <= tol);
        CHECK(std::abs(S(r, c) - 0.5 * static_cast<double>(nt)) <= tol);
      }
  }
  // Shapes that do not match are refused, not multiplied.
  CHECK_THROWS_AS(models::matmul_nt(Matrix::Ones(2, 3), RowMatrix::Ones(4, 2)), std::invalid_argument);
}

// blas_gemm cuts C into tiles of a fixed size (kGemmTileRows × kGemmTileCols) spread over
// gemm_threads(): across tile edges and for every transpose and strided view the product equals
// plain sums, and its bytes are the same with 1, 2 and 3 threads (OpenBLAS's own threads cut the
// columns by their count and changed the last bits: tests/cli/threads_identical_bits.sh).
TEST_CASE("blas_gemm: tiles of a fixed size, plain sums across tile edges, the same bytes with any gemm threads") {
  std::mt19937 rng(11);
  std::normal_distribution<double> nd;
  const Index m = kGemmTileRows + 37, n = 2 * kGemmTileCols + 9, k = 23;
  for (int ta = 0; ta < 2; ++ta)
    for (int tb = 0; tb < 2; ++tb) {
      CAPTURE(ta);
      CAPTURE(tb);
      // op(A) [m, k] and op(B) [k, n] as views into larger matrices; C a view too, beta = 0.5.
      Matrix Abig(ta ? k + 3 : m + 3, ta ? m + 1 : k + 1), Bbig(tb ? n + 2 : k + 2, tb ? k + 1 : n + 1);
      for (Matrix* M : {&Abig, &Bbig})
        for (Index e = 0; e < M->size(); ++e) M->data()[e] = nd(rng);
      const auto A = Abig.block(1, 1, ta ? k : m, ta ? m : k);
      const auto B = Bbig.block(2, 1, tb ? n : k, tb ? k : n);
      Matrix C0 = Matrix::Random(m + 2, n), expect(m, n);
      for (Index r = 0; r < m; ++r)
        for (Index c = 0; c < n; ++c) {
          long double sum = 0;
          for (Index j = 0; j < k; ++j)
            sum += static_cast<long double>(ta ? A(j, r) : A(r, j)) * (tb ? B(c, j) : B(j, c));
          expect(r, c) = static_cast<double>(0.75L * sum + 0.5L * C0(r + 1, c));
        }
      std::vector<Matrix> out;
      for (int threads : {1, 2, 3}) {
        set_gemm_threads(threads);
        Matrix C = C0;
        blas_gemm(ta, tb, 0.75, A, B, 0.5, C.middleRows(1, m));
        out.push_back(C);
      }
      set_gemm_threads(1);
      CHECK((out[0].middleRows(1, m) - expect).cwiseAbs().maxCoeff() <= 1e-12);
      CHECK(out[0].row(0) == C0.row(0));  // rows outside the view untouched
      CHECK(out[0].row(m + 1) == C0.row(m + 1));
      for (size_t t = 1; t < out.size(); ++t)
        CHECK(std::memcmp(out[t].data(), out[0].data(), sizeof(double) * out[0].size()) == 0);
    }
}

TEST_CASE("parallel_for: every index once on any number of threads, nested calls serial, the first error rethrown") {
  for (int threads : {1, 2, 5}) {
    CAPTURE(threads);
    set_gemm_threads(threads);
    std::vector<int> hits(37, 0);
    parallel_for(37, [&](int i) {
      ++hits[static_cast<size_t>(i)];
      std::vector<int> inner(3, 0);
      parallel_for(3, [&](int j) { ++inner[static_cast<size_t>(j)]; });  // serial inside a piece
      CHECK(inner == std::vector<int>(3, 1));
    });
    CHECK(hits == std::vector<int>(37, 1));
    int ran = 0;
    std::mutex m;
    CHECK_THROWS_WITH_AS(parallel_for(9,
                                      [&](int i) {
                                        {
                                          std::lock_guard<std::mutex> lock(m);
                                          ++ran;
                                        }
                                        if (i == 4) throw std::runtime_error("piece 4 fails");
                                      }),
                         "piece 4 fails", std::runtime_error);
    // Serially the error ends the loop at once; in parallel the other pieces still run.
    CHECK(ran == (threads == 1 ? 5 : 9));
    parallel_for(0, [&](int) { FAIL("no piece for a count of 0"); });
  }
  set_gemm_threads(1);
}
