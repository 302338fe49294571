// PhiForCausalLM (Phi-1, Phi-1.5, Phi-2; Hugging Face transformers layout): one LayerNorm (with bias)
// per block feeding attention and MLP in parallel,
//   h ← h + dense(attention(x)) + fc2(act(fc1(x))),  x = input_layernorm(h),
// q/k/v projections with biases, grouped-query heads (num_key_value_heads), partial rotary embedding
// on the first int(head_dim · partial_rotary_factor) features, final_layernorm, and an LM head with
// a bias. qk_layernorm is refused.
// Captured operator per layer: softmax_attention, q, k after the rotary embedding, scale
// head_dim^−1/2; the attention output is T v through the operator.
#include <cmath>

#include "libess/error.h"
#include "models/models.h"

namespace ess::models {
namespace {

class Phi final : public CausalLM {
 public:
  Phi(const std::string& dir, const Config& c) : CausalLM(dir, "PhiForCausalLM") {
    vocab_ = c.integer("vocab_size");
    layers_ = c.integer("num_hidden_layers");
    D_ = c.integer("hidden_size");
    H_ = c.integer("num_attention_heads");
    Hkv_ = c.integer("num_key_value_heads", H_);
    const int I = c.integer("intermediate_size");
    eps_ = c.number("layer_norm_eps", 1e-5);
    act_ = read_activation(c, "hidden_act", "gelu_new");
    if (H_ < 1 || D_ % H_ != 0) throw InputError(c.path() + ": hidden_size must be a multiple of num_attention_heads");
    if (Hkv_ < 1 || H_ % Hkv_ != 0)
      throw InputError(c.path() + ": num_attention_heads must be a multiple of num_key_value_heads");
    if (c.boolean("qk_layernorm", false)) throw InputError(c.path() + ": qk_layernorm true is not supported");
    inv_freq_ = read_partial_rotary(c, D_ / H_, {"partial_rotary_factor"}, {"rope_theta"}, 0.5);  // PhiConfig's default
    const std::int64_t V = vocab_, D = D_, kv = static_cast<std::int64_t>(Hkv_) * (D_ / H_);
    WeightDecls w(layers_);
    w.global("embed", "model.embed_tokens.weight", {V, D});
    const std::string p = "model.layers.{l}.";
    w.layer("ln", p + "input_layernorm.weight", {D});
    w.layer("ln_bias", p + "input_layernorm.bias", {D});
    w.layer("q_proj", p + "self_attn.q_proj.weight", {D, D});
    w.layer("q_bias", p + "self_attn.q_proj.bias", {D});
    w.layer("k_proj", p + "self_attn.k_proj.weight", {kv, D});
    w.layer("k_bias", p + "self_attn.k_proj.bias", {kv});
    w.layer("v_proj", p + "self_attn.v_proj.weight", {kv, D});
    w.layer("v_bias", p + "self_attn.v_proj.bias", {kv});
    w.layer("dense", p + "self_attn.dense.weight", {D, D});
    w.layer("dense_bias", p + "self_attn.dense.bias", {D});
    w.layer("fc1", p + "mlp.fc1.weight", {I, D});
    w.layer("fc1_bias", p + "mlp.fc1.bias", {I});
    w.layer("fc2", p + "mlp.fc2.weight", {D, I});
    w.layer("fc2_bias", p + "mlp.fc2.bias", {D});
    w.global("ln_f", "model.final_layernorm.weight", {D});
    w.global("ln_f_bias", "model.final_layernorm.bias", {D});
    declare_lm_head(w, vocab_, D_, c.boolean("tie_word_embeddings", false));
    w.global("lm_head_bias", "lm_head.bias", {V});
    W_.declare(std::move(w));
  }

 protected:
  void forward(const Tokens& tokens, const LayerCallback& on_layer, bool keep_logits, ModelRun& out) const override {
    const int B = static_cast<int>(tokens.size()), L = static_cast<int>(tokens[0].size());
    const int hd = D_ / H_;
    const Rotary rope(inv_freq_, L);
    AttentionSpec a;
    a.heads = H_;
    a.kv_heads = Hkv_;
    a.head_dim = hd;
    std::vector<Matrix> Hs = embed(W_, tokens);
    for (int l = 0; l < layers_; ++l) {
      const LoadedWeights w = W_.load_layer(l);
      std::vector<Matrix> Xs(B), Qs(B), Ks(B), Vs(B), Os;
      for (int b = 0; b < B; ++b) {
        Xs[b] = layer_norm(Hs[b], w.vector("ln"), w.vector("ln_bias"), eps_);
        Qs[b] = linear(Xs[b], w, "q_proj", "q_bias");
        Ks[b] = linear(Xs[b], w, "k_proj", "k_bias");
        Vs[b] = linear(Xs[b], w, "v_proj", "v_bias");
        for (int h = 0; h < H_; ++h) rope.apply(Qs[b].middleCols(h * hd, hd));
        for (int h = 0; h < Hkv_; ++h) rope.apply(Ks[b].middleCols(h * hd, hd));
      }
      const std::string name = "model.layers." + std::to_string(l) + ".self_attn";
      auto op = softmax_attention(std::move(Qs), std::move(Ks), Vs, a, W_.dir() + ":" + name, Os);
      for (int b = 0; b < B; ++b)
        Hs[b] += linear(Os[b], w, "dense", "dense_bias") +
                 linear(activate(linear(Xs[b], w, "fc1", "fc1_bias"), act_), w, "fc2", "fc2_bias");
      on_layer({name, l, std::move(op), hd});
    }
    const std::string head = W_.has("lm_head") ? "lm_head" : "embed";
    const LoadedWeights g = W_.load_global({"ln_f", "ln_f_bias", head, "lm_head_bias"});
    HeadOptions o;
    o.bias = g.vector("lm_head_bias");
    for (const Matrix& h : Hs)
      finish_logits(layer_norm(h, g.vector("ln_f"), g.vector("ln_f_bias"), eps_), g.matrix(head), keep_logits, out, o);
  }

 private:
  int D_ = 0, H_ = 0, Hkv_ = 0;
  double eps_ = 1e-5;
  Activation act_ = Activation::gelu_tanh;
  Vector inv_freq_;
};

std::unique_ptr<CausalLM> make_phi(const std::string& dir, const Config& c) { return std::make_unique<Phi>(dir, c); }

}  // namespace

ESS_REGISTER_ARCHITECTURE("PhiForCausalLM", make_phi, "phi");

}  // namespace ess::models
