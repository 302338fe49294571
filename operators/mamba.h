// mamba (S6), per channel c: T_ij = Σ_n C_i[n] B_j[n] dt_j[c] exp(A[c,n] Σ_{m=j+1..i} dt_m[c]).
// Realization: A_t = diag(exp(dt_t[c] A[c,:])), B_t = dt_t[c] B_t, C_t. The D skip and the SiLU(z)
// output gate are not part of T.
#pragma once
#include "libess/hdf5.h"
#include "libess/operator.h"
#include "libess/tensor.h"
#include "operators/family.h"

namespace ess {

class MambaOperator final : public LayerOperator {
 public:
  // dt: [B, C, L] (after softplus, ≥ 0); A: [C, N] (≤ 0); B, C: [B, L, N].
  MambaOperator(Tensor dt, Tensor A, Tensor B, Tensor C, const std::string& context);
  static std::unique_ptr<LayerOperator> read(const h5::Object& group, const OperatorReadOptions& options);
  // Generic random inputs for the conformance tests (operators/family.h).
  static std::unique_ptr<LayerOperator> example(unsigned seed);
  std::string family() const override { return "mamba"; }
  ChannelKind channel_kind() const override { return ChannelKind::channel; }
  int batch() const override { return static_cast<int>(dt_.dim(0)); }
  int channels() const override { return static_cast<int>(dt_.dim(1)); }
  int seq_len() const override { return static_cast<int>(dt_.dim(2)); }
  int state_size() const { return static_cast<int>(A_.dim(1)); }
  int tss(int) const override { return state_size(); }
  int realization_dim() const override { return state_size(); }
  std::unique_ptr<Realization> realization(int b, int c) const override;
  void materialize(int b, int c, Eigen::Ref<Matrix> T) const override { T = ess::materialize(*realization(b, c)); }
  Vector apply(int b, int c, const Vector& x) const override;
  // The selective scan of every column at once: O(L·N·P).
  void multiply(int b, int c, const Eigen::Ref<const Matrix>& X, Eigen::Ref<Matrix> Y) const override;

 private:
  Tensor dt_, A_, B_, C_;
};

}  // namespace ess
