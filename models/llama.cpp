// LlamaForCausalLM and MistralForCausalLM (Hugging Face transformers layout), and the Llama-style
// decoder their relatives reuse (models/models.h: LlamaSpec): pre-norm decoder, rotary embeddings
// (rotate-half convention; default, "linear" and "llama3" scaling), grouped-query attention with
// head_dim from the config, SwiGLU MLP; Mistral's sliding_window (i − j < w).
// Captured operator per layer: family "softmax_attention" with q, k after RoPE [B, H, L, d]
// (key heads repeated for the query heads that share them), scale d^−1/2, window; the attention
// output is T v through that operator (SoftmaxAttentionOperator::multiply).
#include <cmath>

#include "libess/error.h"
#include "models/models.h"
#include "operators/softmax_attention.h"

namespace ess::models {

namespace {

class LlamaDecoder final : public CausalLM {
 public:
  LlamaDecoder(const std::string& dir, const LlamaSpec& s) : CausalLM(dir, s.architecture), s_(s) {
    vocab_ = s.vocab;
    layers_ = s.layers;
    const std::int64_t V = s.vocab, D = s.hidden, I = s.intermediate, q = s.heads * s.head_dim,
                       kv = s.kv_heads * s.head_dim;
    WeightDecls w(s.layers);
    w.global("embed", "model.embed_tokens.weight", {V, D});
    w.layer("input_norm", "model.layers.{l}.input_layernorm.weight", {D});
    w.layer("q_proj", "model.layers.{l}.self_attn.q_proj.weight", {q, D});
    w.layer("q_bias", "model.layers.{l}.self_attn.q_proj.bias", {q}).when(s.qkv_bias, "q/k/v biases");
    w.layer("k_proj", "model.layers.{l}.self_attn.k_proj.weight", {kv, D});
    w.layer("k_bias", "model.layers.{l}.self_attn.k_proj.bias", {kv}).when(s.qkv_bias, "q/k/v biases");
    w.layer("v_proj", "model.layers.{l}.self_attn.v_proj.weight", {kv, D});
    w.layer("v_bias", "model.layers.{l}.self_attn.v_proj.bias", {kv}).when(s.qkv_bias, "q/k/v biases");
    w.layer("o_proj", "model.layers.{l}.self_attn.o_proj.weight", {D, q});
    w.layer("o_bias", "model.layers.{l}.self_attn.o_proj.bias", {D}).when(s.o_bias, "o_proj bias");
    w.layer("post_norm", "model.layers.{l}.post_attention_layernorm.weight", {D});
    w.layer("gate_proj", "model.layers.{l}.mlp.gate_proj.weight", {I, D});
    w.layer("gate_bias", "model.layers.{l}.mlp.gate_proj.bias", {I}).when(s.mlp_bias, "mlp_bias");
    w.layer("up_proj", "model.layers.{l}.mlp.up_proj.weight", {I, D});
    w.layer("up_bias", "model.layers.{l}.mlp.up_proj.bias", {I}).when(s.mlp_bias, "mlp_bias");
    w.layer("down_proj", "model.layers.{l}.mlp.down_proj.weight", {D, I});
    w.layer("down_bias", "model.layers.{l}.mlp.down_proj.bias", {D}).when(s.mlp_bias, "mlp_bias");
    w.global("norm", "model.norm.weight", {D});
    declare_lm_head(w, s.vocab, s.hidden, s.tied);
    W_.declare(std::move(w));
  }

 protected:
  void forward(const Tokens& tokens, const LayerCallback& on_layer, bool keep_logits, ModelRun& out) const override {
    const int B = static_cast<int>(tokens.size()), L = static_cast<int>(tokens[0].size());
    const int H = s_.heads, Hkv = s_.kv_heads, hd = s_.head_dim, half = hd / 2, rep = H / Hkv;
    const int window = s_.window > 0 && s_.window < L ? s_.window : 0;
    const double scale = 1.0 / std::sqrt(static_cast<double>(hd));
    Matrix cosm(L, half), sinm(L, half);
    for (int t = 0; t < L; ++t)
      for (int k = 0; k < half; ++k) {
        cosm(t, k) = std::cos(t * s_.inv_freq(k));
        sinm(t, k) = std::sin(t * s_.inv_freq(k));
      }
    // x ← x cos + rotate_half(x) sin, rotate_half(x) = (−x2, x1).
    auto rope = [&](Eigen::Ref<Matrix> X) {  // X [L, hd]
      for (int t = 0; t < L; ++t)
        for (int k = 0; k < half; ++k) {
          const double a = X(t, k), b = X(t, k + half);
          X(t, k) = a * cosm(t, k) - b * sinm(t, k);
          X(t, k + half) = b * cosm(t, k) + a * sinm(t, k);
        }
    };
    auto linear = [](const Matrix& X, const LoadedWeights& w, const char* weight, const char* bias) {
      Matrix Y = X * w.matrix(weight).transpose();
      if (w.has(bias)) Y.rowwise() += w.vector(bias).transpose();
      return Y;
    };
    std::vector<Matrix> Hs = embed(W_, tokens);
    for (int l = 0; l < layers_; ++l) {
      const LoadedWeights w = W_.load_layer(l);
      // The operator's inputs for every sequence, then the attention output through the operator.
      Tensor q_t({B, H, L, hd}), k_t({B, H, L, hd});
      std::vector<Matrix> values(B);
      for (int b = 0; b < B; ++b) {
        const Matrix X = rms_norm(Hs[b], w.vector("input_norm"), s_.rms_eps);
        Matrix Q = linear(X, w, "q_proj", "q_bias"), K = linear(X, w, "k_proj", "k_bias");
        values[b] = linear(X, w, "v_proj", "v_bias");
        for (int h = 0; h < H; ++h) rope(Q.middleCols(h * hd, hd));
        for (int h = 0; h < Hkv; ++h) rope(K.middleCols(h * hd, hd));
        for (int h = 0; h < H; ++h) {
          put_head(q_t, b, h, Q.middleCols(h * hd, hd));
          put_head(k_t, b, h, K.middleCols(h / rep * hd, hd));
        }
      }
      const std::string name = "model.layers." + std::to_string(l) + ".self_attn";
      auto op = std::make_unique<SoftmaxAttentionOperator>(std::move(q_t), std::move(k_t), std::vector<std::uint8_t>{},
                                                           scale, window, W_.dir() + ":" + name);
      for (int b = 0; b < B; ++b) {
        Matrix O(L, H * hd);
        for (int h = 0; h < H; ++h)
          op->multiply(b, h, values[b].middleCols(h / rep * hd, hd), O.middleCols(h * hd, hd));
        Hs[b] += linear(O, w, "o_proj", "o_bias");
        const Matrix X2 = rms_norm(Hs[b], w.vector("post_norm"), s_.rms_eps);
        const Matrix gate = silu(linear(X2, w, "gate_proj", "gate_bias"));
        Hs[b] += linear(gate.cwiseProduct(linear(X2, w, "up_proj", "up_bias")), w, "down_proj", "down_bias");
      }
      on_layer({name, l, std::move(op)});
    }
    final_norm_and_head(W_, "norm", s_.rms_eps, Hs, keep_logits, out);
  }

 private:
  LlamaSpec s_;
};

std::unique_ptr<CausalLM> make_llama(const std::string& dir, const Config& c) {
  return make_llama_decoder(dir, read_llama_config(c, "LlamaForCausalLM"));
}

std::unique_ptr<CausalLM> make_mistral(const std::string& dir, const Config& c) {
  LlamaSpec s = read_llama_config(c, "MistralForCausalLM");
  s.window = c.integer("sliding_window", 0, Config::kNonNegative);  // null: no window
  return make_llama_decoder(dir, s);
}

}  // namespace

LlamaSpec read_llama_config(const Config& c, const std::string& architecture) {
  LlamaSpec s;
  s.architecture = architecture;
  s.vocab = c.integer("vocab_size");
  s.hidden = c.integer("hidden_size");
  s.intermediate = c.integer("intermediate_size");
  s.layers = c.integer("num_hidden_layers");
  s.heads = c.integer("num_attention_heads");
  s.kv_heads = c.integer("num_key_value_heads", s.heads);
  s.head_dim = c.has("head_dim") ? c.integer("head_dim") : s.hidden / std::max(s.heads, 1);
  c.product({s.heads, s.head_dim}, "num_attention_heads × head_dim");
  c.product({s.kv_heads, s.head_dim}, "num_key_value_heads × head_dim");
  if (s.heads < 1 || s.kv_heads < 1 || s.heads % s.kv_heads != 0)
    throw InputError(c.path() + ": num_attention_heads must be a multiple of num_key_value_heads");
  if (s.head_dim % 2) throw InputError(c.path() + ": head_dim must be even for rotary embeddings");
  s.rms_eps = c.number("rms_norm_eps", 1e-6, Config::kNonNegativeNumber);
  s.qkv_bias = s.o_bias = c.boolean("attention_bias", false);
  s.mlp_bias = c.boolean("mlp_bias", false);
  s.tied = c.boolean("tie_word_embeddings", false);
  if (c.has("hidden_act") && c.json()["hidden_act"] != "silu")
    throw InputError(c.path() + ": hidden_act " + c.json()["hidden_act"].dump() + " is not supported (silu only)");
  // Rotary inverse frequencies, with the config's scaling: legacy `rope_theta` + `rope_scaling`,
  // or transformers v5's `rope_parameters` {rope_theta, rope_type, factor, …}.
  nlohmann::json rope = c.has("rope_scaling") ? c.json()["rope_scaling"] : nlohmann::json::object();
  double theta = c.number("rope_theta", 10000.0, Config::kPositiveNumber);
  if (c.has("rope_parameters")) {
    if (!c.json()["rope_parameters"].is_object()) throw InputError(c.path() + ": rope_parameters must be an object");
    rope = c.json()["rope_parameters"];
    if (rope.contains("rope_theta"))
      theta = Config(rope, c.path() + " rope_parameters").number("rope_theta", Config::kPositiveNumber);
  }
  const int hd = s.head_dim;
  s.inv_freq.resize(hd / 2);
  for (int k = 0; k < hd / 2; ++k) s.inv_freq(k) = 1.0 / std::pow(theta, 2.0 * k / hd);
  if (!rope.is_object()) throw InputError(c.path() + ": rope_scaling must be an object");
  const Config sc(rope, c.path() + " rope scaling");
  const std::string type = rope.value("rope_type", rope.value("type", std::string("default")));
  if (type == "llama3") {
    const auto positive = Config::kPositiveNumber;
    const double f = sc.number("factor", positive), lo = sc.number("low_freq_factor", positive),
                 hi = sc.number("high_freq_factor", positive),
                 orig = sc.number("original_max_position_embeddings", positive);
    const double lo_wl = orig / lo, hi_wl = orig / hi;
    for (int k = 0; k < hd / 2; ++k) {
      const double inv = s.inv_freq(k), wl = 2 * M_PI / inv;
      if (wl < hi_wl) continue;  // high frequency: unchanged
      if (wl > lo_wl) {
        s.inv_freq(k) = inv / f;
      } else {
        const double smooth = (orig / wl - lo) / (hi - lo);
        s.inv_freq(k) = (1 - smooth) * inv / f + smooth * inv;
      }
    }
  } else if (type == "linear") {
    s.inv_freq /= sc.number("factor", Config::kPositiveNumber);
  } else if (type != "default") {
    throw InputError(c.path() + ": rope type '" + type + "' is not supported (default, linear, llama3)");
  }
  return s;
}

std::unique_ptr<CausalLM> make_llama_decoder(const std::string& dir, const LlamaSpec& spec) {
  return std::make_unique<LlamaDecoder>(dir, spec);
}

ESS_REGISTER_ARCHITECTURE("LlamaForCausalLM", make_llama, "llama");
ESS_REGISTER_ARCHITECTURE("MistralForCausalLM", make_mistral, "mistral");

}  // namespace ess::models
