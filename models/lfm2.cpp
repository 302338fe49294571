// Lfm2ForCausalLM (Liquid AI LFM2, Hugging Face transformers layout): a hybrid of gated short
// convolutions and grouped-query attention, chosen per layer by `layer_types` (else `full_attn_idxs`).
//   conv layer:  [B | C | x] = in_proj(rms(h)); y = C ⊙ causalconv(B ⊙ x) (depthwise, conv_L_cache taps);
//                h += out_proj(y)
//   attention:   q, k = RMSNorm per head (q_layernorm, k_layernorm) then RoPE; softmax attention;
//                h += out_proj(o)
//   every layer: h += w2(silu(w1(u)) ⊙ w3(u)), u = rms(h; ffn_norm)
//   logits = rms(h; embedding_norm) · lm_headᵀ (the final norm is named embedding_norm upstream).
// Captured operators: family "conv" per channel (h[m] = conv.weight[c, 0, K−1−m], pre_gate = B,
// post_gate = C: T = diag(C) Toeplitz(h) diag(B)) named model.layers.{l}.conv, and family
// "softmax_attention" per query head named model.layers.{l}.self_attn. Both outputs are computed
// through the operators (multiply); the conv bias (gated by C) is added outside T.
#include <cmath>

#include "libess/error.h"
#include "libess/parallel.h"
#include "models/models.h"
#include "operators/conv.h"

namespace ess::models {

namespace {

class Lfm2 final : public CausalLM {
 public:
  Lfm2(const std::string& dir, const Config& c) : CausalLM(dir, "Lfm2ForCausalLM") {
    vocab_ = c.integer("vocab_size");
    layers_ = c.integer("num_hidden_layers");
    D_ = c.integer("hidden_size");
    H_ = c.integer("num_attention_heads", 32);
    Hkv_ = c.integer("num_key_value_heads", 8);  // Lfm2Config's defaults
    hd_ = c.has("head_dim") ? c.integer("head_dim") : D_ / H_;
    if (hd_ < 1) throw InputError(c.path() + ": hidden_size / num_attention_heads is 0");
    c.product({H_, hd_}, "num_attention_heads × head_dim");
    if (H_ % Hkv_ != 0) throw InputError(c.path() + ": num_attention_heads must be a multiple of num_key_value_heads");
    if (hd_ % 2) throw InputError(c.path() + ": head_dim must be even for rotary embeddings");
    eps_ = c.number("norm_eps", 1e-5, Config::kNonNegativeNumber);
    K_ = c.integer("conv_L_cache", 3);
    const bool bias = c.boolean("conv_bias", false);
    c.product({3, D_}, "3 × hidden_size");
    I_ = ff_dim(c);
    read_layer_types(c);
    inv_freq_ = read_rope(c);
    // tie_embedding (the original config key) wins over tie_word_embeddings, as Lfm2Config.
    const bool tied = c.boolean("tie_embedding", c.boolean("tie_word_embeddings", true));

    const std::int64_t V = vocab_, D = D_, q = H_ * hd_, kv = Hkv_ * hd_, hd = hd_, I = I_, K = K_;
    std::vector<bool> attn(layers_), conv(layers_);
    for (int l = 0; l < layers_; ++l) conv[l] = !(attn[l] = attention_[l]);
    const std::string a_why = "layer_types: full_attention", c_why = "layer_types: conv";
    WeightDecls w(layers_);
    w.global("embed", "model.embed_tokens.weight", {V, D});
    w.layer("operator_norm", "model.layers.{l}.operator_norm.weight", {D});
    w.layer("q_proj", "model.layers.{l}.self_attn.q_proj.weight", {q, D}).only_in_layers(attn, a_why);
    w.layer("k_proj", "model.layers.{l}.self_attn.k_proj.weight", {kv, D}).only_in_layers(attn, a_why);
    w.layer("v_proj", "model.layers.{l}.self_attn.v_proj.weight", {kv, D}).only_in_layers(attn, a_why);
    w.layer("o_proj", "model.layers.{l}.self_attn.out_proj.weight", {D, q}).only_in_layers(attn, a_why);
    w.layer("q_norm", "model.layers.{l}.self_attn.q_layernorm.weight", {hd}).only_in_layers(attn, a_why);
    w.layer("k_norm", "model.layers.{l}.self_attn.k_layernorm.weight", {hd}).only_in_layers(attn, a_why);
    w.layer("in_proj", "model.layers.{l}.conv.in_proj.weight", {3 * D, D}).only_in_layers(conv, c_why);
    w.layer("conv", "model.layers.{l}.conv.conv.weight", {D, 1, K}).only_in_layers(conv, c_why);
    w.layer("conv_out", "model.layers.{l}.conv.out_proj.weight", {D, D}).only_in_layers(conv, c_why);
    auto conv_bias = [&](const char* role, const char* name, std::int64_t n) {
      auto& d = w.layer(role, name, {n}).only_in_layers(conv, c_why + ", conv_bias");
      if (!bias) d.when(false, "conv_bias");
    };
    conv_bias("in_bias", "model.layers.{l}.conv.in_proj.bias", 3 * D);
    conv_bias("conv_bias", "model.layers.{l}.conv.conv.bias", D);
    conv_bias("conv_out_bias", "model.layers.{l}.conv.out_proj.bias", D);
    w.layer("ffn_norm", "model.layers.{l}.ffn_norm.weight", {D});
    w.layer("w1", "model.layers.{l}.feed_forward.w1.weight", {I, D});
    w.layer("w3", "model.layers.{l}.feed_forward.w3.weight", {I, D});
    w.layer("w2", "model.layers.{l}.feed_forward.w2.weight", {D, I});
    w.global("norm", "model.embedding_norm.weight", {D});
    declare_lm_head(w, vocab_, D_, tied);
    W_.declare(std::move(w));
  }

 protected:
  void forward(const Tokens& tokens, const LayerCallback& on_layer, bool keep_logits, ModelRun& out) const override {
    const int B = static_cast<int>(tokens.size()), L = static_cast<int>(tokens[0].size());
    const Rotary rope(inv_freq_, L);
    std::vector<Matrix> Hs = embed(W_, tokens);
    for (int l = 0; l < layers_; ++l) {
      const LoadedWeights w = W_.load_layer(l);
      std::vector<Matrix> Xs(B);
      for (int b = 0; b < B; ++b) Xs[b] = rms_norm(Hs[b], w.vector("operator_norm"), eps_);
      std::unique_ptr<LayerOperator> op;
      std::string name;
      if (attention_[l]) {
        name = "model.layers." + std::to_string(l) + ".self_attn";
        std::vector<Matrix> Qs(B), Ks(B), Vs(B), Os;
        for (int b = 0; b < B; ++b) {
          Qs[b] = linear(Xs[b], w, "q_proj");
          Ks[b] = linear(Xs[b], w, "k_proj");
          Vs[b] = linear(Xs[b], w, "v_proj");
          for (int h = 0; h < H_; ++h) {
            Qs[b].middleCols(h * hd_, hd_) = rms_norm(Qs[b].middleCols(h * hd_, hd_), w.vector("q_norm"), eps_);
            rope.apply(Qs[b].middleCols(h * hd_, hd_));
          }
          for (int h = 0; h < Hkv_; ++h) {
            Ks[b].middleCols(h * hd_, hd_) = rms_norm(Ks[b].middleCols(h * hd_, hd_), w.vector("k_norm"), eps_);
            rope.apply(Ks[b].middleCols(h * hd_, hd_));
          }
        }
        AttentionSpec a;
        a.heads = H_;
        a.kv_heads = Hkv_;
        a.head_dim = hd_;
        op = softmax_attention(std::move(Qs), std::move(Ks), Vs, a, W_.dir() + ":" + name, Os);
        for (int b = 0; b < B; ++b) Hs[b] += linear(Os[b], w, "o_proj");
      } else {
        name = "model.layers." + std::to_string(l) + ".conv";
        // [B | C | x] = in_proj(u): the three gates are the first, second and last D columns.
        Tensor h_t({D_, K_}), pre({B, D_, L}), post({B, D_, L});
        const auto taps = w.matrix("conv");  // [D, K]: taps[c, K−1] multiplies the current input
        for (int c = 0; c < D_; ++c)
          for (int m = 0; m < K_; ++m) h_t.matrix({})(c, m) = taps(c, K_ - 1 - m);
        std::vector<Matrix> xs(B), gated_bias(B);
        for (int b = 0; b < B; ++b) {
          const Matrix BCx = linear(Xs[b], w, "in_proj", "in_bias");
          pre.matrix({b}) = BCx.leftCols(D_).transpose();
          post.matrix({b}) = BCx.middleCols(D_, D_).transpose();
          xs[b] = BCx.rightCols(D_);
          if (w.has("conv_bias"))  // C ⊙ (conv(B ⊙ x) + bias): the bias term is outside T
            gated_bias[b] = BCx.middleCols(D_, D_) * w.vector("conv_bias").asDiagonal();
        }
        auto conv =
            std::make_unique<ConvOperator>(std::move(h_t), std::move(pre), std::move(post), L, W_.dir() + ":" + name);
        for (int b = 0; b < B; ++b) {
          Matrix y(L, D_);
          parallel_for(D_, [&](int c) { conv->multiply(b, c, xs[b].col(c), y.col(c)); });
          if (w.has("conv_bias")) y += gated_bias[b];
          Hs[b] += linear(y, w, "conv_out", "conv_out_bias");
        }
        op = std::move(conv);
      }
      for (int b = 0; b < B; ++b) {
        const Matrix U = rms_norm(Hs[b], w.vector("ffn_norm"), eps_);
        const Matrix gate = silu(linear(U, w, "w1"));
        Hs[b] += linear(gate.cwiseProduct(linear(U, w, "w3")), w, "w2");
      }
      on_layer({name, l, std::move(op), attention_[l] ? hd_ : 0});
    }
    final_norm_and_head(W_, "norm", eps_, Hs, keep_logits, out);
  }

 private:
  // Lfm2MLP's width: intermediate_size (block_ff_dim when present), with block_auto_adjust_ff_dim
  // (default true) int(2·I/3), then, unless block_ffn_dim_multiplier is null,
  // int(multiplier · I) rounded up to a multiple of block_multiple_of.
  static int ff_dim(const Config& c) {
    const std::string key = c.has("block_ff_dim") ? "block_ff_dim" : "intermediate_size";
    long long I = c.integer(key, 12288);
    if (c.boolean("block_auto_adjust_ff_dim", true)) {
      I = static_cast<long long>(2.0 * static_cast<double>(I) / 3.0);
      // An absent multiplier is the default 1.0 (rounding applies); null skips both steps.
      if (c.has("block_ffn_dim_multiplier") || !c.json().contains("block_ffn_dim_multiplier")) {
        const double mult = c.number("block_ffn_dim_multiplier", 1.0, Config::kPositiveNumber);
        I = static_cast<long long>(mult * static_cast<double>(I));
        const long long m = c.integer("block_multiple_of", 256);
        I = m * ((I + m - 1) / m);
      }
    }
    if (I < 1 || I > Config::kMaxInt)
      throw InputError(c.path() + ": the feed-forward width from " + key + " (" + std::to_string(I) +
                       ") is outside [1, " + std::to_string(Config::kMaxInt) + "]");
    return static_cast<int>(I);
  }

  // layer_types ("conv" / "full_attention"), else full_attn_idxs, else every layer attention.
  void read_layer_types(const Config& c) {
    attention_.assign(layers_, true);
    if (c.has("layer_types")) {
      const auto& types = c.json()["layer_types"];
      if (!types.is_array() || static_cast<int>(types.size()) != layers_)
        throw InputError(c.path() + ": layer_types must list one type per layer (" + std::to_string(layers_) + ")");
      for (int l = 0; l < layers_; ++l) {
        if (types[l] == "conv")
          attention_[l] = false;
        else if (types[l] != "full_attention")
          throw InputError(c.path() + ": layer_types[" + std::to_string(l) + "] = " + types[l].dump() +
                           " is not supported (conv, full_attention)");
      }
    } else if (c.has("full_attn_idxs")) {
      const auto& idxs = c.json()["full_attn_idxs"];
      if (!idxs.is_array()) throw InputError(c.path() + ": full_attn_idxs must be a list of layer indices");
      attention_.assign(layers_, false);
      for (const auto& i : idxs) {
        if (!i.is_number_integer() || i.get<long long>() < 0 || i.get<long long>() >= layers_)
          throw InputError(c.path() + ": full_attn_idxs entry " + i.dump() + " is not a layer index in [0, " +
                           std::to_string(layers_) + ")");
        attention_[i.get<int>()] = true;
      }
    }
  }

  // The rotary frequencies of the attention layers: Llama's rope fields (rope_theta + rope_scaling,
  // or rope_parameters, also nested under "full_attention"), theta defaulting to 1e6 (Lfm2Config;
  // the original key `theta` is accepted).
  Vector read_rope(const Config& c) const {
    nlohmann::json j = c.json();
    if (j.contains("rope_parameters") && j["rope_parameters"].is_object() &&
        j["rope_parameters"].contains("full_attention"))
      j["rope_parameters"] = j["rope_parameters"]["full_attention"];
    if (!c.has("rope_theta") && !(j.contains("rope_parameters") && j["rope_parameters"].is_object() &&
                                  j["rope_parameters"].contains("rope_theta")))
      j["rope_theta"] = c.has("theta") ? c.number("theta", Config::kPositiveNumber) : 1000000.0;
    // read_llama_config's other fields: the ones LFM2 names differently, filled in for it.
    j["intermediate_size"] = I_;
    j["num_attention_heads"] = H_;
    j["num_key_value_heads"] = Hkv_;
    j["head_dim"] = hd_;
    j.erase("hidden_act");
    j.erase("attention_bias");
    j.erase("mlp_bias");
    j.erase("tie_word_embeddings");
    j.erase("rms_norm_eps");
    return read_llama_config(Config(j, c.path()), "Lfm2ForCausalLM").inv_freq;
  }

  int D_, H_, Hkv_, hd_, K_, I_;
  double eps_;
  std::vector<bool> attention_;
  Vector inv_freq_;
};

std::unique_ptr<CausalLM> make_lfm2(const std::string& dir, const Config& c) { return std::make_unique<Lfm2>(dir, c); }

}  // namespace

ESS_REGISTER_ARCHITECTURE("Lfm2ForCausalLM", make_lfm2, "lfm2");

}  // namespace ess::models
