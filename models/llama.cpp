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
    if (!s.layer_windows.empty() && static_cast<int>(s.layer_windows.size()) != s.layers)
      throw std::logic_error("LlamaSpec: layer_windows must have one entry per layer");
    const std::int64_t V = s.vocab, D = s.hidden, I = s.intermediate, q = s.heads * s.head_dim,
                       kv = s.kv_heads * s.head_dim, hd = s.head_dim;
    WeightDecls w(s.layers);
    w.global("embed", "model.embed_tokens.weight", {V, D});
    w.layer("input_norm", "model.layers.{l}.input_layernorm.weight", {D});
    w.layer("q_proj", "model.layers.{l}.self_attn.q_proj.weight", {q, D});
    w.layer("q_bias", "model.layers.{l}.self_attn.q_proj.bias", {q}).when(s.qkv_bias, "q/k/v biases");
    w.layer("k_proj", "model.layers.{l}.self_attn.k_proj.weight", {kv, D});
    w.layer("k_bias", "model.layers.{l}.self_attn.k_proj.bias", {kv}).when(s.qkv_bias, "q/k/v biases");
    w.layer("v_proj", "model.layers.{l}.self_attn.v_proj.weight", {kv, D});
    w.layer("v_bias", "model.layers.{l}.self_attn.v_proj.bias", {kv}).when(s.qkv_bias, "q/k/v biases");
    w.layer("q_norm", "model.layers.{l}.self_attn.q_norm.weight", {hd}).when(s.qk_norm, "per-head q/k RMSNorm");
    w.layer("k_norm", "model.layers.{l}.self_attn.k_norm.weight", {hd}).when(s.qk_norm, "per-head q/k RMSNorm");
    w.layer("o_proj", "model.layers.{l}.self_attn.o_proj.weight", {D, q});
    w.layer("o_bias", "model.layers.{l}.self_attn.o_proj.bias", {D}).when(s.o_bias, "o_proj bias");
    w.layer("post_norm", "model.layers.{l}.post_attention_layernorm.weight", {D});
    w.layer("pre_ff_norm", "model.layers.{l}.pre_feedforward_layernorm.weight", {D})
        .when(s.sandwich_norms, "norms before and after the MLP");
    w.layer("post_ff_norm", "model.layers.{l}.post_feedforward_layernorm.weight", {D})
        .when(s.sandwich_norms, "norms before and after the MLP");
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
    const int H = s_.heads, Hkv = s_.kv_heads, hd = s_.head_dim;
    const Rotary rope(s_.inv_freq, L);
    auto linear = [](const Matrix& X, const LoadedWeights& w, const char* weight, const char* bias) {
      Matrix Y = matmul_nt(X, w.matrix(weight));
      if (w.has(bias)) Y.rowwise() += w.vector(bias).transpose();
      return Y;
    };
    // RMSNorm with the weight w, or (1 + w) (Gemma).
    auto norm = [&](const Matrix& X, const Eigen::Ref<const Vector>& w) {
      if (!s_.norm_plus_one) return rms_norm(X, w, s_.rms_eps);
      const Vector w1 = w.array() + 1.0;
      return rms_norm(X, w1, s_.rms_eps);
    };
    std::vector<Matrix> Hs = embed(W_, tokens);
    if (s_.embed_scale > 0)
      for (Matrix& h : Hs) h *= s_.embed_scale;
    for (int l = 0; l < layers_; ++l) {
      const LoadedWeights w = W_.load_layer(l);
      // The operator's inputs for every sequence, then the attention output through the operator.
      std::vector<Matrix> Qs(B), Ks(B), Vs(B), Os;
      for (int b = 0; b < B; ++b) {
        const Matrix X = norm(Hs[b], w.vector("input_norm"));
        Qs[b] = linear(X, w, "q_proj", "q_bias");
        Ks[b] = linear(X, w, "k_proj", "k_bias");
        Vs[b] = linear(X, w, "v_proj", "v_bias");
        for (int h = 0; h < H; ++h) {
          if (s_.qk_norm)
            Qs[b].middleCols(h * hd, hd) = rms_norm(Qs[b].middleCols(h * hd, hd), w.vector("q_norm"), s_.rms_eps);
          rope.apply(Qs[b].middleCols(h * hd, hd));
        }
        for (int h = 0; h < Hkv; ++h) {
          if (s_.qk_norm)
            Ks[b].middleCols(h * hd, hd) = rms_norm(Ks[b].middleCols(h * hd, hd), w.vector("k_norm"), s_.rms_eps);
          rope.apply(Ks[b].middleCols(h * hd, hd));
        }
      }
      const std::string name = "model.layers." + std::to_string(l) + ".self_attn";
      AttentionSpec a;
      a.heads = H;
      a.kv_heads = Hkv;
      a.head_dim = hd;
      a.scale = s_.attn_scale;
      a.window = s_.layer_windows.empty() ? s_.window : s_.layer_windows[l];
      a.softcap = s_.attn_softcap;
      auto op = softmax_attention(std::move(Qs), std::move(Ks), Vs, a, W_.dir() + ":" + name, Os);
      Vs.clear();
      for (int b = 0; b < B; ++b) {
        Matrix attn = linear(Os[b], w, "o_proj", "o_bias");
        if (s_.sandwich_norms) attn = norm(attn, w.vector("post_norm"));
        Hs[b] += attn;
        const Matrix X2 = norm(Hs[b], w.vector(s_.sandwich_norms ? "pre_ff_norm" : "post_norm"));
        const Matrix gate = activate(linear(X2, w, "gate_proj", "gate_bias"), s_.act);
        Matrix mlp = linear(gate.cwiseProduct(linear(X2, w, "up_proj", "up_bias")), w, "down_proj", "down_bias");
        if (s_.sandwich_norms) mlp = norm(mlp, w.vector("post_ff_norm"));
        Hs[b] += mlp;
      }
      on_layer({name, l, std::move(op), hd});
    }
    if (!s_.norm_plus_one && s_.final_softcap == 0) {
      final_norm_and_head(W_, "norm", s_.rms_eps, Hs, keep_logits, out);
      return;
    }
    const std::string head = W_.has("lm_head") ? "lm_head" : "embed";
    const LoadedWeights g = W_.load_global({"norm", head});
    HeadOptions o;
    o.softcap = s_.final_softcap;
    for (const Matrix& h : Hs) finish_logits(norm(h, g.vector("norm")), g.matrix(head), keep_logits, out, o);
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
  s.act = read_activation(c, "hidden_act", "silu");
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
  s.inv_freq = rope_inv_freq(theta, hd);
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
