// Qwen2ForCausalLM: the Llama-style decoder (models/llama.cpp) with biases on q_proj, k_proj,
// v_proj (none on o_proj), head_dim = hidden / heads. Sliding-window layers (use_sliding_window)
// are refused; sliding_window alone is ignored, as upstream. Operator: softmax_attention as Llama.
#include "libess/error.h"
#include "models/models.h"

namespace ess::models {
namespace {

std::unique_ptr<CausalLM> make_qwen2(const std::string& dir, const Config& c) {
  if (c.boolean("use_sliding_window", false))
    throw InputError(c.path() +
                     ": Qwen2ForCausalLM with use_sliding_window true is not supported (full attention only)");
  LlamaSpec s = read_llama_config(c, "Qwen2ForCausalLM");
  s.qkv_bias = true;  // Qwen2Attention: bias=True on q/k/v, bias=False on o_proj
  s.o_bias = false;
  return make_llama_decoder(dir, s);
}

}  // namespace

ESS_REGISTER_ARCHITECTURE("Qwen2ForCausalLM", make_qwen2, "qwen2");

}  // namespace ess::models
