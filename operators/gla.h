// gla (gated linear attention): T_ij = Σ_n q_i[n] k_j[n] exp(Σ_{m=j+1..i} g_m[n]), g = log_decay ≤ 0.
// Realization: A_t = diag(exp(g_t)), B_t = k_t, C_t = q_t.
#pragma once
#include "libess/hdf5.h"
#include "operators/family.h"
#include "operators/head_state.h"

namespace ess {

class GlaOperator final : public HeadStateOperator {
 public:
  GlaOperator(Tensor q, Tensor k, Tensor log_decay, const std::string& context);
  static std::unique_ptr<LayerOperator> read(const h5::Object& group, const OperatorReadOptions& options);
  // Generic random inputs for the conformance tests (operators/family.h).
  static std::unique_ptr<LayerOperator> example(unsigned seed);
  std::string family() const override { return "gla"; }
  std::unique_ptr<Realization> realization(int b, int c) const override;
  Vector apply(int b, int c, const Vector& x) const override;
  // S_t = diag(exp(g_t)) S_{t−1} + k_t x_tᵀ (S: d × P), y_t = S_tᵀ q_t: O(L·d·P).
  void multiply(int b, int c, const Eigen::Ref<const Matrix>& X, Eigen::Ref<Matrix> Y) const override;

 private:
  Tensor g_;
};

}  // namespace ess
