// conv (short or long convolution; gated Hyena/H3-style with pre/post gates):
// T_ij = post_i · h[i−j] · pre_j for 0 ≤ i−j < K (gates default 1). Realization: a shift register
// of K states (x_t, …, x_{t−K+1}) with B_t = pre_t e_0, C_t = post_t (h[0], …, h[K−1]).
#pragma once
#include "libess/hdf5.h"
#include "libess/operator.h"
#include "libess/tensor.h"
#include "operators/family.h"

namespace ess {

class ConvOperator final : public LayerOperator {
 public:
  // h: [C, K]; pre_gate, post_gate: empty or [B, C, L]; seq_len is used when there are no gates.
  ConvOperator(Tensor h, Tensor pre_gate, Tensor post_gate, int seq_len, const std::string& context);
  static std::unique_ptr<LayerOperator> read(const h5::Object& group, const OperatorReadOptions& options);
  // Generic random inputs for the conformance tests (operators/family.h).
  static std::unique_ptr<LayerOperator> example(unsigned seed);
  std::string family() const override { return "conv"; }
  ChannelKind channel_kind() const override { return ChannelKind::channel; }
  int batch() const override { return B_; }
  int channels() const override { return static_cast<int>(h_.dim(0)); }
  int seq_len() const override { return L_; }
  int filter_length() const { return static_cast<int>(h_.dim(1)); }
  int tss(int i) const override { return std::min(i, filter_length() - 1); }
  int realization_dim() const override { return filter_length(); }
  std::unique_ptr<Realization> realization(int b, int c) const override;
  void materialize(int b, int c, Eigen::Ref<Matrix> T) const override;
  Vector apply(int b, int c, const Vector& x) const override;

 private:
  double pre(int b, int c, int t) const { return pre_.size() ? pre_.vector({b, c})(t) : 1.0; }
  double post(int b, int c, int t) const { return post_.size() ? post_.vector({b, c})(t) : 1.0; }
  Tensor h_, pre_, post_;
  int B_ = 1, L_ = 0;
};

}  // namespace ess
