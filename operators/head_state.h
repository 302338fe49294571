// Base for head-wise families with a d_k-dimensional state realized from per-head q, k
// [B, H, L, d]: linear attention, retention, GLA, DeltaNet. Subclasses say how A_t, B_t, C_t are
// built (realization) and give an independent y = T x (apply); T is materialized from the
// realization.
#pragma once
#include "libess/operator.h"
#include "libess/tensor.h"

namespace ess {

class HeadStateOperator : public LayerOperator {
 public:
  ChannelKind channel_kind() const override { return ChannelKind::head; }
  int batch() const override { return static_cast<int>(q_.dim(0)); }
  int channels() const override { return static_cast<int>(q_.dim(1)); }
  int seq_len() const override { return static_cast<int>(q_.dim(2)); }
  int key_dim() const { return static_cast<int>(q_.dim(3)); }
  int tss(int) const override { return key_dim(); }
  int realization_dim() const override { return key_dim(); }
  void materialize(int b, int c, Eigen::Ref<Matrix> T) const override { T = ess::materialize(*realization(b, c)); }

 protected:
  // Validates q, k: [B, H, L, d] with equal shapes and finite values.
  HeadStateOperator(Tensor q, Tensor k, const std::string& context);
  // (L × d) slices transposed to d × L (columns = time steps), as realizations want them.
  Matrix q_columns(int b, int h) const { return q_.matrix({b, h}).transpose(); }
  Matrix k_columns(int b, int h) const { return k_.matrix({b, h}).transpose(); }
  Tensor q_, k_;
};

}  // namespace ess
