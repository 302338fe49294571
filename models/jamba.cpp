// JambaForCausalLM (AI21 Jamba, Hugging Face transformers layout): Mamba layers and attention layers
// (layer l is attention when l % attn_layer_period == attn_layer_offset), each followed by an MLP
// that is a mixture of experts when l % expert_layer_period == expert_layer_offset.
//   u = rms(h; input_layernorm)
//   mamba layer:  [x | z] = in_proj(u); x ← act(conv1d(x)); [δ | B | C] = x_proj(x), each RMS-normalised
//                 with its weight (dt_layernorm, b_layernorm, c_layernorm); dt = softplus(dt_proj(δ));
//                 y = (scan(x) + D x) ⊙ act(z); h ← h + out_proj(y)
//   attention:    causal grouped-query softmax attention with no positional encoding; h ← h + o_proj(o)
//   MLP:          v = rms(h; pre_ff_layernorm); dense: down(act(gate(v)) ⊙ up(v)); MoE: p = softmax(router(v)),
//                 the top num_experts_per_tok experts by p, each weighted by its p (not renormalised)
//   logits = rms(h; final_layernorm) · lm_headᵀ
// Captured operators: "model.layers.{l}.mamba" (family mamba, per channel: dt, A, normalised B, C)
// and "model.layers.{l}.self_attn" (family softmax_attention: q, k per head, scale hd^−1/2).
#include <algorithm>
#include <cmath>
#include <numeric>

#include "libess/error.h"
#include "models/models.h"
#include "operators/mamba.h"

namespace ess::models {

namespace {

class Jamba final : public CausalLM {
 public:
  Jamba(const std::string& dir, const Config& c) : CausalLM(dir, "JambaForCausalLM") {
    vocab_ = c.integer("vocab_size");
    layers_ = c.integer("num_hidden_layers");
    D_ = c.integer("hidden_size");
    H_ = c.integer("num_attention_heads", 32);
    Hkv_ = c.json().contains("num_key_value_heads") && c.json()["num_key_value_heads"].is_null()
               ? H_
               : c.integer("num_key_value_heads", 8);  // JambaConfig: default 8, null → H
    hd_ = c.has("head_dim") ? c.integer("head_dim") : D_ / H_;
    if (hd_ < 1 || H_ % Hkv_ != 0)
      throw InputError(c.path() +
                       ": num_attention_heads must be a multiple of num_key_value_heads and at most "
                       "hidden_size");
    c.product({H_, hd_}, "num_attention_heads × head_dim");
    I_ = c.integer("intermediate_size", 14336);
    eps_ = c.number("rms_norm_eps", 1e-6, Config::kNonNegativeNumber);
    act_ = read_activation(c, "hidden_act", "silu");
    if (c.has("sliding_window"))
      throw InputError(c.path() + ": JambaForCausalLM with a sliding_window is not supported (full attention only)");
    N_ = c.integer("mamba_d_state", 16);
    K_ = c.integer("mamba_d_conv", 4);
    E_ = c.product({c.integer("mamba_expand", 2), D_}, "mamba_expand × hidden_size");
    if (c.has("mamba_dt_rank") && c.json()["mamba_dt_rank"].is_string() && c.json()["mamba_dt_rank"] != "auto")
      throw InputError(c.path() + ": mamba_dt_rank must be an integer or \"auto\"");
    R_ = c.has("mamba_dt_rank") && !c.json()["mamba_dt_rank"].is_string() ? c.integer("mamba_dt_rank")
                                                                          : (D_ + 15) / 16;  // "auto": ⌈D/16⌉
    c.product({R_ + 2 * static_cast<long long>(N_)}, "mamba_dt_rank + 2 × mamba_d_state");
    top_k_ = c.integer("num_experts_per_tok", 2);
    experts_ = c.integer("num_experts", 16);
    const int ap = c.integer("attn_layer_period", 8), ao = c.integer("attn_layer_offset", 4, Config::kNonNegative);
    const int ep = c.integer("expert_layer_period", 2), eo = c.integer("expert_layer_offset", 1, Config::kNonNegative);
    if (ao >= ap || eo >= ep)
      throw InputError(c.path() + ": attn_layer_offset / expert_layer_offset must be smaller than its period");
    std::vector<bool> attn(layers_), mamba(layers_), moe(layers_), dense(layers_);
    for (int l = 0; l < layers_; ++l) {
      attn[l] = l % ap == ao;
      mamba[l] = !attn[l];
      moe[l] = experts_ > 1 && l % ep == eo;  // layers_num_experts > 1
      dense[l] = !moe[l];
    }
    if (std::find(moe.begin(), moe.end(), true) != moe.end() && (top_k_ > experts_))
      throw InputError(c.path() + ": num_experts_per_tok " + std::to_string(top_k_) + " exceeds num_experts " +
                       std::to_string(experts_));
    attention_ = attn;
    moe_ = moe;

    const std::int64_t V = vocab_, D = D_, q = H_ * hd_, kv = Hkv_ * hd_, I = I_, E = E_, N = N_, R = R_, K = K_;
    const bool conv_bias = c.boolean("mamba_conv_bias", true), proj_bias = c.boolean("mamba_proj_bias", false);
    const std::string a = "layer type attention (attn_layer_period/offset)", m = "layer type mamba";
    const std::string x = "expert layer (expert_layer_period/offset)", d = "dense MLP layer";
    WeightDecls w(layers_);
    w.global("embed", "model.embed_tokens.weight", {V, D});
    w.layer("input_norm", "model.layers.{l}.input_layernorm.weight", {D});
    w.layer("in_proj", "model.layers.{l}.mamba.in_proj.weight", {2 * E, D}).only_in_layers(mamba, m);
    w.layer("in_bias", "model.layers.{l}.mamba.in_proj.bias", {2 * E})
        .only_in_layers(mamba, m + ", mamba_proj_bias")
        .when(proj_bias, "mamba_proj_bias");
    w.layer("conv", "model.layers.{l}.mamba.conv1d.weight", {E, 1, K}).only_in_layers(mamba, m);
    w.layer("conv_bias", "model.layers.{l}.mamba.conv1d.bias", {E})
        .only_in_layers(mamba, m)
        .when(conv_bias, "mamba_conv_bias");
    w.layer("x_proj", "model.layers.{l}.mamba.x_proj.weight", {R + 2 * N, E}).only_in_layers(mamba, m);
    w.layer("dt_proj", "model.layers.{l}.mamba.dt_proj.weight", {E, R}).only_in_layers(mamba, m);
    w.layer("dt_bias", "model.layers.{l}.mamba.dt_proj.bias", {E}).only_in_layers(mamba, m);
    w.layer("A_log", "model.layers.{l}.mamba.A_log", {E, N}).only_in_layers(mamba, m);
    w.layer("D", "model.layers.{l}.mamba.D", {E}).only_in_layers(mamba, m);
    w.layer("dt_norm", "model.layers.{l}.mamba.dt_layernorm.weight", {R}).only_in_layers(mamba, m);
    w.layer("b_norm", "model.layers.{l}.mamba.b_layernorm.weight", {N}).only_in_layers(mamba, m);
    w.layer("c_norm", "model.layers.{l}.mamba.c_layernorm.weight", {N}).only_in_layers(mamba, m);
    w.layer("out_proj", "model.layers.{l}.mamba.out_proj.weight", {D, E}).only_in_layers(mamba, m);
    w.layer("out_bias", "model.layers.{l}.mamba.out_proj.bias", {D})
        .only_in_layers(mamba, m + ", mamba_proj_bias")
        .when(proj_bias, "mamba_proj_bias");
    w.layer("q_proj", "model.layers.{l}.self_attn.q_proj.weight", {q, D}).only_in_layers(attn, a);
    w.layer("k_proj", "model.layers.{l}.self_attn.k_proj.weight", {kv, D}).only_in_layers(attn, a);
    w.layer("v_proj", "model.layers.{l}.self_attn.v_proj.weight", {kv, D}).only_in_layers(attn, a);
    w.layer("o_proj", "model.layers.{l}.self_attn.o_proj.weight", {D, q}).only_in_layers(attn, a);
    w.layer("ff_norm", "model.layers.{l}.pre_ff_layernorm.weight", {D});
    w.layer("gate_proj", "model.layers.{l}.feed_forward.gate_proj.weight", {I, D}).only_in_layers(dense, d);
    w.layer("up_proj", "model.layers.{l}.feed_forward.up_proj.weight", {I, D}).only_in_layers(dense, d);
    w.layer("down_proj", "model.layers.{l}.feed_forward.down_proj.weight", {D, I}).only_in_layers(dense, d);
    w.layer("router", "model.layers.{l}.feed_forward.router.weight", {experts_, D}).only_in_layers(moe, x);
    w.layer("e_gate", "model.layers.{l}.feed_forward.experts.{i}.gate_proj.weight", {I, D})
        .only_in_layers(moe, x)
        .repeated(experts_);
    w.layer("e_up", "model.layers.{l}.feed_forward.experts.{i}.up_proj.weight", {I, D})
        .only_in_layers(moe, x)
        .repeated(experts_);
    w.layer("e_down", "model.layers.{l}.feed_forward.experts.{i}.down_proj.weight", {D, I})
        .only_in_layers(moe, x)
        .repeated(experts_);
    w.global("norm", "model.final_layernorm.weight", {D});
    declare_lm_head(w, vocab_, D_, c.boolean("tie_word_embeddings", false));
    W_.declare(std::move(w));
  }

 protected:
  void forward(const Tokens& tokens, const LayerCallback& on_layer, bool keep_logits, ModelRun& out) const override {
    const int B = static_cast<int>(tokens.size()), L = static_cast<int>(tokens[0].size());
    std::vector<Matrix> Hs = embed(W_, tokens);
    for (int l = 0; l < layers_; ++l) {
      const LoadedWeights w = W_.load_layer(l);
      std::vector<Matrix> Us(B);
      for (int b = 0; b < B; ++b) Us[b] = rms_norm(Hs[b], w.vector("input_norm"), eps_);
      std::unique_ptr<LayerOperator> op;
      std::string name = "model.layers." + std::to_string(l) + (attention_[l] ? ".self_attn" : ".mamba");
      if (attention_[l]) {
        std::vector<Matrix> Qs(B), Ks(B), Vs(B), Os;
        for (int b = 0; b < B; ++b) {
          Qs[b] = linear(Us[b], w, "q_proj");
          Ks[b] = linear(Us[b], w, "k_proj");
          Vs[b] = linear(Us[b], w, "v_proj");
        }
        AttentionSpec a;
        a.heads = H_;
        a.kv_heads = Hkv_;
        a.head_dim = hd_;
        op = softmax_attention(std::move(Qs), std::move(Ks), Vs, a, W_.dir() + ":" + name, Os);
        for (int b = 0; b < B; ++b) Hs[b] += linear(Os[b], w, "o_proj");
      } else {
        op = mamba(w, Us, Hs, name, L);
      }
      for (int b = 0; b < B; ++b) {
        const Matrix V = rms_norm(Hs[b], w.vector("ff_norm"), eps_);
        Hs[b] += moe_[l] ? experts(V, w) : mlp(V, w, "gate_proj", "up_proj", "down_proj", 0);
      }
      on_layer({name, l, std::move(op), attention_[l] ? hd_ : 0});
    }
    final_norm_and_head(W_, "norm", eps_, Hs, keep_logits, out);
  }

 private:
  // The Mamba mixer of one layer for every sequence (adds its output to Hs); returns its operator.
  std::unique_ptr<LayerOperator> mamba(const LoadedWeights& w, const std::vector<Matrix>& Us, std::vector<Matrix>& Hs,
                                       const std::string& name, int L) const {
    const int B = static_cast<int>(Us.size());
    const Vector conv_bias = w.has("conv_bias") ? Vector(w.vector("conv_bias")) : Vector();
    const auto dt_bias = w.vector("dt_bias");
    Tensor dt_t({B, E_, L}), A_t({E_, N_}), B_t({B, L, N_}), C_t({B, L, N_});
    const auto A_log = w.matrix("A_log");
    for (int e = 0; e < E_; ++e)
      for (int n = 0; n < N_; ++n) A_t.matrix({})(e, n) = -std::exp(A_log(e, n));
    std::vector<Matrix> xs(B), z(B);
    for (int b = 0; b < B; ++b) {
      const Matrix proj = linear(Us[b], w, "in_proj", "in_bias");
      xs[b] = activate(causal_depthwise_conv(proj.leftCols(E_), w.matrix("conv"), conv_bias), act_);
      z[b] = proj.rightCols(E_);
      const Matrix xdbl = matmul_nt(xs[b], w.matrix("x_proj"));
      const Matrix dtr = rms_norm(xdbl.leftCols(R_), w.vector("dt_norm"), eps_);
      B_t.matrix({b}) = rms_norm(xdbl.middleCols(R_, N_), w.vector("b_norm"), eps_);
      C_t.matrix({b}) = rms_norm(xdbl.rightCols(N_), w.vector("c_norm"), eps_);
      Matrix dt = matmul_nt(dtr, w.matrix("dt_proj"));
      for (int t = 0; t < L; ++t)
        for (int e = 0; e < E_; ++e) dt(t, e) = softplus(dt(t, e) + dt_bias(e));
      dt_t.matrix({b}) = dt.transpose();
    }
    auto op = std::make_unique<MambaOperator>(std::move(dt_t), std::move(A_t), std::move(B_t), std::move(C_t),
                                              W_.dir() + ":" + name);
    const auto Dskip = w.vector("D");
    for (int b = 0; b < B; ++b) {
      Matrix y(L, E_);
      for (int e = 0; e < E_; ++e) op->multiply(b, e, xs[b].col(e), y.col(e));  // selective scan, state N
      y += xs[b] * Dskip.asDiagonal();                                          // D skip: outside T
      Hs[b] += linear(y.cwiseProduct(activate(z[b], act_)), w, "out_proj", "out_bias");
    }
    return op;
  }

  Matrix mlp(const Matrix& V, const LoadedWeights& w, const char* gate, const char* up, const char* down,
             int item) const {
    const Matrix g = activate(matmul_nt(V, w.matrix(gate, item)), act_);
    return matmul_nt(g.cwiseProduct(matmul_nt(V, w.matrix(up, item))), w.matrix(down, item));
  }

  // JambaSparseMoeBlock: router probabilities p = softmax(router(v)); each token's top-k experts
  // (the highest p; torch.topk) add p_e · expert_e(v). Every expert runs on the rows that chose it.
  Matrix experts(const Matrix& V, const LoadedWeights& w) const {
    const Index L = V.rows();
    Matrix logits = matmul_nt(V, w.matrix("router"));  // [L, experts]
    Matrix weight = Matrix::Zero(L, experts_);
    std::vector<int> order(experts_);
    for (Index t = 0; t < L; ++t) {
      const double top = logits.row(t).maxCoeff();
      const Eigen::RowVectorXd p = (logits.row(t).array() - top).exp().matrix();
      const Eigen::RowVectorXd probs = p / p.sum();
      std::iota(order.begin(), order.end(), 0);
      std::stable_sort(order.begin(), order.end(), [&](int a, int b) { return probs(a) > probs(b); });
      for (int k = 0; k < top_k_; ++k) weight(t, order[k]) = probs(order[k]);
    }
    Matrix out = Matrix::Zero(L, D_);
    for (int e = 0; e < experts_; ++e) {
      std::vector<Index> rows;
      for (Index t = 0; t < L; ++t)
        if (weight(t, e) != 0) rows.push_back(t);
      if (rows.empty()) continue;
      Matrix Ve(static_cast<Index>(rows.size()), D_);
      for (size_t r = 0; r < rows.size(); ++r) Ve.row(static_cast<Index>(r)) = V.row(rows[r]);
      const Matrix Ye = mlp(Ve, w, "e_gate", "e_up", "e_down", e);
      for (size_t r = 0; r < rows.size(); ++r) out.row(rows[r]) += weight(rows[r], e) * Ye.row(static_cast<Index>(r));
    }
    return out;
  }

  int D_, H_, Hkv_, hd_, I_, N_, K_, E_, R_, top_k_, experts_;
  double eps_;
  Activation act_ = Activation::silu;
  std::vector<bool> attention_, moe_;
};

std::unique_ptr<CausalLM> make_jamba(const std::string& dir, const Config& c) {
  return std::make_unique<Jamba>(dir, c);
}

}  // namespace

ESS_REGISTER_ARCHITECTURE("JambaForCausalLM", make_jamba, "jamba");

}  // namespace ess::models
