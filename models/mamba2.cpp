// Mamba2ForCausalLM (Hugging Face transformers layout; SSD with grouped B/C).
//   [z, xBC, dt] = in_proj(rms(h)); xBC ← silu(conv1d(xBC)); [x, B, C] = xBC;
//   dt ← clamp(softplus(dt + dt_bias), time_step_limit); y = SSD(x) + D⊙x;
//   y ← rms_norm(y ⊙ silu(z)) ⊙ w over the full width (as HF transformers; mamba_ssm normalizes per
//   group); h ← h + out_proj(y).
// Captured operator per layer: family "mamba2", dt [B, H, L], A = −exp(A_log) [H], B, C [B, G, L, N];
// the SSD output is computed through that operator (Mamba2Operator::multiply).
#include <cmath>
#include <limits>

#include "libess/error.h"
#include "libess/parallel.h"
#include "models/models.h"
#include "operators/mamba2.h"

namespace ess::models {

namespace {

class Mamba2 final : public CausalLM {
 public:
  Mamba2(const std::string& dir, const Config& c) : CausalLM(dir, "Mamba2ForCausalLM") {
    vocab_ = c.integer("vocab_size");
    layers_ = c.integer("num_hidden_layers");
    D_ = c.integer("hidden_size");
    N_ = c.integer("state_size");
    const int K = c.integer("conv_kernel", 4);
    G_ = c.integer("n_groups", 1);
    H_ = c.integer("num_heads");
    P_ = c.integer("head_dim");
    E_ = c.scaled("expand", 2, D_);
    if (c.product({H_, P_}, "num_heads × head_dim") != E_)
      throw InputError(c.path() + ": num_heads × head_dim = " + std::to_string(H_ * P_) +
                       " but expand × hidden_size = " + std::to_string(E_));
    c.product({2, G_, N_}, "2 × n_groups × state_size");
    if (G_ < 1 || H_ % G_ != 0) throw InputError(c.path() + ": num_heads must be divisible by n_groups");
    eps_ = c.number("layer_norm_epsilon", 1e-5, Config::kNonNegativeNumber);
    const bool bias = c.boolean("use_bias", false), conv_bias = c.boolean("use_conv_bias", true);
    if (c.has("time_step_limit")) {
      // [min, max] step sizes; max may be Infinity (the transformers default).
      const auto lim = c.numbers("time_step_limit", 2, {0.0, std::numeric_limits<double>::infinity()});
      dt_min_ = lim[0];
      dt_max_ = lim[1];
      if (std::isinf(dt_min_) || dt_min_ > dt_max_)
        throw InputError(c.path() + ": time_step_limit must be [min, max] with 0 ≤ min ≤ max and min finite");
    }
    conv_dim_ = E_ + 2 * G_ * N_;
    const std::int64_t V = vocab_, D = D_, E = E_, H = H_, conv = conv_dim_, proj = E_ + conv_dim_ + H_;
    WeightDecls w(layers_);
    w.global("embed", "backbone.embeddings.weight", {V, D}).or_named("backbone.embedding.weight");
    w.layer("norm", "backbone.layers.{l}.norm.weight", {D});
    w.layer("in_proj", "backbone.layers.{l}.mixer.in_proj.weight", {proj, D});  // [z | xBC | dt]
    w.layer("in_bias", "backbone.layers.{l}.mixer.in_proj.bias", {proj}).when(bias, "use_bias");
    w.layer("conv", "backbone.layers.{l}.mixer.conv1d.weight", {conv, 1, K});
    w.layer("conv_bias", "backbone.layers.{l}.mixer.conv1d.bias", {conv}).when(conv_bias, "use_conv_bias");
    w.layer("dt_bias", "backbone.layers.{l}.mixer.dt_bias", {H});
    w.layer("A_log", "backbone.layers.{l}.mixer.A_log", {H});
    w.layer("D", "backbone.layers.{l}.mixer.D", {H});
    w.layer("gate_norm", "backbone.layers.{l}.mixer.norm.weight", {E});
    w.layer("out_proj", "backbone.layers.{l}.mixer.out_proj.weight", {D, E});
    w.layer("out_bias", "backbone.layers.{l}.mixer.out_proj.bias", {D}).when(bias, "use_bias");
    w.global("norm_f", "backbone.norm_f.weight", {D});
    declare_lm_head(w, vocab_, D_, c.boolean("tie_word_embeddings", true));
    W_.declare(std::move(w));
  }

 protected:
  void forward(const Tokens& tokens, const LayerCallback& on_layer, bool keep_logits, ModelRun& out) const override {
    const int B = static_cast<int>(tokens.size()), L = static_cast<int>(tokens[0].size());
    std::vector<Matrix> Hs = embed(W_, tokens);
    for (int l = 0; l < layers_; ++l) {
      const LoadedWeights w = W_.load_layer(l);
      const Vector conv_bias = w.has("conv_bias") ? Vector(w.vector("conv_bias")) : Vector();
      const auto dt_bias = w.vector("dt_bias");
      Tensor dt_t({B, H_, L}), A_t({H_}), B_t({B, G_, L, N_}), C_t({B, G_, L, N_});
      Eigen::Map<Vector>(A_t.data.data(), H_) = -w.vector("A_log").array().exp().matrix();
      std::vector<Matrix> xs(B), z(B);
      for (int b = 0; b < B; ++b) {
        Matrix proj = matmul_nt(rms_norm(Hs[b], w.vector("norm"), eps_), w.matrix("in_proj"));
        if (w.has("in_bias")) proj.rowwise() += w.vector("in_bias").transpose();
        z[b] = proj.leftCols(E_);
        const Matrix xBC = silu(causal_depthwise_conv(proj.middleCols(E_, conv_dim_), w.matrix("conv"), conv_bias));
        xs[b] = mamba2_inputs(xBC, proj.rightCols(H_), dt_bias, {E_, G_, N_, H_, dt_min_, dt_max_}, b, dt_t, B_t, C_t);
      }
      const std::string name = "backbone.layers." + std::to_string(l) + ".mixer";
      auto op = std::make_unique<Mamba2Operator>(std::move(dt_t), std::move(A_t), std::move(B_t), std::move(C_t),
                                                 W_.dir() + ":" + name);
      const auto Dskip = w.vector("D");
      for (int b = 0; b < B; ++b) {
        // Per head: S_t = exp(dt_t A_h) S_{t−1} + dt_t x_t B_tᵀ, y_t = S_t C_t (the operator), + D_h x_t.
        Matrix y(L, E_);
        parallel_for(H_, [&](int h) {
          op->multiply(b, h, xs[b].middleCols(h * P_, P_), y.middleCols(h * P_, P_));
          y.middleCols(h * P_, P_) += Dskip(h) * xs[b].middleCols(h * P_, P_);
        });
        y = rms_norm(y.cwiseProduct(silu(z[b])), w.vector("gate_norm"), eps_);
        Matrix o = matmul_nt(y, w.matrix("out_proj"));
        if (w.has("out_bias")) o.rowwise() += w.vector("out_bias").transpose();
        Hs[b] += o;
      }
      on_layer({name, l, std::move(op), P_});
    }
    final_norm_and_head(W_, "norm_f", eps_, Hs, keep_logits, out);
  }

 private:
  int D_, N_, G_, H_, P_, E_, conv_dim_;
  double eps_, dt_min_ = 0.0, dt_max_ = std::numeric_limits<double>::infinity();
};

std::unique_ptr<CausalLM> make_mamba2(const std::string& dir, const Config& c) {
  return std::make_unique<Mamba2>(dir, c);
}

}  // namespace

ESS_REGISTER_ARCHITECTURE("Mamba2ForCausalLM", make_mamba2, "mamba2");

}  // namespace ess::models
