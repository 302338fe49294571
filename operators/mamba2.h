// mamba2 (SSD), per head h: T_ij = (C_i·B_j) dt_j exp(A_h Σ_{m=j+1..i} dt_m), B/C shared by the
// heads of a group. Realization: A_t = exp(dt_t A_h)·I (scalar), B_t = dt_t B_t^{(g)}, C_t^{(g)}.
// The D skip and the gated RMSNorm are not part of T.
#pragma once
#include "libess/hdf5.h"
#include "libess/operator.h"
#include "libess/tensor.h"
#include "operators/family.h"

namespace ess {

class Mamba2Operator final : public LayerOperator {
 public:
  // dt: [B, H, L] (≥ 0); A: [H] (≤ 0); B, C: [B, G, L, N] with H divisible by G.
  Mamba2Operator(Tensor dt, Tensor A, Tensor B, Tensor C, const std::string& context);
  static std::unique_ptr<LayerOperator> read(const h5::Object& group, const OperatorReadOptions& options);
  // Generic random inputs for the conformance tests (operators/family.h).
  static std::unique_ptr<LayerOperator> example(unsigned seed);
  std::string family() const override { return "mamba2"; }
  ChannelKind channel_kind() const override { return ChannelKind::head; }
  int batch() const override { return static_cast<int>(dt_.dim(0)); }
  int channels() const override { return static_cast<int>(dt_.dim(1)); }
  int seq_len() const override { return static_cast<int>(dt_.dim(2)); }
  int state_size() const { return static_cast<int>(B_.dim(3)); }
  int tss(int) const override { return state_size(); }
  int realization_dim() const override { return state_size(); }
  std::unique_ptr<Realization> realization(int b, int h) const override;
  void materialize(int b, int c, Eigen::Ref<Matrix> T) const override { T = ess::materialize(*realization(b, c)); }
  Vector apply(int b, int h, const Vector& x) const override;
  // The SSD recurrence with a P × N state (P = columns of X): O(L·N·P).
  void multiply(int b, int h, const Eigen::Ref<const Matrix>& X, Eigen::Ref<Matrix> Y) const override;

 private:
  int group_of(int h) const { return h / (channels() / static_cast<int>(B_.dim(1))); }
  Tensor dt_, A_, B_, C_;
};

}  // namespace ess
