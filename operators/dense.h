// dense: a given causal T per batch element and channel.
#pragma once
#include "libess/hdf5.h"
#include "libess/operator.h"
#include "libess/tensor.h"
#include "operators/family.h"

namespace ess {

class DenseOperator final : public LayerOperator {
 public:
  // T: [B, C, L, L], lower-triangular (checked).
  DenseOperator(Tensor T, const std::string& context);
  static std::unique_ptr<LayerOperator> read(const h5::Object& group, const OperatorReadOptions& options);
  // Generic random inputs for the conformance tests (operators/family.h).
  static std::unique_ptr<LayerOperator> example(unsigned seed);

  std::string family() const override { return "dense"; }
  ChannelKind channel_kind() const override { return ChannelKind::channel; }
  int batch() const override { return static_cast<int>(T_.dim(0)); }
  int channels() const override { return static_cast<int>(T_.dim(1)); }
  int seq_len() const override { return static_cast<int>(T_.dim(2)); }
  int tss(int i) const override { return i; }
  void materialize(int b, int c, Eigen::Ref<Matrix> T) const override;
  Vector apply(int b, int c, const Vector& x) const override;
  void multiply(int b, int c, const Eigen::Ref<const Matrix>& X, Eigen::Ref<Matrix> Y) const override;

 private:
  Tensor T_;
};

}  // namespace ess
