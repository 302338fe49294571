// Mamba2ForCausalLM (Hugging Face transformers layout; SSD with grouped B/C).
//   [z, xBC, dt] = in_proj(rms(h)); xBC ← silu(conv1d(xBC)); [x, B, C] = xBC;
//   dt ← clamp(softplus(dt + dt_bias), time_step_limit); y = SSD(x) + D⊙x;
//   y ← rms_norm(y ⊙ silu(z)) ⊙ w over the full width (as HF transformers; mamba_ssm normalizes per
//   group); h ← h + out_proj(y).
// Captured operator per layer: family "mamba2", dt [B, H, L], A = −exp(A_log) [H], B, C [B, G, L, N].
#include <cmath>
#include <limits>

#include "libess/error.h"
#include "models/models.h"
#include "operators/mamba2.h"

namespace ess::models {

namespace {

class Mamba2 final : public CausalLM {
 public:
  Mamba2(const std::string& dir, const Config& c) : dir_(dir), W_(dir) {
    V_ = c.integer("vocab_size");
    D_ = c.integer("hidden_size");
    N_ = c.integer("state_size");
    layers_ = c.integer("num_hidden_layers");
    K_ = c.integer("conv_kernel", 4);
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
    use_bias_ = c.boolean("use_bias", false);
    use_conv_bias_ = c.boolean("use_conv_bias", true);
    if (c.has("time_step_limit")) {
      // [min, max] step sizes; max may be Infinity (the transformers default).
      const auto lim = c.numbers("time_step_limit", 2, {0.0, std::numeric_limits<double>::infinity()});
      dt_min_ = lim[0];
      dt_max_ = lim[1];
      if (std::isinf(dt_min_) || dt_min_ > dt_max_)
        throw InputError(c.path() + ": time_step_limit must be [min, max] with 0 ≤ min ≤ max and min finite");
    }
    conv_dim_ = E_ + 2 * G_ * N_;
    if (W_.has("backbone.embeddings.weight"))
      embed_ = "backbone.embeddings.weight";
    else
      embed_ = "backbone.embedding.weight";
    head_ = W_.has("lm_head.weight") ? "lm_head.weight" : embed_;
    if (head_ == embed_ && !c.boolean("tie_word_embeddings", true))
      throw InputError(dir + ": no 'lm_head.weight' and tie_word_embeddings is false");
    if (!W_.has(std::string("backbone.layers.0.mixer.in_proj.weight")))
      throw InputError(dir + ": checkpoint has no tensor 'backbone.layers.0.mixer.in_proj.weight'");
    proj_ = static_cast<int>(W_.info("backbone.layers.0.mixer.in_proj.weight").shape.at(0));
    d_mlp_ = (proj_ - 2 * E_ - 2 * G_ * N_ - H_) / 2;
    if (d_mlp_ < 0 || 2 * d_mlp_ + E_ + conv_dim_ + H_ != proj_)
      throw InputError(dir + ": tensor 'backbone.layers.0.mixer.in_proj.weight' has " + std::to_string(proj_) +
                       " rows, which does not split into [z, xBC, dt] for this config");
    auto shape = [&](const std::string& n, std::vector<std::int64_t> s) { expect_tensor_shape(W_, n, s); };
    shape(embed_, {V_, D_});
    if (head_ != embed_) shape(head_, {V_, D_});
    shape("backbone.norm_f.weight", {D_});
    for (int l = 0; l < layers_; ++l) {
      const std::string p = "backbone.layers." + std::to_string(l) + ".";
      shape(p + "norm.weight", {D_});
      shape(p + "mixer.in_proj.weight", {proj_, D_});
      shape(p + "mixer.conv1d.weight", {conv_dim_, 1, K_});
      if (use_conv_bias_) shape(p + "mixer.conv1d.bias", {conv_dim_});
      shape(p + "mixer.dt_bias", {H_});
      shape(p + "mixer.A_log", {H_});
      shape(p + "mixer.D", {H_});
      shape(p + "mixer.norm.weight", {E_});
      shape(p + "mixer.out_proj.weight", {D_, E_});
      if (use_bias_) {
        shape(p + "mixer.in_proj.bias", {proj_});
        shape(p + "mixer.out_proj.bias", {D_});
      }
    }
  }

  std::string architecture() const override { return "Mamba2ForCausalLM"; }
  int vocab_size() const override { return V_; }
  int num_layers() const override { return layers_; }

  ModelRun run(const Tokens& tokens, bool keep_logits) const override {
    const int B = static_cast<int>(tokens.size()), L = static_cast<int>(tokens[0].size());
    std::vector<Matrix> Hs = embed(W_, embed_, V_, D_, tokens);
    ModelRun out;
    const int hpg = H_ / G_;
    for (int l = 0; l < layers_; ++l) {
      const std::string p = "backbone.layers." + std::to_string(l) + ".";
      const Vector norm = W_.vector(p + "norm.weight", D_);
      const RowMatrix in_proj = W_.matrix(p + "mixer.in_proj.weight", proj_, D_);
      const Tensor convw = W_.tensor(p + "mixer.conv1d.weight", {conv_dim_, 1, K_});
      const RowMatrix conv = Eigen::Map<const RowMatrix>(convw.data.data(), conv_dim_, K_);
      const Vector conv_bias = use_conv_bias_ ? W_.vector(p + "mixer.conv1d.bias", conv_dim_) : Vector();
      const Vector dt_bias = W_.vector(p + "mixer.dt_bias", H_);
      const Vector A = -W_.vector(p + "mixer.A_log", H_).array().exp().matrix();
      const Vector Dskip = W_.vector(p + "mixer.D", H_);
      const Vector gnorm = W_.vector(p + "mixer.norm.weight", E_);
      const RowMatrix out_proj = W_.matrix(p + "mixer.out_proj.weight", D_, E_);
      const Vector in_bias = use_bias_ ? W_.vector(p + "mixer.in_proj.bias", proj_) : Vector();
      const Vector out_bias = use_bias_ ? W_.vector(p + "mixer.out_proj.bias", D_) : Vector();
      Tensor dt_t({B, H_, L}), A_t({H_}), B_t({B, G_, L, N_}), C_t({B, G_, L, N_});
      for (int h = 0; h < H_; ++h) A_t.data[h] = A(h);
      for (int b = 0; b < B; ++b) {
        Matrix proj = rms_norm(Hs[b], norm, eps_) * in_proj.transpose();
        if (use_bias_) proj.rowwise() += in_bias.transpose();
        const Matrix z = proj.middleCols(2 * d_mlp_, E_);
        const Matrix xBC = silu(causal_depthwise_conv(proj.middleCols(2 * d_mlp_ + E_, conv_dim_), conv, conv_bias));
        const Matrix xs = xBC.leftCols(E_), Bm = xBC.middleCols(E_, G_ * N_), Cm = xBC.rightCols(G_ * N_);
        Matrix dt = proj.rightCols(H_);
        for (int t = 0; t < L; ++t)
          for (int h = 0; h < H_; ++h) dt(t, h) = std::clamp(softplus(dt(t, h) + dt_bias(h)), dt_min_, dt_max_);
        // SSD recurrence per head: state [P, N], s ← exp(dt A_h) s + dt x_t B_tᵀ, y_t = s C_t + D_h x_t.
        Matrix y(L, E_);
        Matrix s(P_, N_);
        for (int h = 0; h < H_; ++h) {
          const int g = h / hpg;
          s.setZero();
          for (int t = 0; t < L; ++t) {
            const double decay = std::exp(dt(t, h) * A(h));
            s *= decay;
            s.noalias() += (dt(t, h) * xs.row(t).segment(h * P_, P_)).transpose() * Bm.row(t).segment(g * N_, N_);
            y.row(t).segment(h * P_, P_) =
                (s * Cm.row(t).segment(g * N_, N_).transpose()).transpose() + Dskip(h) * xs.row(t).segment(h * P_, P_);
          }
        }
        y = rms_norm(y.cwiseProduct(silu(z)), gnorm, eps_);
        Matrix o = y * out_proj.transpose();
        if (use_bias_) o.rowwise() += out_bias.transpose();
        Hs[b] += o;
        for (int h = 0; h < H_; ++h)
          for (int t = 0; t < L; ++t) dt_t.data[(static_cast<size_t>(b) * H_ + h) * L + t] = dt(t, h);
        for (int g = 0; g < G_; ++g)
          for (int t = 0; t < L; ++t)
            for (int n = 0; n < N_; ++n) {
              const size_t k = ((static_cast<size_t>(b) * G_ + g) * L + t) * N_ + n;
              B_t.data[k] = Bm(t, g * N_ + n);
              C_t.data[k] = Cm(t, g * N_ + n);
            }
      }
      const std::string name = "backbone.layers." + std::to_string(l) + ".mixer";
      out.layers.push_back({name, l,
                            std::make_unique<Mamba2Operator>(std::move(dt_t), std::move(A_t), std::move(B_t),
                                                             std::move(C_t), dir_ + ":" + name)});
    }
    final_norm_and_head(W_, "backbone.norm_f.weight", head_, V_, D_, eps_, Hs, keep_logits, out);
    return out;
  }

 private:
  std::string dir_, embed_, head_;
  Weights W_;
  int V_, D_, N_, layers_, K_, G_, H_, P_, E_, conv_dim_, proj_, d_mlp_;
  double eps_, dt_min_ = 0.0, dt_max_ = std::numeric_limits<double>::infinity();
  bool use_bias_, use_conv_bias_;
};

}  // namespace

std::unique_ptr<CausalLM> make_mamba2(const std::string& dir, const Config& c) {
  return std::make_unique<Mamba2>(dir, c);
}

}  // namespace ess::models
