// Gemma2ForCausalLM: a variant of the Llama-style decoder (models/llama.cpp) with
//   embeddings × √hidden_size; RMSNorm scaling by (1 + w);
//   h += post_attention_layernorm(attention(input_layernorm(h)));
//   h += post_feedforward_layernorm(mlp(pre_feedforward_layernorm(h))), mlp = down(gelu_tanh(gate) ⊙ up);
//   attention scale query_pre_attn_scalar^−1/2, logits soft-capped c·tanh(s/c) (attn_logit_softcapping),
//   a sliding window on layers 0, 2, 4, … (or where layer_types says "sliding_attention");
//   final logits soft-capped (final_logit_softcapping).
// Operator: softmax_attention with scale, window and softcap as the layer uses them.
#include <cmath>

#include "libess/error.h"
#include "models/models.h"

namespace ess::models {
namespace {

// A config number whose upstream default is `fallback` and where null means "off" (0).
double number_or_off(const Config& c, const std::string& key, double fallback) {
  if (!c.json().contains(key)) return fallback;
  if (c.json()[key].is_null()) return 0.0;
  const double v = c.number(key);
  if (!(v > 0) || !std::isfinite(v)) throw InputError(c.path() + ": field '" + key + "' must be > 0 or null");
  return v;
}

std::unique_ptr<CausalLM> make_gemma2(const std::string& dir, const Config& c) {
  nlohmann::json j = c.json();
  if (!c.has("head_dim")) j["head_dim"] = 256;  // Gemma2Config defaults
  j.erase("hidden_act");                        // Gemma2MLP uses hidden_activation
  if (!c.has("tie_word_embeddings")) j["tie_word_embeddings"] = true;
  const Config cfg(j, c.path());
  LlamaSpec s = read_llama_config(cfg, "Gemma2ForCausalLM");
  s.act = read_activation(c, "hidden_activation", "gelu_pytorch_tanh");
  s.norm_plus_one = true;
  s.sandwich_norms = true;
  s.embed_scale = std::sqrt(static_cast<double>(s.hidden));
  const double qpas = c.number("query_pre_attn_scalar", 256.0);
  if (!(qpas > 0)) throw InputError(c.path() + ": field 'query_pre_attn_scalar' must be > 0");
  s.attn_scale = 1.0 / std::sqrt(qpas);
  s.attn_softcap = number_or_off(c, "attn_logit_softcapping", 50.0);
  s.final_softcap = number_or_off(c, "final_logit_softcapping", 30.0);
  const int window = c.integer("sliding_window", 4096);
  s.layer_windows.assign(s.layers, 0);
  if (c.has("layer_types")) {
    const auto& types = c.json()["layer_types"];
    if (!types.is_array() || static_cast<int>(types.size()) != s.layers)
      throw InputError(c.path() + ": layer_types must list one type per layer (" + std::to_string(s.layers) + ")");
    for (int l = 0; l < s.layers; ++l) {
      if (types[l] == "sliding_attention")
        s.layer_windows[l] = window;
      else if (types[l] != "full_attention")
        throw InputError(c.path() + ": layer_types[" + std::to_string(l) + "] = " + types[l].dump() +
                         " is not supported (sliding_attention, full_attention)");
    }
  } else {
    for (int l = 0; l < s.layers; l += 2) s.layer_windows[l] = window;  // Gemma2DecoderLayer.is_sliding
  }
  return make_llama_decoder(dir, s);
}

}  // namespace

ESS_REGISTER_ARCHITECTURE("Gemma2ForCausalLM", make_gemma2, "gemma2");

}  // namespace ess::models
