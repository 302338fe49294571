// GPT2LMHeadModel (Hugging Face transformers layout): learned absolute positions, pre-LayerNorm
// blocks with biases, Conv1D projections stored [in, out] (y = x W + b), fused c_attn = [q | k | v],
// MLP c_proj(act(c_fc(x))), final ln_f, LM head tied to wte unless tie_word_embeddings is false.
// Checkpoints saved from GPT2LMHeadModel name tensors "transformer.…"; those saved from GPT2Model
// (openai-community/gpt2's model.safetensors) lack the prefix: both are accepted.
// Captured operator per layer: softmax_attention, q, k of each head, scale head_dim^−1/2
// (1 without scale_attn_weights); the attention output is T v through the operator.
#include <cmath>

#include "libess/error.h"
#include "models/models.h"

namespace ess::models {
namespace {

class Gpt2 final : public CausalLM {
 public:
  Gpt2(const std::string& dir, const Config& c) : CausalLM(dir, "GPT2LMHeadModel") {
    vocab_ = c.integer("vocab_size");
    layers_ = c.integer("n_layer");
    D_ = c.integer("n_embd");
    H_ = c.integer("n_head");
    positions_ = c.integer("n_positions", 1024);
    I_ = c.has("n_inner") ? c.integer("n_inner") : 4 * D_;
    eps_ = c.number("layer_norm_epsilon", 1e-5);
    act_ = read_activation(c, "activation_function", "gelu_new");
    if (H_ < 1 || D_ % H_ != 0) throw InputError(c.path() + ": n_embd must be a multiple of n_head");
    if (c.boolean("scale_attn_by_inverse_layer_idx", false))
      throw InputError(c.path() + ": scale_attn_by_inverse_layer_idx true is not supported");
    if (c.boolean("add_cross_attention", false))
      throw InputError(c.path() + ": add_cross_attention true is not supported (decoder-only GPT-2)");
    // reorder_and_upcast_attn only changes the float precision of the scores: everything is float64 here.
    scale_ = c.boolean("scale_attn_weights", true) ? 1.0 / std::sqrt(static_cast<double>(D_ / H_)) : 1.0;
    const std::int64_t V = vocab_, D = D_, I = I_, P = positions_;
    WeightDecls w(layers_);
    auto g = [&](const char* role, const std::string& name, std::vector<std::int64_t> shape) {
      w.global(role, "transformer." + name, std::move(shape)).or_named(name);
    };
    auto l = [&](const char* role, const std::string& name, std::vector<std::int64_t> shape) {
      w.layer(role, "transformer.h.{l}." + name, std::move(shape)).or_named("h.{l}." + name);
    };
    g("embed", "wte.weight", {V, D});
    g("positions", "wpe.weight", {P, D});
    l("ln_1", "ln_1.weight", {D});
    l("ln_1_bias", "ln_1.bias", {D});
    l("c_attn", "attn.c_attn.weight", {D, 3 * D});  // Conv1D: [in, out]
    l("c_attn_bias", "attn.c_attn.bias", {3 * D});
    l("attn_c_proj", "attn.c_proj.weight", {D, D});
    l("attn_c_proj_bias", "attn.c_proj.bias", {D});
    l("ln_2", "ln_2.weight", {D});
    l("ln_2_bias", "ln_2.bias", {D});
    l("c_fc", "mlp.c_fc.weight", {D, I});
    l("c_fc_bias", "mlp.c_fc.bias", {I});
    l("mlp_c_proj", "mlp.c_proj.weight", {I, D});
    l("mlp_c_proj_bias", "mlp.c_proj.bias", {D});
    g("ln_f", "ln_f.weight", {D});
    g("ln_f_bias", "ln_f.bias", {D});
    declare_lm_head(w, vocab_, D_, c.boolean("tie_word_embeddings", true));
    W_.declare(std::move(w));
  }

 protected:
  void forward(const Tokens& tokens, const LayerCallback& on_layer, bool keep_logits, ModelRun& out) const override {
    const int B = static_cast<int>(tokens.size()), L = static_cast<int>(tokens[0].size()), D = D_;
    if (L > positions_)
      throw InputError(W_.dir() + ": sequence length " + std::to_string(L) + " exceeds n_positions " +
                       std::to_string(positions_) + " (GPT-2's learned position embeddings)");
    auto conv1d = [](const Matrix& X, const LoadedWeights& w, const char* weight, const char* bias) {
      Matrix Y = matmul_nn(X, w.matrix(weight));  // Conv1D: y = x W + b, W [in, out]
      Y.rowwise() += w.vector(bias).transpose();
      return Y;
    };
    std::vector<Matrix> Hs = embed(W_, tokens);
    {
      const LoadedWeights g = W_.load_global({"positions"});
      for (Matrix& h : Hs) h += g.matrix("positions").topRows(L);
    }
    AttentionSpec a;
    a.heads = a.kv_heads = H_;
    a.head_dim = D / H_;
    a.scale = scale_;
    for (int l = 0; l < layers_; ++l) {
      const LoadedWeights w = W_.load_layer(l);
      std::vector<Matrix> Qs(B), Ks(B), Vs(B), Os;
      for (int b = 0; b < B; ++b) {
        const Matrix qkv =
            conv1d(layer_norm(Hs[b], w.vector("ln_1"), w.vector("ln_1_bias"), eps_), w, "c_attn", "c_attn_bias");
        Qs[b] = qkv.leftCols(D);
        Ks[b] = qkv.middleCols(D, D);
        Vs[b] = qkv.rightCols(D);
      }
      const std::string name = "transformer.h." + std::to_string(l) + ".attn";
      auto op = softmax_attention(std::move(Qs), std::move(Ks), Vs, a, W_.dir() + ":" + name, Os);
      for (int b = 0; b < B; ++b) {
        Hs[b] += conv1d(Os[b], w, "attn_c_proj", "attn_c_proj_bias");
        const Matrix X2 = layer_norm(Hs[b], w.vector("ln_2"), w.vector("ln_2_bias"), eps_);
        Hs[b] += conv1d(activate(conv1d(X2, w, "c_fc", "c_fc_bias"), act_), w, "mlp_c_proj", "mlp_c_proj_bias");
      }
      on_layer({name, l, std::move(op), a.head_dim});
    }
    const std::string head = W_.has("lm_head") ? "lm_head" : "embed";
    const LoadedWeights g = W_.load_global({"ln_f", "ln_f_bias", head});
    for (const Matrix& h : Hs)
      finish_logits(layer_norm(h, g.vector("ln_f"), g.vector("ln_f_bias"), eps_), g.matrix(head), keep_logits, out);
  }

 private:
  int D_ = 0, H_ = 0, I_ = 0, positions_ = 0;
  double eps_ = 1e-5, scale_ = 1.0;
  Activation act_ = Activation::gelu_tanh;
};

std::unique_ptr<CausalLM> make_gpt2(const std::string& dir, const Config& c) { return std::make_unique<Gpt2>(dir, c); }

}  // namespace

ESS_REGISTER_ARCHITECTURE("GPT2LMHeadModel", make_gpt2, "gpt2");

}  // namespace ess::models
