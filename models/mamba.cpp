// MambaForCausalLM and FalconMambaForCausalLM (Hugging Face transformers layout).
//   h ← h + out_proj( scan(silu(conv1d(x)), dt, A, B, C) + D⊙x ) ⊙ silu(z),  [x, z] = in_proj(rms(h))
// Captured operator per layer: family "mamba" with dt = softplus(dt_proj(dt_r)) [B, E, L],
// A = −exp(A_log), B, C from x_proj (FalconMamba: RMS-normalised without weights); the scan is
// computed through that operator (MambaOperator::multiply).
#include <cmath>

#include "libess/error.h"
#include "models/models.h"
#include "operators/mamba.h"

namespace ess::models {

namespace {

class Mamba final : public CausalLM {
 public:
  Mamba(const std::string& dir, const Config& c, bool falcon)
      : CausalLM(dir, falcon ? "FalconMambaForCausalLM" : "MambaForCausalLM"), falcon_(falcon) {
    vocab_ = c.integer("vocab_size");
    layers_ = c.integer("num_hidden_layers");
    D_ = c.integer("hidden_size");
    N_ = c.integer("state_size");
    K_ = c.integer("conv_kernel", 4);
    E_ = c.has("intermediate_size") ? c.integer("intermediate_size") : c.scaled("expand", 2, D_);
    if (c.has("time_step_rank") && c.json()["time_step_rank"].is_string()) {
      if (c.json()["time_step_rank"] != "auto")
        throw InputError(c.path() + ": time_step_rank must be an integer or \"auto\"");
      R_ = (D_ + 15) / 16;
    } else {
      R_ = c.integer("time_step_rank", (D_ + 15) / 16);
    }
    eps_ = c.number("layer_norm_epsilon", 1e-5, Config::kNonNegativeNumber);
    mixer_eps_ = c.number("mixer_rms_eps", 1e-6, Config::kNonNegativeNumber);
    const bool bias = c.boolean("use_bias", false), conv_bias = c.boolean("use_conv_bias", true);
    const std::int64_t V = vocab_, D = D_, E = E_, N = N_, R = R_;
    WeightDecls w(layers_);
    w.global("embed", "backbone.embeddings.weight", {V, D}).or_named("backbone.embedding.weight");
    w.layer("norm", "backbone.layers.{l}.norm.weight", {D});
    w.layer("in_proj", "backbone.layers.{l}.mixer.in_proj.weight", {2 * E, D});
    w.layer("in_bias", "backbone.layers.{l}.mixer.in_proj.bias", {2 * E}).when(bias, "use_bias");
    w.layer("conv", "backbone.layers.{l}.mixer.conv1d.weight", {E, 1, K_});
    w.layer("conv_bias", "backbone.layers.{l}.mixer.conv1d.bias", {E}).when(conv_bias, "use_conv_bias");
    w.layer("x_proj", "backbone.layers.{l}.mixer.x_proj.weight", {R + 2 * N, E});
    w.layer("dt_proj", "backbone.layers.{l}.mixer.dt_proj.weight", {E, R});
    w.layer("dt_bias", "backbone.layers.{l}.mixer.dt_proj.bias", {E});
    w.layer("A_log", "backbone.layers.{l}.mixer.A_log", {E, N});
    w.layer("D", "backbone.layers.{l}.mixer.D", {E});
    w.layer("out_proj", "backbone.layers.{l}.mixer.out_proj.weight", {D, E});
    w.layer("out_bias", "backbone.layers.{l}.mixer.out_proj.bias", {D}).when(bias, "use_bias");
    w.global("norm_f", "backbone.norm_f.weight", {D});
    declare_lm_head(w, vocab_, D_, c.boolean("tie_word_embeddings", true));
    W_.declare(std::move(w));
  }

 protected:
  void forward(const Tokens& tokens, const LayerCallback& on_layer, bool keep_logits, ModelRun& out) const override {
    const int B = static_cast<int>(tokens.size()), L = static_cast<int>(tokens[0].size());
    std::vector<Matrix> H = embed(W_, tokens);
    for (int l = 0; l < layers_; ++l) {
      const LoadedWeights w = W_.load_layer(l);
      const auto x_proj = w.matrix("x_proj"), dt_proj = w.matrix("dt_proj");
      const Vector dt_bias = w.vector("dt_bias");
      const Vector conv_bias = w.has("conv_bias") ? Vector(w.vector("conv_bias")) : Vector();
      Tensor dt_t({B, E_, L}), A_t({E_, N_}), B_t({B, L, N_}), C_t({B, L, N_});
      const auto A_log = w.matrix("A_log");
      for (int e = 0; e < E_; ++e)
        for (int n = 0; n < N_; ++n) A_t.matrix({})(e, n) = -std::exp(A_log(e, n));  // A = −exp(A_log)
      std::vector<Matrix> xs(B), z(B);  // the scan input and the gate of every sequence
      for (int b = 0; b < B; ++b) {
        Matrix proj = matmul_nt(rms_norm(H[b], w.vector("norm"), eps_), w.matrix("in_proj"));
        if (w.has("in_bias")) proj.rowwise() += w.vector("in_bias").transpose();
        xs[b] = silu(causal_depthwise_conv(proj.leftCols(E_), w.matrix("conv"), conv_bias));
        z[b] = proj.rightCols(E_);
        const Matrix xdbl = matmul_nt(xs[b], x_proj);
        Matrix dtr = xdbl.leftCols(R_), Bm = xdbl.middleCols(R_, N_), Cm = xdbl.rightCols(N_);
        if (falcon_) {  // weightless RMS norms on B, C and the time-step input
          const Vector ones_n = Vector::Ones(N_), ones_r = Vector::Ones(R_);
          Bm = rms_norm(Bm, ones_n, mixer_eps_);
          Cm = rms_norm(Cm, ones_n, mixer_eps_);
          dtr = rms_norm(dtr, ones_r, mixer_eps_);
        }
        Matrix dt = matmul_nt(dtr, dt_proj);  // [L, E]
        for (int t = 0; t < L; ++t)
          for (int e = 0; e < E_; ++e) dt(t, e) = softplus(dt(t, e) + dt_bias(e));
        dt_t.matrix({b}) = dt.transpose();
        B_t.matrix({b}) = Bm;
        C_t.matrix({b}) = Cm;
      }
      const std::string name = "backbone.layers." + std::to_string(l) + ".mixer";
      auto op = std::make_unique<MambaOperator>(std::move(dt_t), std::move(A_t), std::move(B_t), std::move(C_t),
                                                W_.dir() + ":" + name);
      const auto Dskip = w.vector("D");
      for (int b = 0; b < B; ++b) {
        Matrix y(L, E_);
        for (int e = 0; e < E_; ++e) op->multiply(b, e, xs[b].col(e), y.col(e));  // selective scan, state N
        for (int e = 0; e < E_; ++e)
          for (int t = 0; t < L; ++t) y(t, e) += Dskip(e) * xs[b](t, e);  // D skip: outside T
        y = y.cwiseProduct(silu(z[b]));
        Matrix o = matmul_nt(y, w.matrix("out_proj"));
        if (w.has("out_bias")) o.rowwise() += w.vector("out_bias").transpose();
        H[b] += o;
      }
      on_layer({name, l, std::move(op)});
    }
    final_norm_and_head(W_, "norm_f", eps_, H, keep_logits, out);
  }

 private:
  bool falcon_;
  int D_, N_, K_, E_, R_;
  double eps_, mixer_eps_;
};

std::unique_ptr<CausalLM> make_mamba(const std::string& dir, const Config& c) {
  return std::make_unique<Mamba>(dir, c, false);
}

std::unique_ptr<CausalLM> make_falcon_mamba(const std::string& dir, const Config& c) {
  return std::make_unique<Mamba>(dir, c, true);
}

}  // namespace

ESS_REGISTER_ARCHITECTURE("MambaForCausalLM", make_mamba, "mamba", "MambaModel");
ESS_REGISTER_ARCHITECTURE("FalconMambaForCausalLM", make_falcon_mamba, "falcon_mamba");

}  // namespace ess::models
