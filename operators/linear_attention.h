// linear_attention: T_ij = φ(q_i)·φ(k_j) (feature maps already applied), optionally divided by the
// row normaliser z_i = Σ_{m≤i} φ(q_i)·φ(k_m). Realization: A_t = I, B_t = k_t, C_t = q_t / z_t.
#pragma once
#include "libess/hdf5.h"
#include "operators/family.h"
#include "operators/head_state.h"

namespace ess {

class LinearAttentionOperator final : public HeadStateOperator {
 public:
  LinearAttentionOperator(Tensor q, Tensor k, bool normalize, const std::string& context);
  static std::unique_ptr<LayerOperator> read(const h5::Object& group, const OperatorReadOptions& options);
  // Generic random inputs for the conformance tests (operators/family.h).
  static std::unique_ptr<LayerOperator> example(unsigned seed);
  std::string family() const override { return "linear_attention"; }
  std::unique_ptr<Realization> realization(int b, int c) const override;
  Vector apply(int b, int c, const Vector& x) const override;

 private:
  Vector normalizers(int b, int h) const;  // z_t (ones without normalization)
  bool normalize_;
};

}  // namespace ess
