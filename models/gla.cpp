// GLAForCausalLM in flash-linear-attention's layout (gated linear attention, Yang et al. 2023).
// Block: h ← h + o_proj(rmsnorm_h(o) ⊙ w ⊙ swish(g_proj(x))), x = rmsnorm(h) (attn_norm), with
// per head o_t = (q_t / √d_k)ᵀ S_t, S_t = diag(exp(gk_t)) S_{t−1} + k_t v_tᵀ,
// gk = logsigmoid(gk_proj.1(gk_proj.0(x))) / 16; then the GatedMLP down(swish(gate(x)) ⊙ up(x)) on
// mlp_norm. With use_short_conv, q, k and v pass through fla's ShortConvolution (causal depthwise
// conv of conv_size taps, bias only with conv_bias, then SiLU) before the heads are formed. Feature
// maps are not supported (clear error).
// Captured operator per layer: family "gla" with q (scale folded in), k, log_decay [B, H, L, d_k];
// o is computed through that operator (GlaOperator::multiply).
#include <cmath>
#include <limits>
#include <string>
#include <utility>

#include "libess/error.h"
#include "libess/parallel.h"
#include "models/models.h"
#include "operators/gla.h"

namespace ess::models {

namespace {

double log_sigmoid(double x) { return x >= 0 ? -std::log1p(std::exp(-x)) : x - std::log1p(std::exp(x)); }

constexpr int kGateLowRank = 16;  // fla GatedLinearAttention's gate_low_rank_dim (not a config field)

class Gla final : public CausalLM {
 public:
  Gla(const std::string& dir, const Config& c) : CausalLM(dir, "GLAForCausalLM") {
    vocab_ = c.integer("vocab_size");
    layers_ = c.integer("num_hidden_layers");
    D_ = c.integer("hidden_size");
    H_ = c.integer("num_heads", 4);
    Hkv_ = c.integer("num_kv_heads", H_);
    Kd_ = c.scaled("expand_k", 0.5, D_);
    Vd_ = c.scaled("expand_v", 1.0, D_);
    eps_ = c.number("norm_eps", 1e-6, Config::kNonNegativeNumber);
    if (c.has("clamp_min")) clamp_min_ = c.number("clamp_min");
    if (H_ < 1 || Hkv_ < 1 || H_ % Hkv_ || Kd_ % H_ || Vd_ % H_)
      throw InputError(c.path() + ": key/value dimensions must split evenly over num_heads and num_kv_heads");
    short_conv_ = c.boolean("use_short_conv", false);
    conv_size_ = c.integer("conv_size", 4);
    const bool conv_bias = c.boolean("conv_bias", false);
    if (short_conv_ && conv_size_ < 1) throw InputError(c.path() + ": conv_size must be ≥ 1");
    if (c.has("feature_map")) throw InputError(c.path() + ": GLA with a feature_map is not supported yet");
    if (!c.boolean("use_output_gate", true))
      throw InputError(c.path() + ": GLA without the output gate is not supported yet");
    if (c.has("attn"))
      throw InputError(c.path() + ": hybrid GLA with softmax-attention layers ('attn') is not supported yet");
    if (c.has("hidden_act") && c.json()["hidden_act"] != "swish" && c.json()["hidden_act"] != "silu")
      throw InputError(c.path() + ": hidden_act " + c.json()["hidden_act"].dump() + " is not supported (swish)");
    dk_ = Kd_ / H_;
    dv_ = Vd_ / H_;
    // GatedMLP width: intermediate_size, else 256·⌈int(D·hidden_ratio·2/3) / 256⌉ (fla's default).
    int I = 0;
    if (c.has("intermediate_size")) {
      I = c.integer("intermediate_size");
    } else {
      const double ratio = c.number("hidden_ratio", 4.0, Config::kPositiveNumber);
      const double width = std::floor(D_ * ratio * 2 / 3);
      if (!(width >= 1 && width <= static_cast<double>(Config::kMaxInt)))
        throw InputError(c.path() + ": hidden_size × hidden_ratio × 2/3 is outside [1, " +
                         std::to_string(Config::kMaxInt) + "] (set intermediate_size)");
      I = 256 * ((static_cast<int>(width) + 255) / 256);
    }
    const bool affine = c.boolean("elementwise_affine", true);
    const int rep = H_ / Hkv_;
    const std::int64_t V = vocab_, D = D_, Kd = Kd_, Vd = Vd_, Kg = Kd_ / rep, Vg = Vd_ / rep, r = kGateLowRank;
    WeightDecls w(layers_);
    w.global("embed", "model.embeddings.weight", {V, D});
    w.layer("attn_norm", "model.layers.{l}.attn_norm.weight", {D});
    w.layer("q_proj", "model.layers.{l}.attn.q_proj.weight", {Kd, D});
    w.layer("k_proj", "model.layers.{l}.attn.k_proj.weight", {Kg, D});
    w.layer("v_proj", "model.layers.{l}.attn.v_proj.weight", {Vg, D});
    w.layer("g_proj", "model.layers.{l}.attn.g_proj.weight", {Vd, D});
    w.layer("gk_proj0", "model.layers.{l}.attn.gk_proj.0.weight", {r, D});
    w.layer("gk_proj1", "model.layers.{l}.attn.gk_proj.1.weight", {Kg, r});
    w.layer("gk_bias", "model.layers.{l}.attn.gk_proj.1.bias", {Kg});
    w.layer("o_proj", "model.layers.{l}.attn.o_proj.weight", {D, Vd});
    const std::int64_t K = conv_size_;
    for (const auto& [n, dim] : {std::pair<std::string, std::int64_t>{"q", Kd}, {"k", Kg}, {"v", Vg}}) {
      w.layer(n + "_conv", "model.layers.{l}.attn." + n + "_conv1d.weight", {dim, 1, K})
          .when(short_conv_, "use_short_conv");
      w.layer(n + "_conv_bias", "model.layers.{l}.attn." + n + "_conv1d.bias", {dim})
          .when(short_conv_ && conv_bias, "conv_bias");
    }
    w.layer("g_norm", "model.layers.{l}.attn.g_norm_swish_gate.weight", {dv_})
        .or_named("model.layers.{l}.attn.g_norm.weight")
        .when(affine, "elementwise_affine");
    w.layer("mlp_norm", "model.layers.{l}.mlp_norm.weight", {D});
    w.layer("gate_proj", "model.layers.{l}.mlp.gate_proj.weight", {I, D});
    w.layer("up_proj", "model.layers.{l}.mlp.up_proj.weight", {I, D});
    w.layer("down_proj", "model.layers.{l}.mlp.down_proj.weight", {D, I});
    w.global("norm", "model.norm.weight", {D});
    declare_lm_head(w, vocab_, D_, c.boolean("tie_word_embeddings", false));
    W_.declare(std::move(w));
  }

 protected:
  void forward(const Tokens& tokens, const LayerCallback& on_layer, bool keep_logits, ModelRun& out) const override {
    const int B = static_cast<int>(tokens.size()), L = static_cast<int>(tokens[0].size());
    const int rep = H_ / Hkv_;
    const double scale = 1.0 / std::sqrt(static_cast<double>(dk_));
    std::vector<Matrix> Hs = embed(W_, tokens);
    for (int l = 0; l < layers_; ++l) {
      const LoadedWeights w = W_.load_layer(l);
      Tensor q_t({B, H_, L, dk_}), k_t({B, H_, L, dk_}), g_t({B, H_, L, dk_});
      std::vector<Matrix> X(B), values(B);
      for (int b = 0; b < B; ++b) {
        X[b] = rms_norm(Hs[b], w.vector("attn_norm"), eps_);
        Matrix Q = matmul_nt(X[b], w.matrix("q_proj")), K = matmul_nt(X[b], w.matrix("k_proj"));
        values[b] = matmul_nt(X[b], w.matrix("v_proj"));
        if (short_conv_) {
          auto conv = [&](const Matrix& Y, const std::string& n) {
            const Vector bias = w.has(n + "_conv_bias") ? Vector(w.vector(n + "_conv_bias")) : Vector();
            return silu(causal_depthwise_conv(Y, w.matrix(n + "_conv"), bias));
          };
          Q = conv(Q, "q");
          K = conv(K, "k");
          values[b] = conv(values[b], "v");
        }
        Q *= scale;
        Matrix Gk = matmul_nt(matmul_nt(X[b], w.matrix("gk_proj0")), w.matrix("gk_proj1"));
        Gk.rowwise() += w.vector("gk_bias").transpose();
        const double lo = clamp_min_;  // fla clamps the normalized log-gate from below when configured
        Gk = Gk.unaryExpr([lo](double v) { return std::max(log_sigmoid(v) / 16.0, lo); });
        for (int h = 0; h < H_; ++h) {
          const int g = h / rep;  // key/value head shared by `rep` query heads
          put_head(q_t, b, h, Q.middleCols(h * dk_, dk_));
          put_head(k_t, b, h, K.middleCols(g * dk_, dk_));
          put_head(g_t, b, h, Gk.middleCols(g * dk_, dk_));
        }
      }
      const std::string name = "model.layers." + std::to_string(l) + ".attn";
      auto op = std::make_unique<GlaOperator>(std::move(q_t), std::move(k_t), std::move(g_t), W_.dir() + ":" + name);
      const Vector gnorm = w.has("g_norm") ? Vector(w.vector("g_norm")) : Vector::Ones(dv_);
      for (int b = 0; b < B; ++b) {
        const Matrix Gout = silu(matmul_nt(X[b], w.matrix("g_proj")));
        Matrix O(L, Vd_);
        parallel_for(H_, [&](int h) {
          op->multiply(b, h, values[b].middleCols(h / rep * dv_, dv_), O.middleCols(h * dv_, dv_));
          // Fused RMSNorm over the head's values, then the swish output gate: outside T.
          const Matrix Oh = rms_norm(O.middleCols(h * dv_, dv_), gnorm, eps_);
          O.middleCols(h * dv_, dv_) = Oh.cwiseProduct(Gout.middleCols(h * dv_, dv_));
        });
        Hs[b] += matmul_nt(O, w.matrix("o_proj"));
        const Matrix X2 = rms_norm(Hs[b], w.vector("mlp_norm"), eps_);
        Hs[b] += matmul_nt(silu(matmul_nt(X2, w.matrix("gate_proj"))).cwiseProduct(matmul_nt(X2, w.matrix("up_proj"))),
                           w.matrix("down_proj"));
      }
      on_layer({name, l, std::move(op), dv_});
    }
    final_norm_and_head(W_, "norm", eps_, Hs, keep_logits, out);
  }

 private:
  int D_, H_, Hkv_, Kd_, Vd_, dk_, dv_;
  double eps_;
  double clamp_min_ = -std::numeric_limits<double>::infinity();
  bool short_conv_ = false;
  int conv_size_ = 4;
};

std::unique_ptr<CausalLM> make_gla(const std::string& dir, const Config& c) { return std::make_unique<Gla>(dir, c); }

}  // namespace

ESS_REGISTER_ARCHITECTURE("GLAForCausalLM", make_gla, "gla");

}  // namespace ess::models
