// retention (RetNet / weighted linear attention): T_ij = Σ_n q_i[n] k_j[n] γ_n^{i−j}, with a fixed
// decay per head (γ_n = γ) or per key dimension. Realization: A = diag(γ) (time-invariant).
#pragma once
#include "libess/hdf5.h"
#include "operators/family.h"
#include "operators/head_state.h"

namespace ess {

class RetentionOperator final : public HeadStateOperator {
 public:
  // decay: [H] or [H, d]
  RetentionOperator(Tensor q, Tensor k, Tensor decay, const std::string& context);
  static std::unique_ptr<LayerOperator> read(const h5::Object& group, const OperatorReadOptions& options);
  // Generic random inputs for the conformance tests (operators/family.h).
  static std::unique_ptr<LayerOperator> example(unsigned seed);
  std::string family() const override { return "retention"; }
  std::unique_ptr<Realization> realization(int b, int c) const override;
  Vector apply(int b, int c, const Vector& x) const override;

 private:
  double gamma(int h, int n) const { return decay_.rank() == 1 ? decay_.data[h] : decay_.data[h * key_dim() + n]; }
  Tensor decay_;
};

}  // namespace ess
