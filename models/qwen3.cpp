// Qwen3ForCausalLM: the Llama-style decoder (models/llama.cpp) with a per-head RMSNorm of q and k
// over head_dim (q_norm, k_norm) before the rotary embedding, head_dim from the config (default
// 128, not hidden / heads), biases on q/k/v/o only with attention_bias. Sliding-window layers
// (use_sliding_window) are refused. Operator: softmax_attention as Llama (q, k after norm and RoPE).
#include "libess/error.h"
#include "models/models.h"

namespace ess::models {
namespace {

std::unique_ptr<CausalLM> make_qwen3(const std::string& dir, const Config& c) {
  if (c.boolean("use_sliding_window", false))
    throw InputError(c.path() +
                     ": Qwen3ForCausalLM with use_sliding_window true is not supported (full attention only)");
  nlohmann::json j = c.json();
  if (!c.has("head_dim")) j["head_dim"] = 128;  // Qwen3Config's default
  LlamaSpec s = read_llama_config(Config(j, c.path()), "Qwen3ForCausalLM");
  s.qk_norm = true;
  return make_llama_decoder(dir, s);
}

}  // namespace

ESS_REGISTER_ARCHITECTURE("Qwen3ForCausalLM", make_qwen3, "qwen3");

}  // namespace ess::models
