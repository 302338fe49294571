// FalconH1ForCausalLM (TII Falcon-H1, Hugging Face transformers layout): every layer runs a Mamba2
// mixer and grouped-query attention side by side on the same normed input, with muP multipliers:
//   h = embed · embedding_multiplier
//   u = rms(h; input_layernorm)
//   ssm  = out_proj(norm(SSD(x) + D x, z)) · ssm_out_multiplier,
//          [z | xBC | dt] = in_proj(u · ssm_in_multiplier) ⊙ mup (ssm_multipliers per section),
//          xBC ← act(conv1d(xBC)), dt = clamp(softplus(dt + dt_bias), time_step_limit),
//          norm = the gated RMSNorm per group of mamba_n_groups (mamba_rms_norm; gate before or after
//          it per mamba_norm_before_gate) or y ⊙ silu(z)
//   attn = o_proj(softmax_attention(rope(q), rope(k · key_multiplier)) v) · attention_out_multiplier,
//          q, k, v from u · attention_in_multiplier
//   h ← h + ssm + attn;  h ← h + down(up(v) ⊙ act(gate(v) · m_gate)) · m_down, v = rms(h; pre_ff_layernorm)
//   logits = rms(h; final_layernorm) · lm_headᵀ · lm_head_multiplier
// Captured operators per layer, in this order: "model.layers.{l}.mamba" (family mamba2: dt, A, B, C
// per head; the D skip, gate and norm are outside T) and "model.layers.{l}.self_attn" (family
// softmax_attention: q, k after RoPE, k with its multiplier), both with layer_index l, so report
// and diagnose list the SSM and the attention mixer of each layer side by side.
#include <cmath>
#include <limits>

#include "libess/error.h"
#include "libess/parallel.h"
#include "models/models.h"
#include "operators/mamba2.h"

namespace ess::models {

namespace {

class FalconH1 final : public CausalLM {
 public:
  FalconH1(const std::string& dir, const Config& c) : CausalLM(dir, "FalconH1ForCausalLM") {
    // Attention, MLP and RoPE fields as Llama, with FalconH1Config's defaults.
    nlohmann::json j = c.json();
    if (!j.contains("num_key_value_heads")) j["num_key_value_heads"] = 8;
    if (!c.has("rms_norm_eps")) j["rms_norm_eps"] = 1e-5;
    if (!c.has("intermediate_size")) j["intermediate_size"] = 14336;
    const bool theta = c.has("rope_theta") || (c.has("rope_parameters") && c.json()["rope_parameters"].is_object() &&
                                               c.json()["rope_parameters"].contains("rope_theta"));
    if (!theta)
      throw InputError(c.path() +
                       ": FalconH1ForCausalLM needs rope_theta (or rope_parameters.rope_theta); its "
                       "default differs between transformers versions");
    s_ = read_llama_config(Config(j, c.path()), "FalconH1ForCausalLM");
    vocab_ = s_.vocab;
    layers_ = s_.layers;
    D_ = s_.hidden;
    // The Mamba2 branch.
    E_ = c.json().contains("mamba_d_ssm")
             ? (c.has("mamba_d_ssm") ? c.integer("mamba_d_ssm") : c.scaled("mamba_expand", 2, D_))  // null
             : 1024;  // absent: FalconH1Config's default
    Hm_ = c.integer("mamba_n_heads", 128);
    G_ = c.integer("mamba_n_groups", 1);
    N_ = c.integer("mamba_d_state", 256);
    K_ = c.integer("mamba_d_conv", 4);
    if (c.has("mamba_d_head") && !(c.json()["mamba_d_head"].is_string() && c.json()["mamba_d_head"] == "auto"))
      P_ = c.integer("mamba_d_head");
    else
      P_ = E_ / Hm_;
    if (static_cast<long long>(P_) * Hm_ != E_)
      throw InputError(c.path() + ": mamba_n_heads × mamba_d_head = " + std::to_string(Hm_) + " × " +
                       std::to_string(P_) + " does not equal the Mamba width " + std::to_string(E_) +
                       " (mamba_d_ssm, else mamba_expand × hidden_size)");
    if (Hm_ % G_ != 0 || E_ % G_ != 0)
      throw InputError(c.path() + ": mamba_n_groups must divide mamba_n_heads and the Mamba width");
    c.product({2, G_, N_}, "2 × mamba_n_groups × mamba_d_state");
    conv_dim_ = E_ + 2 * G_ * N_;
    c.product({E_ + conv_dim_ + Hm_}, "the Mamba in_proj width");
    conv_act_ = read_activation(c, "hidden_act", "silu");
    rms_gate_ = c.boolean("mamba_rms_norm", false);
    norm_before_gate_ = c.boolean("mamba_norm_before_gate", true);
    if (c.has("time_step_limit")) {
      const auto lim = c.numbers("time_step_limit", 2, {0.0, std::numeric_limits<double>::infinity()});
      dt_min_ = lim[0];
      dt_max_ = lim[1];
      if (std::isinf(dt_min_) || dt_min_ > dt_max_)
        throw InputError(c.path() + ": time_step_limit must be [min, max] with 0 ≤ min ≤ max and min finite");
    }
    // Multipliers (muP).
    auto mult = [&](const char* k) { return c.number(k, 1.0); };
    embed_mult_ = mult("embedding_multiplier");
    head_mult_ = mult("lm_head_multiplier");
    key_mult_ = mult("key_multiplier");
    attn_in_ = mult("attention_in_multiplier");
    attn_out_ = mult("attention_out_multiplier");
    ssm_in_ = mult("ssm_in_multiplier");
    ssm_out_ = mult("ssm_out_multiplier");
    const auto mlp = c.has("mlp_multipliers") ? c.numbers("mlp_multipliers", 2) : std::vector<double>{1.0, 1.0};
    gate_mult_ = mlp[0];
    down_mult_ = mlp[1];
    const auto ssm =
        c.has("ssm_multipliers") ? c.numbers("ssm_multipliers", 5) : std::vector<double>{1.0, 1.0, 1.0, 1.0, 1.0};
    mup_.resize(E_ + conv_dim_ + Hm_);
    mup_.segment(0, E_).setConstant(ssm[0]);                      // z
    mup_.segment(E_, E_).setConstant(ssm[1]);                     // x
    mup_.segment(2 * E_, G_ * N_).setConstant(ssm[2]);            // B
    mup_.segment(2 * E_ + G_ * N_, G_ * N_).setConstant(ssm[3]);  // C
    mup_.segment(2 * E_ + 2 * G_ * N_, Hm_).setConstant(ssm[4]);  // dt

    const std::int64_t V = vocab_, D = D_, I = s_.intermediate, q = s_.heads * s_.head_dim,
                       kv = s_.kv_heads * s_.head_dim, E = E_, Hm = Hm_, conv = conv_dim_, proj = E_ + conv_dim_ + Hm_;
    const bool proj_bias = c.boolean("mamba_proj_bias", false), conv_bias = c.boolean("mamba_conv_bias", true),
               out_bias = c.boolean("projectors_bias", false);
    WeightDecls w(layers_);
    w.global("embed", "model.embed_tokens.weight", {V, D});
    w.layer("input_norm", "model.layers.{l}.input_layernorm.weight", {D});
    w.layer("in_proj", "model.layers.{l}.mamba.in_proj.weight", {proj, D});
    w.layer("in_bias", "model.layers.{l}.mamba.in_proj.bias", {proj}).when(proj_bias, "mamba_proj_bias");
    w.layer("conv", "model.layers.{l}.mamba.conv1d.weight", {conv, 1, K_});
    w.layer("conv_bias", "model.layers.{l}.mamba.conv1d.bias", {conv}).when(conv_bias, "mamba_conv_bias");
    w.layer("dt_bias", "model.layers.{l}.mamba.dt_bias", {Hm});
    w.layer("A_log", "model.layers.{l}.mamba.A_log", {Hm});
    w.layer("D", "model.layers.{l}.mamba.D", {Hm});
    w.layer("gate_norm", "model.layers.{l}.mamba.norm.weight", {E}).when(rms_gate_, "mamba_rms_norm");
    w.layer("out_proj", "model.layers.{l}.mamba.out_proj.weight", {D, E});
    w.layer("out_bias", "model.layers.{l}.mamba.out_proj.bias", {D}).when(out_bias, "projectors_bias");
    w.layer("q_proj", "model.layers.{l}.self_attn.q_proj.weight", {q, D});
    w.layer("q_bias", "model.layers.{l}.self_attn.q_proj.bias", {q}).when(s_.qkv_bias, "attention_bias");
    w.layer("k_proj", "model.layers.{l}.self_attn.k_proj.weight", {kv, D});
    w.layer("k_bias", "model.layers.{l}.self_attn.k_proj.bias", {kv}).when(s_.qkv_bias, "attention_bias");
    w.layer("v_proj", "model.layers.{l}.self_attn.v_proj.weight", {kv, D});
    w.layer("v_bias", "model.layers.{l}.self_attn.v_proj.bias", {kv}).when(s_.qkv_bias, "attention_bias");
    w.layer("o_proj", "model.layers.{l}.self_attn.o_proj.weight", {D, q});
    w.layer("o_bias", "model.layers.{l}.self_attn.o_proj.bias", {D}).when(s_.o_bias, "attention_bias");
    w.layer("ff_norm", "model.layers.{l}.pre_ff_layernorm.weight", {D});
    w.layer("gate_proj", "model.layers.{l}.feed_forward.gate_proj.weight", {I, D});
    w.layer("gate_pbias", "model.layers.{l}.feed_forward.gate_proj.bias", {I}).when(s_.mlp_bias, "mlp_bias");
    w.layer("up_proj", "model.layers.{l}.feed_forward.up_proj.weight", {I, D});
    w.layer("up_bias", "model.layers.{l}.feed_forward.up_proj.bias", {I}).when(s_.mlp_bias, "mlp_bias");
    w.layer("down_proj", "model.layers.{l}.feed_forward.down_proj.weight", {D, I});
    w.layer("down_bias", "model.layers.{l}.feed_forward.down_proj.bias", {D}).when(s_.mlp_bias, "mlp_bias");
    w.global("norm", "model.final_layernorm.weight", {D});
    declare_lm_head(w, vocab_, D_, s_.tied);
    W_.declare(std::move(w));
  }

  int num_mixers() const override { return 2 * layers_; }

 protected:
  void forward(const Tokens& tokens, const LayerCallback& on_layer, bool keep_logits, ModelRun& out) const override {
    const int B = static_cast<int>(tokens.size()), L = static_cast<int>(tokens[0].size());
    const int H = s_.heads, Hkv = s_.kv_heads, hd = s_.head_dim;
    const Rotary rope(s_.inv_freq, L);
    std::vector<Matrix> Hs = embed(W_, tokens);
    for (Matrix& h : Hs) h *= embed_mult_;
    for (int l = 0; l < layers_; ++l) {
      const LoadedWeights w = W_.load_layer(l);
      std::vector<Matrix> Us(B), add(B);
      for (int b = 0; b < B; ++b) Us[b] = rms_norm(Hs[b], w.vector("input_norm"), s_.rms_eps);

      // Mamba2 branch.
      const std::string mname = "model.layers." + std::to_string(l) + ".mamba";
      const Vector conv_bias = w.has("conv_bias") ? Vector(w.vector("conv_bias")) : Vector();
      const auto dt_bias = w.vector("dt_bias");
      Tensor dt_t({B, Hm_, L}), A_t({Hm_}), B_t({B, G_, L, N_}), C_t({B, G_, L, N_});
      Eigen::Map<Vector>(A_t.data.data(), Hm_) = -w.vector("A_log").array().exp().matrix();
      std::vector<Matrix> xs(B), zs(B);
      for (int b = 0; b < B; ++b) {
        Matrix proj = linear(Us[b] * ssm_in_, w, "in_proj", "in_bias") * mup_.asDiagonal();
        zs[b] = proj.leftCols(E_);
        const Matrix xBC =
            activate(causal_depthwise_conv(proj.middleCols(E_, conv_dim_), w.matrix("conv"), conv_bias), conv_act_);
        xs[b] =
            mamba2_inputs(xBC, proj.rightCols(Hm_), dt_bias, {E_, G_, N_, Hm_, dt_min_, dt_max_}, b, dt_t, B_t, C_t);
      }
      auto mop = std::make_unique<Mamba2Operator>(std::move(dt_t), std::move(A_t), std::move(B_t), std::move(C_t),
                                                  W_.dir() + ":" + mname);
      const auto Dskip = w.vector("D");
      for (int b = 0; b < B; ++b) {
        Matrix y(L, E_);
        parallel_for(Hm_, [&](int h) {
          mop->multiply(b, h, xs[b].middleCols(h * P_, P_), y.middleCols(h * P_, P_));
          y.middleCols(h * P_, P_) += Dskip(h) * xs[b].middleCols(h * P_, P_);
        });
        y = gated_norm(y, zs[b], w);
        add[b] = linear(y, w, "out_proj", "out_bias") * ssm_out_;
      }
      xs.clear();
      zs.clear();

      // Attention branch.
      const std::string aname = "model.layers." + std::to_string(l) + ".self_attn";
      std::vector<Matrix> Qs(B), Ks(B), Vs(B), Os;
      for (int b = 0; b < B; ++b) {
        const Matrix X = Us[b] * attn_in_;
        Qs[b] = linear(X, w, "q_proj", "q_bias");
        Ks[b] = linear(X, w, "k_proj", "k_bias") * key_mult_;
        Vs[b] = linear(X, w, "v_proj", "v_bias");
        for (int h = 0; h < H; ++h) rope.apply(Qs[b].middleCols(h * hd, hd));
        for (int h = 0; h < Hkv; ++h) rope.apply(Ks[b].middleCols(h * hd, hd));
      }
      AttentionSpec a;
      a.heads = H;
      a.kv_heads = Hkv;
      a.head_dim = hd;
      auto aop = softmax_attention(std::move(Qs), std::move(Ks), Vs, a, W_.dir() + ":" + aname, Os);
      Vs.clear();
      for (int b = 0; b < B; ++b) {
        Hs[b] += add[b] + linear(Os[b], w, "o_proj", "o_bias") * attn_out_;
        const Matrix X2 = rms_norm(Hs[b], w.vector("ff_norm"), s_.rms_eps);
        const Matrix gate = activate(linear(X2, w, "gate_proj", "gate_pbias") * gate_mult_, s_.act);
        Hs[b] +=
            linear(linear(X2, w, "up_proj", "up_bias").cwiseProduct(gate), w, "down_proj", "down_bias") * down_mult_;
      }
      on_layer({mname, l, std::move(mop), P_});
      on_layer({aname, l, std::move(aop), hd});
    }
    const std::string head = W_.has("lm_head") ? "lm_head" : "embed";
    const LoadedWeights g = W_.load_global({"norm", head});
    const RowMatrix scaled_head = g.matrix(head) * head_mult_;  // logits · lm_head_multiplier
    for (const Matrix& h : Hs) finish_logits(rms_norm(h, g.vector("norm"), s_.rms_eps), scaled_head, keep_logits, out);
  }

 private:
  // FalconH1RMSNormGated over groups of E/G features (mamba_rms_norm), the gate silu(z) applied
  // after the norm (mamba_norm_before_gate) or before it; without the norm: y ⊙ silu(z).
  Matrix gated_norm(Matrix y, const Matrix& z, const LoadedWeights& w) const {
    const Matrix gate = silu(z);
    if (!rms_gate_) return y.cwiseProduct(gate);
    if (!norm_before_gate_) y = y.cwiseProduct(gate);
    const int width = E_ / G_;
    const auto weight = w.vector("gate_norm");
    for (int g = 0; g < G_; ++g)
      y.middleCols(g * width, width) =
          rms_norm(y.middleCols(g * width, width), weight.segment(g * width, width), s_.rms_eps);
    if (norm_before_gate_) y = y.cwiseProduct(gate);
    return y;
  }

  LlamaSpec s_;
  int D_, E_, Hm_, G_, N_, K_, P_, conv_dim_;
  Activation conv_act_ = Activation::silu;
  bool rms_gate_ = false, norm_before_gate_ = true;
  double dt_min_ = 0.0, dt_max_ = std::numeric_limits<double>::infinity();
  double embed_mult_, head_mult_, key_mult_, attn_in_, attn_out_, ssm_in_, ssm_out_, gate_mult_, down_mult_;
  Vector mup_;
};

std::unique_ptr<CausalLM> make_falcon_h1(const std::string& dir, const Config& c) {
  return std::make_unique<FalconH1>(dir, c);
}

}  // namespace

ESS_REGISTER_ARCHITECTURE("FalconH1ForCausalLM", make_falcon_h1, "falcon_h1");

}  // namespace ess::models
