// LlamaForCausalLM and MistralForCausalLM (Hugging Face transformers layout): pre-norm decoder,
// rotary embeddings (rotate-half convention; default, "linear" and "llama3" scaling), grouped-query
// attention with head_dim from the config, SwiGLU MLP; Mistral's sliding_window (i − j < w).
// Captured operator per layer: family "softmax_attention" with q, k after RoPE [B, H, L, d]
// (key heads repeated for the query heads that share them), scale d^−1/2, window.
#include <cmath>

#include "libess/error.h"
#include "models/models.h"
#include "operators/softmax_attention.h"

namespace ess::models {

namespace {

class Llama final : public CausalLM {
 public:
  Llama(const std::string& dir, const Config& c, bool mistral) : dir_(dir), W_(dir), mistral_(mistral) {
    V_ = c.integer("vocab_size");
    D_ = c.integer("hidden_size");
    I_ = c.integer("intermediate_size");
    layers_ = c.integer("num_hidden_layers");
    H_ = c.integer("num_attention_heads");
    Hkv_ = c.integer("num_key_value_heads", H_);
    hd_ = c.has("head_dim") ? c.integer("head_dim") : D_ / std::max(H_, 1);
    c.product({H_, hd_}, "num_attention_heads × head_dim");
    c.product({Hkv_, hd_}, "num_key_value_heads × head_dim");
    if (H_ < 1 || Hkv_ < 1 || H_ % Hkv_ != 0)
      throw InputError(c.path() + ": num_attention_heads must be a multiple of num_key_value_heads");
    if (hd_ % 2) throw InputError(c.path() + ": head_dim must be even for rotary embeddings");
    eps_ = c.number("rms_norm_eps", 1e-6, Config::kNonNegativeNumber);
    bias_ = c.boolean("attention_bias", false);
    window_ = c.integer("sliding_window", 0, Config::kNonNegative);
    if (c.has("hidden_act") && c.json()["hidden_act"] != "silu")
      throw InputError(c.path() + ": hidden_act " + c.json()["hidden_act"].dump() + " is not supported (silu only)");
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
    inv_freq_.resize(hd_ / 2);
    for (int k = 0; k < hd_ / 2; ++k) inv_freq_(k) = 1.0 / std::pow(theta, 2.0 * k / hd_);
    if (!rope.is_object()) throw InputError(c.path() + ": rope_scaling must be an object");
    {
      const Config sc(rope, c.path() + " rope scaling");
      std::string type = rope.value("rope_type", rope.value("type", std::string("default")));
      if (type == "llama3") {
        const auto positive = Config::kPositiveNumber;
        const double f = sc.number("factor", positive), lo = sc.number("low_freq_factor", positive),
                     hi = sc.number("high_freq_factor", positive),
                     orig = sc.number("original_max_position_embeddings", positive);
        const double lo_wl = orig / lo, hi_wl = orig / hi;
        for (int k = 0; k < hd_ / 2; ++k) {
          const double inv = inv_freq_(k), wl = 2 * M_PI / inv;
          if (wl < hi_wl) continue;  // high frequency: unchanged
          if (wl > lo_wl) {
            inv_freq_(k) = inv / f;
          } else {
            const double smooth = (orig / wl - lo) / (hi - lo);
            inv_freq_(k) = (1 - smooth) * inv / f + smooth * inv;
          }
        }
      } else if (type == "linear") {
        inv_freq_ /= sc.number("factor", Config::kPositiveNumber);
      } else if (type != "default") {
        throw InputError(c.path() + ": rope type '" + type + "' is not supported (default, linear, llama3)");
      }
    }
    head_ = W_.has("lm_head.weight") ? "lm_head.weight" : "model.embed_tokens.weight";
    if (head_ != "lm_head.weight" && !c.boolean("tie_word_embeddings", false))
      throw InputError(dir + ": no 'lm_head.weight' and tie_word_embeddings is false");
    auto shape = [&](const std::string& n, std::vector<std::int64_t> s) { expect_tensor_shape(W_, n, s); };
    shape("model.embed_tokens.weight", {V_, D_});
    shape(head_, {V_, D_});
    shape("model.norm.weight", {D_});
    for (int l = 0; l < layers_; ++l) {
      const std::string p = "model.layers." + std::to_string(l) + ".";
      shape(p + "input_layernorm.weight", {D_});
      shape(p + "post_attention_layernorm.weight", {D_});
      shape(p + "self_attn.q_proj.weight", {H_ * hd_, D_});
      shape(p + "self_attn.k_proj.weight", {Hkv_ * hd_, D_});
      shape(p + "self_attn.v_proj.weight", {Hkv_ * hd_, D_});
      shape(p + "self_attn.o_proj.weight", {D_, H_ * hd_});
      shape(p + "mlp.gate_proj.weight", {I_, D_});
      shape(p + "mlp.up_proj.weight", {I_, D_});
      shape(p + "mlp.down_proj.weight", {D_, I_});
    }
  }

  std::string architecture() const override { return mistral_ ? "MistralForCausalLM" : "LlamaForCausalLM"; }
  int vocab_size() const override { return V_; }
  int num_layers() const override { return layers_; }

  ModelRun run(const Tokens& tokens, bool keep_logits) const override {
    const int B = static_cast<int>(tokens.size()), L = static_cast<int>(tokens[0].size());
    const int half = hd_ / 2, rep = H_ / Hkv_;
    const int window = window_ > 0 && window_ < L ? window_ : 0;
    const double scale = 1.0 / std::sqrt(static_cast<double>(hd_));
    Matrix cosm(L, half), sinm(L, half);
    for (int t = 0; t < L; ++t)
      for (int k = 0; k < half; ++k) {
        cosm(t, k) = std::cos(t * inv_freq_(k));
        sinm(t, k) = std::sin(t * inv_freq_(k));
      }
    // x ← x cos + rotate_half(x) sin, rotate_half(x) = (−x2, x1).
    auto rope = [&](Eigen::Ref<Matrix> X) {  // X [L, hd]
      for (int t = 0; t < L; ++t)
        for (int k = 0; k < half; ++k) {
          const double a = X(t, k), b = X(t, k + half);
          X(t, k) = a * cosm(t, k) - b * sinm(t, k);
          X(t, k + half) = b * cosm(t, k) + a * sinm(t, k);
        }
    };
    std::vector<Matrix> Hs = embed(W_, "model.embed_tokens.weight", V_, D_, tokens);
    ModelRun out;
    for (int l = 0; l < layers_; ++l) {
      const std::string p = "model.layers." + std::to_string(l) + ".";
      const Vector n1 = W_.vector(p + "input_layernorm.weight", D_),
                   n2 = W_.vector(p + "post_attention_layernorm.weight", D_);
      const RowMatrix Wq = W_.matrix(p + "self_attn.q_proj.weight", H_ * hd_, D_);
      const RowMatrix Wk = W_.matrix(p + "self_attn.k_proj.weight", Hkv_ * hd_, D_);
      const RowMatrix Wv = W_.matrix(p + "self_attn.v_proj.weight", Hkv_ * hd_, D_);
      const RowMatrix Wo = W_.matrix(p + "self_attn.o_proj.weight", D_, H_ * hd_);
      const Vector bq = bias_ ? W_.vector(p + "self_attn.q_proj.bias", H_ * hd_) : Vector::Zero(H_ * hd_);
      const Vector bk = bias_ ? W_.vector(p + "self_attn.k_proj.bias", Hkv_ * hd_) : Vector::Zero(Hkv_ * hd_);
      const Vector bv = bias_ ? W_.vector(p + "self_attn.v_proj.bias", Hkv_ * hd_) : Vector::Zero(Hkv_ * hd_);
      const RowMatrix Wg = W_.matrix(p + "mlp.gate_proj.weight", I_, D_),
                      Wu = W_.matrix(p + "mlp.up_proj.weight", I_, D_);
      const RowMatrix Wd = W_.matrix(p + "mlp.down_proj.weight", D_, I_);
      Tensor q_t({B, H_, L, hd_}), k_t({B, H_, L, hd_});
      for (int b = 0; b < B; ++b) {
        const Matrix X = rms_norm(Hs[b], n1, eps_);
        Matrix Q = (X * Wq.transpose()).rowwise() + bq.transpose();
        Matrix K = (X * Wk.transpose()).rowwise() + bk.transpose();
        const Matrix Vv = (X * Wv.transpose()).rowwise() + bv.transpose();
        for (int h = 0; h < H_; ++h) rope(Q.middleCols(h * hd_, hd_));
        for (int h = 0; h < Hkv_; ++h) rope(K.middleCols(h * hd_, hd_));
        Matrix O(L, H_ * hd_);
        for (int h = 0; h < H_; ++h) {
          const int g = h / rep;
          const Matrix S = Q.middleCols(h * hd_, hd_) * K.middleCols(g * hd_, hd_).transpose() * scale;
          Matrix P = Matrix::Zero(L, L);
          for (int i = 0; i < L; ++i) {
            const int j0 = window ? std::max(0, i - window + 1) : 0;
            double m = -INFINITY, z = 0;
            for (int j = j0; j <= i; ++j) m = std::max(m, S(i, j));
            for (int j = j0; j <= i; ++j) z += (P(i, j) = std::exp(S(i, j) - m));
            P.row(i) /= z;
          }
          O.middleCols(h * hd_, hd_) = P * Vv.middleCols(g * hd_, hd_);
          Eigen::Map<RowMatrix>(q_t.data.data() + (static_cast<size_t>(b) * H_ + h) * L * hd_, L, hd_) =
              Q.middleCols(h * hd_, hd_);
          Eigen::Map<RowMatrix>(k_t.data.data() + (static_cast<size_t>(b) * H_ + h) * L * hd_, L, hd_) =
              K.middleCols(g * hd_, hd_);
        }
        Hs[b] += O * Wo.transpose();
        const Matrix X2 = rms_norm(Hs[b], n2, eps_);
        const Matrix gate = silu(X2 * Wg.transpose());
        Hs[b] += gate.cwiseProduct(X2 * Wu.transpose()) * Wd.transpose();
      }
      const std::string name = "model.layers." + std::to_string(l) + ".self_attn";
      out.layers.push_back(
          {name, l,
           std::make_unique<SoftmaxAttentionOperator>(std::move(q_t), std::move(k_t), std::vector<std::uint8_t>{},
                                                      scale, window, dir_ + ":" + name)});
    }
    final_norm_and_head(W_, "model.norm.weight", head_, V_, D_, eps_, Hs, keep_logits, out);
    return out;
  }

 private:
  std::string dir_, head_;
  Weights W_;
  bool mistral_;
  int V_, D_, I_, layers_, H_, Hkv_, hd_, window_;
  double eps_;
  bool bias_;
  Vector inv_freq_;
};

}  // namespace

std::unique_ptr<CausalLM> make_llama(const std::string& dir, const Config& c, bool mistral) {
  return std::make_unique<Llama>(dir, c, mistral);
}

}  // namespace ess::models
