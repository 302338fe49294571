// s4d (LTI diagonal SSM), per channel: T_ij = Re Σ_n c_n a_n^{i−j} b_n with complex a, b, c allowed.
// Time-invariant, no batch axis. Realization: a real mode (Im a_n = 0) is one real state with
// B = 1, C = Re(c_n b_n); a complex mode is a real 2×2 rotation–scaling block
// [[Re a, −Im a], [Im a, Re a]] with B = (Re b, Im b), C = (Re c, −Im c).
#pragma once
#include "libess/hdf5.h"
#include "libess/operator.h"
#include "libess/tensor.h"
#include "operators/family.h"

namespace ess {

class S4dOperator final : public LayerOperator {
 public:
  // All [C, N]; the *_im tensors may be empty (= 0).
  S4dOperator(Tensor a_re, Tensor a_im, Tensor b_re, Tensor b_im, Tensor c_re, Tensor c_im, int seq_len,
              const std::string& context);
  static std::unique_ptr<LayerOperator> read(const h5::Object& group, const OperatorReadOptions& options);
  // Generic random inputs for the conformance tests (operators/family.h).
  static std::unique_ptr<LayerOperator> example(unsigned seed);
  std::string family() const override { return "s4d"; }
  ChannelKind channel_kind() const override { return ChannelKind::channel; }
  int batch() const override { return 1; }
  int channels() const override { return static_cast<int>(a_re_.dim(0)); }
  int seq_len() const override { return L_; }
  int modes() const { return static_cast<int>(a_re_.dim(1)); }
  // McMillan-degree bound: real modes 1, complex modes 2, a complex-conjugate pair together 2.
  int tss(int) const override { return tss_; }
  int realization_dim() const override { return state_dim_; }
  std::unique_ptr<Realization> realization(int b, int c) const override;
  void materialize(int b, int c, Eigen::Ref<Matrix> T) const override { T = ess::materialize(*realization(b, c)); }
  Vector apply(int b, int c, const Vector& x) const override;

 private:
  double im(const Tensor& t, int c, int n) const { return t.size() ? t.data[c * modes() + n] : 0.0; }
  double re(const Tensor& t, int c, int n) const { return t.data[c * modes() + n]; }
  Tensor a_re_, a_im_, b_re_, b_im_, c_re_, c_im_;
  int L_;
  int tss_ = 0, state_dim_ = 0;
};

}  // namespace ess
