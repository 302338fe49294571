// GLAForCausalLM in flash-linear-attention's layout (gated linear attention, Yang et al. 2023).
// Block: h ← h + o_proj(rmsnorm_h(o) ⊙ w ⊙ swish(g_proj(x))), x = rmsnorm(h) (attn_norm), with
// per head o_t = (q_t / √d_k)ᵀ S_t, S_t = diag(exp(gk_t)) S_{t−1} + k_t v_tᵀ,
// gk = logsigmoid(gk_proj.1(gk_proj.0(x))) / 16; then the GatedMLP down(swish(gate(x)) ⊙ up(x)) on
// mlp_norm. Short convolutions and feature maps are not supported (clear error).
// Captured operator per layer: family "gla" with q (scale folded in), k, log_decay [B, H, L, d_k].
#include <cmath>
#include <limits>

#include "libess/error.h"
#include "models/models.h"
#include "operators/gla.h"

namespace ess::models {

namespace {

double log_sigmoid(double x) { return x >= 0 ? -std::log1p(std::exp(-x)) : x - std::log1p(std::exp(x)); }

class Gla final : public CausalLM {
 public:
  Gla(const std::string& dir, const Config& c) : dir_(dir), W_(dir) {
    V_ = c.integer("vocab_size");
    D_ = c.integer("hidden_size");
    layers_ = c.integer("num_hidden_layers");
    H_ = c.integer("num_heads");
    Hkv_ = c.integer("num_kv_heads", H_);
    Kd_ = c.scaled("expand_k", 0.5, D_);
    Vd_ = c.scaled("expand_v", 1.0, D_);
    eps_ = c.number("norm_eps", 1e-6, Config::kNonNegativeNumber);
    if (c.has("clamp_min")) clamp_min_ = c.number("clamp_min");
    if (H_ < 1 || Hkv_ < 1 || H_ % Hkv_ || Kd_ % H_ || Vd_ % H_)
      throw InputError(c.path() + ": key/value dimensions must split evenly over num_heads and num_kv_heads");
    if (c.boolean("use_short_conv", false))
      throw InputError(c.path() + ": GLA with use_short_conv is not supported yet");
    if (c.has("feature_map")) throw InputError(c.path() + ": GLA with a feature_map is not supported yet");
    if (!c.boolean("use_output_gate", true))
      throw InputError(c.path() + ": GLA without the output gate is not supported yet");
    if (c.has("attn"))
      throw InputError(c.path() + ": hybrid GLA with softmax-attention layers ('attn') is not supported yet");
    if (c.has("hidden_act") && c.json()["hidden_act"] != "swish" && c.json()["hidden_act"] != "silu")
      throw InputError(c.path() + ": hidden_act " + c.json()["hidden_act"].dump() + " is not supported (swish)");
    dk_ = Kd_ / H_;
    dv_ = Vd_ / H_;
    const std::string p0 = "model.layers.0.";
    if (!W_.has(p0 + "attn.gk_proj.0.weight") || !W_.has(p0 + "mlp.gate_proj.weight"))
      throw InputError(dir + ": checkpoint has no tensor '" + p0 + "attn.gk_proj.0.weight' / 'mlp.gate_proj.weight'");
    rank_ = static_cast<int>(W_.info(p0 + "attn.gk_proj.0.weight").shape.at(0));
    I_ = static_cast<int>(W_.info(p0 + "mlp.gate_proj.weight").shape.at(0));
    head_ = W_.has("lm_head.weight") ? "lm_head.weight" : "model.embeddings.weight";
    if (head_ != "lm_head.weight" && !c.boolean("tie_word_embeddings", false))
      throw InputError(dir + ": no 'lm_head.weight' and tie_word_embeddings is false");
    const int Kg = Kd_ / (H_ / Hkv_), Vg = Vd_ / (H_ / Hkv_);
    auto shape = [&](const std::string& n, std::vector<std::int64_t> s) { expect_tensor_shape(W_, n, s); };
    shape("model.embeddings.weight", {V_, D_});
    shape(head_, {V_, D_});
    shape("model.norm.weight", {D_});
    for (int l = 0; l < layers_; ++l) {
      const std::string p = "model.layers." + std::to_string(l) + ".";
      shape(p + "attn_norm.weight", {D_});
      shape(p + "mlp_norm.weight", {D_});
      shape(p + "attn.q_proj.weight", {Kd_, D_});
      shape(p + "attn.k_proj.weight", {Kg, D_});
      shape(p + "attn.v_proj.weight", {Vg, D_});
      shape(p + "attn.g_proj.weight", {Vd_, D_});
      shape(p + "attn.gk_proj.0.weight", {rank_, D_});
      shape(p + "attn.gk_proj.1.weight", {Kg, rank_});
      shape(p + "attn.gk_proj.1.bias", {Kg});
      shape(p + "attn.o_proj.weight", {D_, Vd_});
      shape(p + "attn.g_norm_swish_gate.weight", {dv_});
      shape(p + "mlp.gate_proj.weight", {I_, D_});
      shape(p + "mlp.up_proj.weight", {I_, D_});
      shape(p + "mlp.down_proj.weight", {D_, I_});
    }
  }

  std::string architecture() const override { return "GLAForCausalLM"; }
  int vocab_size() const override { return V_; }
  int num_layers() const override { return layers_; }

  ModelRun run(const Tokens& tokens, bool keep_logits) const override {
    const int B = static_cast<int>(tokens.size()), L = static_cast<int>(tokens[0].size());
    const int rep = H_ / Hkv_, Kg = Kd_ / rep, Vg = Vd_ / rep;
    const double scale = 1.0 / std::sqrt(static_cast<double>(dk_));
    std::vector<Matrix> Hs = embed(W_, "model.embeddings.weight", V_, D_, tokens);
    ModelRun out;
    for (int l = 0; l < layers_; ++l) {
      const std::string p = "model.layers." + std::to_string(l) + ".";
      const Vector n1 = W_.vector(p + "attn_norm.weight", D_), n2 = W_.vector(p + "mlp_norm.weight", D_);
      const RowMatrix Wq = W_.matrix(p + "attn.q_proj.weight", Kd_, D_),
                      Wk = W_.matrix(p + "attn.k_proj.weight", Kg, D_);
      const RowMatrix Wv = W_.matrix(p + "attn.v_proj.weight", Vg, D_),
                      Wg = W_.matrix(p + "attn.g_proj.weight", Vd_, D_);
      const RowMatrix G0 = W_.matrix(p + "attn.gk_proj.0.weight", rank_, D_),
                      G1 = W_.matrix(p + "attn.gk_proj.1.weight", Kg, rank_);
      const Vector g1b = W_.vector(p + "attn.gk_proj.1.bias", Kg);
      const RowMatrix Wo = W_.matrix(p + "attn.o_proj.weight", D_, Vd_);
      const Vector gnorm = W_.vector(p + "attn.g_norm_swish_gate.weight", dv_);
      const RowMatrix Wgate = W_.matrix(p + "mlp.gate_proj.weight", I_, D_),
                      Wup = W_.matrix(p + "mlp.up_proj.weight", I_, D_);
      const RowMatrix Wdown = W_.matrix(p + "mlp.down_proj.weight", D_, I_);
      Tensor q_t({B, H_, L, dk_}), k_t({B, H_, L, dk_}), g_t({B, H_, L, dk_});
      for (int b = 0; b < B; ++b) {
        const Matrix X = rms_norm(Hs[b], n1, eps_);
        const Matrix Q = X * Wq.transpose() * scale, K = X * Wk.transpose(), Vv = X * Wv.transpose();
        Matrix Gk = (X * G0.transpose()) * G1.transpose();
        Gk.rowwise() += g1b.transpose();
        const double lo = clamp_min_;  // fla clamps the normalized log-gate from below when configured
        Gk = Gk.unaryExpr([lo](double v) { return std::max(log_sigmoid(v) / 16.0, lo); });
        const Matrix Gout = silu(X * Wg.transpose());
        Matrix O(L, Vd_);
        Matrix S(dk_, dv_);
        for (int h = 0; h < H_; ++h) {
          const int g = h / rep;  // key/value head shared by `rep` query heads
          S.setZero();
          for (int t = 0; t < L; ++t) {
            for (int n = 0; n < dk_; ++n) S.row(n) *= std::exp(Gk(t, g * dk_ + n));
            S.noalias() += K.row(t).segment(g * dk_, dk_).transpose() * Vv.row(t).segment(g * dv_, dv_);
            O.row(t).segment(h * dv_, dv_) = Q.row(t).segment(h * dk_, dk_) * S;
          }
          // Fused RMSNorm over the head's values, then the swish output gate.
          const Matrix Oh = rms_norm(O.middleCols(h * dv_, dv_), gnorm, eps_);
          O.middleCols(h * dv_, dv_) = Oh.cwiseProduct(Gout.middleCols(h * dv_, dv_));
          for (int t = 0; t < L; ++t)
            for (int n = 0; n < dk_; ++n) {
              const size_t k = ((static_cast<size_t>(b) * H_ + h) * L + t) * dk_ + n;
              q_t.data[k] = Q(t, h * dk_ + n);
              k_t.data[k] = K(t, g * dk_ + n);
              g_t.data[k] = Gk(t, g * dk_ + n);
            }
        }
        Hs[b] += O * Wo.transpose();
        const Matrix X2 = rms_norm(Hs[b], n2, eps_);
        Hs[b] += silu(X2 * Wgate.transpose()).cwiseProduct(X2 * Wup.transpose()) * Wdown.transpose();
      }
      const std::string name = "model.layers." + std::to_string(l) + ".attn";
      out.layers.push_back(
          {name, l, std::make_unique<GlaOperator>(std::move(q_t), std::move(k_t), std::move(g_t), dir_ + ":" + name)});
    }
    final_norm_and_head(W_, "model.norm.weight", head_, V_, D_, eps_, Hs, keep_logits, out);
    return out;
  }

 private:
  std::string dir_, head_;
  Weights W_;
  int V_, D_, layers_, H_, Hkv_, Kd_, Vd_, dk_, dv_, rank_, I_;
  double eps_;
  double clamp_min_ = -std::numeric_limits<double>::infinity();
};

}  // namespace

std::unique_ptr<CausalLM> make_gla(const std::string& dir, const Config& c) { return std::make_unique<Gla>(dir, c); }

}  // namespace ess::models
