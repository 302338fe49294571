// What architecture files (models/<arch>.cpp) are built from: self-registration, the standard
// weight roles, shared numerical building blocks, and the Llama-style decoder its variants reuse.
// docs/adding-an-architecture.md walks through adding one.
#pragma once
#include <memory>
#include <string>
#include <vector>

#include "models/model.h"

namespace ess::models {

// --- registration -----------------------------------------------------------------------------

// Builds an architecture from its checkpoint directory and parsed config.json: reads the config
// fields (InputError naming the file and field), sets vocab_/layers_ and declares the weights.
using ArchitectureFactory = std::unique_ptr<CausalLM> (*)(const std::string& dir, const Config& config);

// Adds `name` (config.json architectures[0]) with `aliases` (other accepted architectures[0]
// values or model_type values). A name registered twice is a programming error (logic_error).
bool register_architecture(const std::string& name, ArchitectureFactory factory, std::vector<std::string> aliases);

#define ESS_MODELS_CONCAT_INNER_(a, b) a##b
#define ESS_MODELS_CONCAT_(a, b) ESS_MODELS_CONCAT_INNER_(a, b)
// ESS_REGISTER_ARCHITECTURE("LlamaForCausalLM", make_llama, "llama");  — at namespace scope in the
// architecture's .cpp. ess_models is linked whole-archive (CMakeLists.txt), so no list elsewhere.
#define ESS_REGISTER_ARCHITECTURE(name, factory, ...)                                             \
  static const bool ESS_MODELS_CONCAT_(ess_architecture_registered_, __LINE__) [[maybe_unused]] = \
      ::ess::models::register_architecture(name, factory, {__VA_ARGS__})

// --- standard roles ---------------------------------------------------------------------------
// Every architecture declares "embed" [V, D] and "lm_head" [V, D] (declare_lm_head); the shared
// embed() and logits helpers use them. An absent lm_head means the head is tied to "embed".

// Declares "lm_head" (name lm_head.weight): required when `tied` is false, else optional (a
// checkpoint that stores it anyway uses it, as the reference does).
void declare_lm_head(WeightDecls& decls, int vocab, int dim, bool tied);

// --- building blocks --------------------------------------------------------------------------

// Embedding rows of every sequence (role "embed", read and dropped): one L × D matrix per sequence.
std::vector<Matrix> embed(const ModelWeights& W, const Tokens& tokens);
// y = rms_norm(x) ⊙ w over the last axis (rows of X).
Matrix rms_norm(const Matrix& X, const Eigen::Ref<const Vector>& w, double eps);
Matrix silu(const Matrix& X);
double softplus(double x);
// Causal depthwise conv: X [L, C], weight [C, K] (row-major), bias [C] (may be empty).
Matrix causal_depthwise_conv(const Matrix& X, const Eigen::Ref<const RowMatrix>& weight, const Vector& bias);
// logits = X headᵀ in row chunks (an L × V matrix is large) for the next sequence of the batch
// (b = out.argmax.size()): appends its argmax, its next-token log-probabilities (log-softmax in
// float64, shifted by the row maximum; the next tokens from out.inputs) and, if asked, its logits.
// Every architecture ends here (a head that transforms logits, e.g. soft-capping, must do so
// inside it), so predictions come out the same way for all.
void finish_logits(const Matrix& X, const Eigen::Ref<const RowMatrix>& head, bool keep, ModelRun& out);
// The end of most models: final RMSNorm (global role `norm_role`) then the LM head ("lm_head", or
// "embed" when tied) for each sequence's hidden states; reads those weights when called.
void final_norm_and_head(const ModelWeights& W, const std::string& norm_role, double eps,
                         const std::vector<Matrix>& hidden, bool keep, ModelRun& out);
// Stores one head's L × d activations X into a [B, H, L, d] tensor at (b, h).
void put_head(Tensor& t, int b, int h, const Eigen::Ref<const Matrix>& X);

// --- the Llama-style decoder (models/llama.cpp) -------------------------------------------------
// Pre-norm blocks: h += o_proj(softmax_attention(rope(q), rope(k)) v), h += down(silu(gate) ⊙ up),
// RMSNorm, grouped-query attention. Variants (Mistral; Qwen2 = q/k/v biases; …) adjust the spec
// that read_llama_config() fills from Llama's config fields, then call make_llama_decoder.
struct LlamaSpec {
  std::string architecture;
  int vocab = 0, hidden = 0, intermediate = 0, layers = 0, heads = 0, kv_heads = 0, head_dim = 0;
  double rms_eps = 1e-6;
  bool qkv_bias = false;  // biases on q_proj, k_proj, v_proj
  bool o_bias = false;    // bias on o_proj
  bool mlp_bias = false;  // biases on gate_proj, up_proj, down_proj
  int window = 0;         // sliding window w (attend to i − w < j ≤ i); 0 = none
  bool tied = false;      // tie_word_embeddings
  Vector inv_freq;        // rotary inverse frequencies (head_dim / 2), scaling applied
};
// Llama's fields: vocab_size, hidden_size, intermediate_size, num_hidden_layers,
// num_attention_heads, num_key_value_heads, head_dim, rms_norm_eps, hidden_act (silu),
// attention_bias (q/k/v/o), mlp_bias, tie_word_embeddings, rope_theta + rope_scaling or
// rope_parameters (default, linear, llama3).
LlamaSpec read_llama_config(const Config& c, const std::string& architecture);
std::unique_ptr<CausalLM> make_llama_decoder(const std::string& dir, const LlamaSpec& spec);

}  // namespace ess::models
