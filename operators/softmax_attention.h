// softmax_attention: T_ij = softmax over allowed j of s_ij, s_ij = (q_i·k_j)·scale, or with logit
// soft-capping c > 0 (Gemma-2) s_ij = c·tanh((q_i·k_j)·scale / c); causal, with an optional sliding
// window w (allowed: i − w < j ≤ i) and an optional explicit mask (block-sparse, strided, global
// tokens, …). Dense: no state-space realization.
#pragma once
#include <cmath>
#include <cstdint>
#include <vector>

#include "libess/hdf5.h"
#include "libess/operator.h"
#include "libess/tensor.h"
#include "operators/family.h"

namespace ess {

class SoftmaxAttentionOperator final : public LayerOperator {
 public:
  // q, k: [B, H, L, d]; mask: empty or L×L row-major (1 = may attend; must be causal);
  // scale ≤ 0 means 1/sqrt(d); window 0 = none; softcap 0 = none (else c > 0: scores c·tanh(s/c)).
  SoftmaxAttentionOperator(Tensor q, Tensor k, std::vector<std::uint8_t> mask, double scale, int window,
                           const std::string& context, double softcap = 0.0);
  static std::unique_ptr<LayerOperator> read(const h5::Object& group, const OperatorReadOptions& options);
  // Generic random inputs for the conformance tests (operators/family.h).
  static std::unique_ptr<LayerOperator> example(unsigned seed);

  std::string family() const override { return "softmax_attention"; }
  ChannelKind channel_kind() const override { return ChannelKind::head; }
  int batch() const override { return static_cast<int>(q_.dim(0)); }
  int channels() const override { return static_cast<int>(q_.dim(1)); }
  int seq_len() const override { return static_cast<int>(q_.dim(2)); }
  // KV-cache entries needed after step i: past positions j < i that some row k ≥ i attends to.
  int tss(int i) const override { return tss_[i]; }
  void materialize(int b, int c, Eigen::Ref<Matrix> T) const override;
  Vector apply(int b, int c, const Vector& x) const override;
  // Y = T X in tiles of kRowTile query rows against the keys they may see: scores take O(kRowTile·L)
  // memory, never L × L; O(L²·(d + P)) time (O(L·w·(d + P)) with a window).
  void multiply(int b, int c, const Eigen::Ref<const Matrix>& X, Eigen::Ref<Matrix> Y) const override;
  static constexpr int kRowTile = 64;
  // Products with H_i from q, k and the mask, in tiles of kProductTile query rows against the keys
  // s < i: never more than kProductTile × L probabilities in memory. Row maxima and normalizers are
  // computed once per channel (O(L)); every ‖H_i‖_F² of the requested blocks in one more sweep.
  std::unique_ptr<BlockProducts> block_products(int b, int c) const override;
  bool has_block_products() const override { return true; }
  static constexpr int kProductTile = 128;
  double scale() const { return scale_; }
  int window() const { return window_; }
  double softcap() const { return softcap_; }

 private:
  friend class SoftmaxBlockProducts;
  bool allowed(int i, int j) const {
    if (j > i) return false;
    if (window_ > 0 && i - j >= window_) return false;
    return mask_.empty() || mask_[static_cast<size_t>(i) * seq_len() + j] != 0;
  }
  // The attention logit of a scaled dot product q_i·k_j·scale: itself, or c·tanh(·/c) when capped.
  double logit(double scaled_dot) const {
    return softcap_ > 0 ? softcap_ * std::tanh(scaled_dot / softcap_) : scaled_dot;
  }
  // Scaled dot products → attention logits in place (a no-op without a soft cap): every path that
  // computes scores itself (row_tile, the lanczos engine's block products) goes through it.
  void cap_logits(Matrix& S) const {
    if (softcap_ > 0) S = S.unaryExpr([this](double v) { return logit(v); });
  }
  // Rows i0 … i0 + n − 1 of T against the keys j0 … i0 + n − 1 any of them may see (j0: the window's
  // first key for row i0, else 0): P(r, j − j0) = T(i0 + r, j), zero where not allowed. Returns j0.
  int row_tile(int b, int c, int i0, int n, Matrix& P) const;
  Tensor q_, k_;
  std::vector<std::uint8_t> mask_;
  double scale_;
  int window_;
  double softcap_;
  std::vector<int> tss_;
};

}  // namespace ess
