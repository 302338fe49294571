// delta_net (DeltaNet / Gated DeltaNet): T_ij = q_iᵀ A_i ⋯ A_{j+1} β_j k_j with
// A_m = e^{g_m} (I − β_m k_m k_mᵀ) (g = 0 without a gate). Dense transitions (rank-one updates).
#pragma once
#include "libess/hdf5.h"
#include "operators/family.h"
#include "operators/head_state.h"

namespace ess {

class DeltaNetOperator final : public HeadStateOperator {
 public:
  // beta: [B, H, L]; log_gate: empty or [B, H, L] (≤ 0).
  DeltaNetOperator(Tensor q, Tensor k, Tensor beta, Tensor log_gate, const std::string& context);
  static std::unique_ptr<LayerOperator> read(const h5::Object& group, const OperatorReadOptions& options);
  // Generic random inputs for the conformance tests (operators/family.h).
  static std::unique_ptr<LayerOperator> example(unsigned seed);
  std::string family() const override { return "delta_net"; }
  std::unique_ptr<Realization> realization(int b, int c) const override;
  Vector apply(int b, int c, const Vector& x) const override;

 private:
  double gate(int b, int h, int t) const { return gate_.size() ? std::exp(gate_.vector({b, h})(t)) : 1.0; }
  Tensor beta_, gate_;
};

}  // namespace ess
