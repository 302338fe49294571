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
// What some heads add to X headᵀ: a bias (Phi's lm_head; empty = none) and final logit soft-capping
// c·tanh(logit / c) (Gemma-2; 0 = none). The argmax is taken of the final logits.
struct HeadOptions {
  Vector bias;
  double softcap = 0.0;
};
void finish_logits(const Matrix& X, const Eigen::Ref<const RowMatrix>& head, bool keep, ModelRun& out,
                   const HeadOptions& options);
// The end of most models: final RMSNorm (global role `norm_role`) then the LM head ("lm_head", or
// "embed" when tied) for each sequence's hidden states; reads those weights when called.
void final_norm_and_head(const ModelWeights& W, const std::string& norm_role, double eps,
                         const std::vector<Matrix>& hidden, bool keep, ModelRun& out);
// Stores one head's L × d activations X into a [B, H, L, d] tensor at (b, h).
void put_head(Tensor& t, int b, int h, const Eigen::Ref<const Matrix>& X);

// The shape of a Mamba2 mixer's SSM inputs (Mamba2, Falcon-H1): inner width E = heads H × head
// dim, G groups of state size N; dt is clamped to [dt_min, dt_max] (time_step_limit).
struct Mamba2Dims {
  int E = 0, G = 0, N = 0, H = 0;
  double dt_min = 0.0, dt_max = 0.0;
};
// Splits sequence b's activated conv output xBC = [x | B | C] ([L, E + 2·G·N]) and the raw dt
// section of in_proj ([L, H]) into the Mamba2 operator's inputs: dt_t(b) = clamp(softplus(dt +
// dt_bias)) [H, L], B_t(b, g) and C_t(b, g) [L, N]. Returns x [L, E].
Matrix mamba2_inputs(const Matrix& xBC, Matrix dt, const Eigen::Ref<const Vector>& dt_bias, const Mamba2Dims& dims,
                     int b, Tensor& dt_t, Tensor& B_t, Tensor& C_t);

// --- attention building blocks (models/attention.cpp) --------------------------------------------

// X Wᵀ + b for an nn.Linear: W = the layer's weight role `weight` [out, in]; b = role `bias` when
// that role is present (empty role name: no bias).
Matrix linear(const Matrix& X, const LoadedWeights& w, const std::string& weight, const std::string& bias = "");
// X Wᵀ for W [out, in] (an nn.Linear weight) and X W for W [in, out] (Conv1D), by the BLAS: every
// forward pass's products with weights go through these (libess/block_products.h, blas_gemm_xw).
Matrix matmul_nt(const Eigen::Ref<const Matrix>& X, const Eigen::Ref<const RowMatrix>& W);
Matrix matmul_nn(const Eigen::Ref<const Matrix>& X, const Eigen::Ref<const RowMatrix>& W);
// Declares the LM head under `name` (GPT-NeoX: embed_out.weight): required unless `tied`.
void declare_lm_head(WeightDecls& decls, int vocab, int dim, bool tied, const std::string& name);

// y = (x − mean(x)) / sqrt(var(x) + eps) ⊙ w + b over rows (biased variance, as torch LayerNorm);
// an empty b means no bias.
Matrix layer_norm(const Matrix& X, const Eigen::Ref<const Vector>& w, const Eigen::Ref<const Vector>& b, double eps);

// Activations by their Hugging Face names (transformers ACT2FN).
enum class Activation {
  silu,       // "silu", "swish": x·σ(x)
  gelu,       // "gelu": x·Φ(x), exact (erf)
  gelu_tanh,  // "gelu_new", "gelu_pytorch_tanh": ½x(1 + tanh(√(2/π)(x + 0.044715x³)))
  relu        // "relu"
};
// The activation named by config field `field` (`fallback` when absent); InputError naming the
// field for any other name.
Activation read_activation(const Config& c, const std::string& field, const std::string& fallback);
Matrix activate(const Matrix& X, Activation a);

// Rotary position embedding, rotate-half convention (GPT-NeoX / Llama layout), on the first
// 2·inv_freq.size() features of a head (partial rotary: the rest pass through unchanged):
// (x_k, x_{k+r/2}) ← (x_k cos θ − x_{k+r/2} sin θ, x_{k+r/2} cos θ + x_k sin θ), θ = t·inv_freq_k.
class Rotary {
 public:
  Rotary(const Vector& inv_freq, int seq_len);
  // X: [L, head_dim] (one head of one sequence), row t = position t.
  void apply(Eigen::Ref<Matrix> X) const;

 private:
  Matrix cos_, sin_;  // [L, r/2]
};
// inv_freq_k = theta^(−2k/dims), k = 0 … dims/2 − 1: the default rotary frequencies of `dims`
// rotated features.
Vector rope_inv_freq(double theta, int dims);

// Partial rotary (GPT-NeoX, Phi): the inverse frequencies of the int(head_dim · fraction) rotated
// features, fraction = the first present of `fraction_keys`, else rope_parameters'
// partial_rotary_factor, else `default_fraction` (the config class's default); theta = the first present of
// `theta_keys`, else rope_parameters' rope_theta, else 10000. Rope scaling (rope_scaling, a rope_type other than
// default) and an odd number of rotated features are refused (InputError naming the file).
Vector read_partial_rotary(const Config& c, int head_dim, const std::vector<std::string>& fraction_keys,
                           const std::vector<std::string>& theta_keys, double default_fraction);

// Multi-head softmax attention of every sequence through the captured operator.
struct AttentionSpec {
  int heads = 0, kv_heads = 0, head_dim = 0;  // query head h reads key/value head h / (heads / kv_heads)
  double scale = 0.0;                         // 0: head_dim^−1/2
  int window = 0;                             // sliding window w (i − w < j ≤ i); 0 = none
  double softcap = 0.0;                       // attention logit soft-capping c (Gemma-2); 0 = none
};
// Q[b]: [L, heads·head_dim], K[b], V[b]: [L, kv_heads·head_dim] (after rotary). Builds the
// softmax_attention operator (q, k per query head; a window ≥ L is stored as 0: no effect) named
// `context`, and O[b] = [L, heads·head_dim], head h = T_h V_{h / (heads / kv_heads)} through its
// multiply. Q and K are taken (moved in) and freed as they are packed into the operator. Returns
// the operator (for on_layer).
std::unique_ptr<LayerOperator> softmax_attention(std::vector<Matrix> Q, std::vector<Matrix> K,
                                                 const std::vector<Matrix>& V, const AttentionSpec& spec,
                                                 const std::string& context, std::vector<Matrix>& O);

// --- the Llama-style decoder (models/llama.cpp) -------------------------------------------------
// Pre-norm blocks: h += o_proj(softmax_attention(rope(q), rope(k)) v), h += down(act(gate) ⊙ up),
// RMSNorm, grouped-query attention. Variants (Mistral; Qwen2 = q/k/v biases; Qwen3 = q/k norms;
// Gemma-2 = sandwich norms, soft-capping, alternating windows) adjust the spec that
// read_llama_config() fills from Llama's config fields, then call make_llama_decoder.
struct LlamaSpec {
  std::string architecture;
  int vocab = 0, hidden = 0, intermediate = 0, layers = 0, heads = 0, kv_heads = 0, head_dim = 0;
  double rms_eps = 1e-6;
  bool qkv_bias = false;              // biases on q_proj, k_proj, v_proj
  bool o_bias = false;                // bias on o_proj
  bool mlp_bias = false;              // biases on gate_proj, up_proj, down_proj
  int window = 0;                     // sliding window w (attend to i − w < j ≤ i); 0 = none
  bool tied = false;                  // tie_word_embeddings
  Vector inv_freq;                    // rotary inverse frequencies (head_dim / 2), scaling applied
  Activation act = Activation::silu;  // the MLP gate's activation (hidden_act)
  bool qk_norm = false;               // Qwen3: RMSNorm over head_dim of each q and k head (q_norm,
                                      // k_norm), before the rotary embedding
  // Gemma-2:
  std::vector<int> layer_windows;  // per-layer sliding window (0 = full); empty: `window` everywhere
  bool norm_plus_one = false;      // RMSNorm scales by (1 + w) instead of w
  bool sandwich_norms = false;     // post_attention_layernorm on the attention output, then
                                   // pre_/post_feedforward_layernorm around the MLP
  double embed_scale = 0.0;        // embeddings × this (Gemma: √hidden); 0 = none
  double attn_scale = 0.0;         // attention scale; 0 = head_dim^−1/2
  double attn_softcap = 0.0;       // attention logit soft-capping; 0 = none
  double final_softcap = 0.0;      // final logit soft-capping; 0 = none
};
// Llama's fields: vocab_size, hidden_size, intermediate_size, num_hidden_layers,
// num_attention_heads, num_key_value_heads, head_dim, rms_norm_eps, hidden_act (Activation names),
// attention_bias (q/k/v/o), mlp_bias, tie_word_embeddings, rope_theta + rope_scaling or
// rope_parameters (default, linear, llama3).
LlamaSpec read_llama_config(const Config& c, const std::string& architecture);
std::unique_ptr<CausalLM> make_llama_decoder(const std::string& dir, const LlamaSpec& spec);

}  // namespace ess::models
