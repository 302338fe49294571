// GPTNeoXForCausalLM (Pythia; Hugging Face transformers layout): LayerNorm with biases, fused
// query_key_value [3·hidden, hidden] whose output is per head [q | k | v] (head-interleaved, not
// [all q | all k | all v]), partial rotary embedding on the first int(head_dim · rotary_pct)
// features (rotate-half convention), dense output projection, MLP dense_4h_to_h(act(dense_h_to_4h)),
// and either the parallel residual (use_parallel_residual, the default and Pythia's):
//   h ← h + attn(ln1(h)) + mlp(ln2(h))
// or the sequential one: h ← h + attn(ln1(h)); h ← h + mlp(ln2(h)). Final LayerNorm, embed_out head.
// Captured operator per layer: softmax_attention, q, k after the rotary embedding, scale
// head_dim^−1/2; the attention output is T v through the operator.
#include <cmath>

#include "libess/error.h"
#include "models/models.h"

namespace ess::models {
namespace {

class GptNeoX final : public CausalLM {
 public:
  GptNeoX(const std::string& dir, const Config& c) : CausalLM(dir, "GPTNeoXForCausalLM") {
    vocab_ = c.integer("vocab_size");
    layers_ = c.integer("num_hidden_layers");
    D_ = c.integer("hidden_size");
    H_ = c.integer("num_attention_heads");
    const int I = c.integer("intermediate_size");
    eps_ = c.number("layer_norm_eps", 1e-5);
    act_ = read_activation(c, "hidden_act", "gelu");
    parallel_ = c.boolean("use_parallel_residual", true);
    const bool bias = c.boolean("attention_bias", true);
    if (H_ < 1 || D_ % H_ != 0) throw InputError(c.path() + ": hidden_size must be a multiple of num_attention_heads");
    inv_freq_ =
        read_partial_rotary(c, D_ / H_, {"rotary_pct", "partial_rotary_factor"}, {"rotary_emb_base", "rope_theta"},
                            0.25);  // GPTNeoXConfig's default rotary_pct
    const std::int64_t V = vocab_, D = D_;
    WeightDecls w(layers_);
    w.global("embed", "gpt_neox.embed_in.weight", {V, D});
    const std::string p = "gpt_neox.layers.{l}.";
    w.layer("ln_1", p + "input_layernorm.weight", {D});
    w.layer("ln_1_bias", p + "input_layernorm.bias", {D});
    w.layer("qkv", p + "attention.query_key_value.weight", {3 * D, D});
    w.layer("qkv_bias", p + "attention.query_key_value.bias", {3 * D}).when(bias, "attention_bias");
    w.layer("dense", p + "attention.dense.weight", {D, D});
    w.layer("dense_bias", p + "attention.dense.bias", {D}).when(bias, "attention_bias");
    w.layer("ln_2", p + "post_attention_layernorm.weight", {D});
    w.layer("ln_2_bias", p + "post_attention_layernorm.bias", {D});
    w.layer("fc_in", p + "mlp.dense_h_to_4h.weight", {I, D});
    w.layer("fc_in_bias", p + "mlp.dense_h_to_4h.bias", {I});
    w.layer("fc_out", p + "mlp.dense_4h_to_h.weight", {D, I});
    w.layer("fc_out_bias", p + "mlp.dense_4h_to_h.bias", {D});
    w.global("ln_f", "gpt_neox.final_layer_norm.weight", {D});
    w.global("ln_f_bias", "gpt_neox.final_layer_norm.bias", {D});
    declare_lm_head(w, vocab_, D_, c.boolean("tie_word_embeddings", false), "embed_out.weight");
    W_.declare(std::move(w));
  }

 protected:
  void forward(const Tokens& tokens, const LayerCallback& on_layer, bool keep_logits, ModelRun& out) const override {
    const int B = static_cast<int>(tokens.size()), L = static_cast<int>(tokens[0].size());
    const int H = H_, hd = D_ / H_;
    const Rotary rope(inv_freq_, L);
    AttentionSpec a;
    a.heads = a.kv_heads = H;
    a.head_dim = hd;
    std::vector<Matrix> Hs = embed(W_, tokens);
    for (int l = 0; l < layers_; ++l) {
      const LoadedWeights w = W_.load_layer(l);
      std::vector<Matrix> Qs(B), Ks(B), Vs(B), Os;
      for (int b = 0; b < B; ++b) {
        const Matrix qkv =
            linear(layer_norm(Hs[b], w.vector("ln_1"), w.vector("ln_1_bias"), eps_), w, "qkv", "qkv_bias");
        Qs[b].resize(L, D_);
        Ks[b].resize(L, D_);
        Vs[b].resize(L, D_);
        for (int h = 0; h < H; ++h) {  // head h: columns [3h·hd, 3(h+1)·hd) = [q | k | v]
          Qs[b].middleCols(h * hd, hd) = qkv.middleCols(3 * h * hd, hd);
          Ks[b].middleCols(h * hd, hd) = qkv.middleCols(3 * h * hd + hd, hd);
          Vs[b].middleCols(h * hd, hd) = qkv.middleCols(3 * h * hd + 2 * hd, hd);
          rope.apply(Qs[b].middleCols(h * hd, hd));
          rope.apply(Ks[b].middleCols(h * hd, hd));
        }
      }
      const std::string name = "gpt_neox.layers." + std::to_string(l) + ".attention";
      auto op = softmax_attention(std::move(Qs), std::move(Ks), Vs, a, W_.dir() + ":" + name, Os);
      auto mlp = [&](const Matrix& X) {
        const Matrix x = layer_norm(X, w.vector("ln_2"), w.vector("ln_2_bias"), eps_);
        return linear(activate(linear(x, w, "fc_in", "fc_in_bias"), act_), w, "fc_out", "fc_out_bias");
      };
      for (int b = 0; b < B; ++b) {
        const Matrix attn = linear(Os[b], w, "dense", "dense_bias");
        if (parallel_) {
          Hs[b] += attn + mlp(Hs[b]);
        } else {
          Hs[b] += attn;
          Hs[b] += mlp(Hs[b]);
        }
      }
      on_layer({name, l, std::move(op), hd});
    }
    const std::string head = W_.has("lm_head") ? "lm_head" : "embed";
    const LoadedWeights g = W_.load_global({"ln_f", "ln_f_bias", head});
    for (const Matrix& h : Hs)
      finish_logits(layer_norm(h, g.vector("ln_f"), g.vector("ln_f_bias"), eps_), g.matrix(head), keep_logits, out);
  }

 private:
  int D_ = 0, H_ = 0;
  double eps_ = 1e-5;
  bool parallel_ = true;
  Activation act_ = Activation::gelu;
  Vector inv_freq_;
};

std::unique_ptr<CausalLM> make_gpt_neox(const std::string& dir, const Config& c) {
  return std::make_unique<GptNeoX>(dir, c);
}

}  // namespace

ESS_REGISTER_ARCHITECTURE("GPTNeoXForCausalLM", make_gpt_neox, "gpt_neox");

}  // namespace ess::models
