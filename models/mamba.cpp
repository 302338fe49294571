// MambaForCausalLM and FalconMambaForCausalLM (Hugging Face transformers layout).
//   h ← h + out_proj( scan(silu(conv1d(x)), dt, A, B, C) + D⊙x ) ⊙ silu(z),  [x, z] = in_proj(rms(h))
// Captured operator per layer: family "mamba" with dt = softplus(dt_proj(dt_r)) [B, E, L],
// A = −exp(A_log), B, C from x_proj (FalconMamba: RMS-normalised without weights).
#include <cmath>

#include "libess/error.h"
#include "models/model.h"
#include "models/models.h"
#include "operators/mamba.h"

namespace ess::models {

namespace {

class Mamba final : public CausalLM {
 public:
  Mamba(const std::string& dir, const Config& c, bool falcon) : dir_(dir), W_(dir), falcon_(falcon) {
    arch_ = falcon ? "FalconMambaForCausalLM" : "MambaForCausalLM";
    V_ = c.integer("vocab_size");
    D_ = c.integer("hidden_size");
    N_ = c.integer("state_size");
    layers_ = c.integer("num_hidden_layers");
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
    use_bias_ = c.boolean("use_bias", false);
    use_conv_bias_ = c.boolean("use_conv_bias", true);
    embed_ = W_.has("backbone.embeddings.weight") ? "backbone.embeddings.weight" : "backbone.embedding.weight";
    if (W_.has("lm_head.weight"))
      head_ = "lm_head.weight";
    else if (c.boolean("tie_word_embeddings", true))
      head_ = embed_;
    else
      throw InputError(dir + ": no 'lm_head.weight' and tie_word_embeddings is false");
    check_shapes();
  }

  std::string architecture() const override { return arch_; }
  int vocab_size() const override { return V_; }
  int num_layers() const override { return layers_; }

  ModelRun run(const Tokens& tokens, bool keep_logits) const override {
    const int B = static_cast<int>(tokens.size()), L = static_cast<int>(tokens[0].size());
    std::vector<Matrix> H = embed(W_, embed_, V_, D_, tokens);
    ModelRun out;
    for (int l = 0; l < layers_; ++l) {
      const std::string p = "backbone.layers." + std::to_string(l) + ".";
      const Vector norm = W_.vector(p + "norm.weight", D_);
      const RowMatrix in_proj = W_.matrix(p + "mixer.in_proj.weight", 2 * E_, D_);
      const Vector in_bias = use_bias_ ? W_.vector(p + "mixer.in_proj.bias", 2 * E_) : Vector();
      const Tensor convw = W_.tensor(p + "mixer.conv1d.weight", {E_, 1, K_});
      const RowMatrix conv = Eigen::Map<const RowMatrix>(convw.data.data(), E_, K_);
      const Vector conv_bias = use_conv_bias_ ? W_.vector(p + "mixer.conv1d.bias", E_) : Vector();
      const RowMatrix x_proj = W_.matrix(p + "mixer.x_proj.weight", R_ + 2 * N_, E_);
      const RowMatrix dt_proj = W_.matrix(p + "mixer.dt_proj.weight", E_, R_);
      const Vector dt_bias = W_.vector(p + "mixer.dt_proj.bias", E_);
      const RowMatrix A_log = W_.matrix(p + "mixer.A_log", E_, N_);
      const Vector Dskip = W_.vector(p + "mixer.D", E_);
      const RowMatrix out_proj = W_.matrix(p + "mixer.out_proj.weight", D_, E_);
      const Vector out_bias = use_bias_ ? W_.vector(p + "mixer.out_proj.bias", D_) : Vector();
      const Matrix A = -A_log.array().exp().matrix();  // [E, N]

      Tensor dt_t({B, E_, L}), A_t({E_, N_}), B_t({B, L, N_}), C_t({B, L, N_});
      Eigen::Map<RowMatrix>(A_t.data.data(), E_, N_) = A;
      for (int b = 0; b < B; ++b) {
        Matrix proj = rms_norm(H[b], norm, eps_) * in_proj.transpose();
        if (use_bias_) proj.rowwise() += in_bias.transpose();
        const Matrix xs = silu(causal_depthwise_conv(proj.leftCols(E_), conv, conv_bias));
        const Matrix z = proj.rightCols(E_);
        const Matrix xdbl = xs * x_proj.transpose();
        Matrix dtr = xdbl.leftCols(R_), Bm = xdbl.middleCols(R_, N_), Cm = xdbl.rightCols(N_);
        if (falcon_) {  // weightless RMS norms on B, C and the time-step input
          const Vector ones_n = Vector::Ones(N_), ones_r = Vector::Ones(R_);
          Bm = rms_norm(Bm, ones_n, mixer_eps_);
          Cm = rms_norm(Cm, ones_n, mixer_eps_);
          dtr = rms_norm(dtr, ones_r, mixer_eps_);
        }
        Matrix dt = dtr * dt_proj.transpose();  // [L, E]
        for (int t = 0; t < L; ++t)
          for (int e = 0; e < E_; ++e) dt(t, e) = softplus(dt(t, e) + dt_bias(e));
        // Selective scan per channel, state N.
        Matrix y(L, E_);
        Vector s(N_);
        for (int e = 0; e < E_; ++e) {
          s.setZero();
          for (int t = 0; t < L; ++t) {
            double acc = 0;
            for (int n = 0; n < N_; ++n) {
              s(n) = std::exp(dt(t, e) * A(e, n)) * s(n) + dt(t, e) * Bm(t, n) * xs(t, e);
              acc += Cm(t, n) * s(n);
            }
            y(t, e) = acc + Dskip(e) * xs(t, e);
          }
        }
        y = y.cwiseProduct(silu(z));
        Matrix o = y * out_proj.transpose();
        if (use_bias_) o.rowwise() += out_bias.transpose();
        H[b] += o;
        for (int e = 0; e < E_; ++e)
          for (int t = 0; t < L; ++t) dt_t.data[(static_cast<size_t>(b) * E_ + e) * L + t] = dt(t, e);
        Eigen::Map<RowMatrix>(B_t.data.data() + static_cast<size_t>(b) * L * N_, L, N_) = Bm;
        Eigen::Map<RowMatrix>(C_t.data.data() + static_cast<size_t>(b) * L * N_, L, N_) = Cm;
      }
      const std::string name = "backbone.layers." + std::to_string(l) + ".mixer";
      out.layers.push_back({name, l,
                            std::make_unique<MambaOperator>(std::move(dt_t), std::move(A_t), std::move(B_t),
                                                            std::move(C_t), dir_ + ":" + name)});
    }
    final_norm_and_head(W_, "backbone.norm_f.weight", head_, V_, D_, eps_, H, keep_logits, out);
    return out;
  }

 private:
  void check_shapes() const {
    // Touch every tensor's header once so that a missing or misshapen tensor fails before any work.
    auto shape = [&](const std::string& n, std::vector<std::int64_t> s) { expect_tensor_shape(W_, n, s); };
    shape(embed_, {V_, D_});
    if (head_ != embed_) shape(head_, {V_, D_});
    shape("backbone.norm_f.weight", {D_});
    for (int l = 0; l < layers_; ++l) {
      const std::string p = "backbone.layers." + std::to_string(l) + ".";
      shape(p + "norm.weight", {D_});
      shape(p + "mixer.in_proj.weight", {2 * E_, D_});
      shape(p + "mixer.conv1d.weight", {E_, 1, K_});
      if (use_conv_bias_) shape(p + "mixer.conv1d.bias", {E_});
      shape(p + "mixer.x_proj.weight", {R_ + 2 * N_, E_});
      shape(p + "mixer.dt_proj.weight", {E_, R_});
      shape(p + "mixer.dt_proj.bias", {E_});
      shape(p + "mixer.A_log", {E_, N_});
      shape(p + "mixer.D", {E_});
      shape(p + "mixer.out_proj.weight", {D_, E_});
      if (use_bias_) {
        shape(p + "mixer.in_proj.bias", {2 * E_});
        shape(p + "mixer.out_proj.bias", {D_});
      }
    }
  }

  std::string dir_, arch_, embed_, head_;
  Weights W_;
  bool falcon_;
  int V_, D_, N_, layers_, K_, E_, R_;
  double eps_, mixer_eps_;
  bool use_bias_, use_conv_bias_;
};

}  // namespace

std::unique_ptr<CausalLM> make_mamba(const std::string& dir, const Config& c, bool falcon) {
  return std::make_unique<Mamba>(dir, c, falcon);
}

}  // namespace ess::models
