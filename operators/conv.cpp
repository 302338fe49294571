#include "operators/conv.h"

#include <random>

#include "libess/error.h"
#include "operators/common.h"

namespace ess {

ConvOperator::ConvOperator(Tensor h, Tensor pre_gate, Tensor post_gate, int seq_len, const std::string& context)
    : h_(std::move(h)), pre_(std::move(pre_gate)), post_(std::move(post_gate)), L_(seq_len) {
  ops::expect_shape(context, "h", h_, {-1, -1});
  ops::expect_nonempty(context, "h", h_);
  ops::check_finite(context, "h", h_, ops::kCK);
  // The gates (when given) fix B and L; the first one present sets the shape the other must match.
  const Tensor* gate = ops::present(pre_) ? &pre_ : ops::present(post_) ? &post_ : nullptr;
  if (gate) {
    const char* name = gate == &pre_ ? "pre_gate" : "post_gate";
    ops::expect_shape(context, name, *gate, {-1, h_.dim(0), -1});
    ops::expect_nonempty(context, name, *gate);
    B_ = static_cast<int>(gate->dim(0));
    L_ = static_cast<int>(gate->dim(2));
    if (ops::present(pre_)) ops::expect_shape(context, "pre_gate", pre_, gate->shape);
    if (ops::present(post_)) ops::expect_shape(context, "post_gate", post_, gate->shape);
    if (ops::present(pre_)) ops::check_finite(context, "pre_gate", pre_, ops::kBCL);
    if (ops::present(post_)) ops::check_finite(context, "post_gate", post_, ops::kBCL);
  }
  if (L_ < 2)
    throw InputError({context + ": sequence length unknown or < 2: an ungated conv layer has no time axis of its own; "
                                "give the layer attribute 'seq_len' or a default (",
                      Option{"default_seq_len"}, ")"});
}

std::unique_ptr<LayerOperator> ConvOperator::read(const h5::Object& group, const OperatorReadOptions& options) {
  const int L = ops::read_int_attr(group, "seq_len", options.default_seq_len, 2, ops::kMaxSeqLen);
  return std::make_unique<ConvOperator>(ops::read_tensor(group, "h"), ops::read_optional(group, "pre_gate"),
                                        ops::read_optional(group, "post_gate"), L, ops::context_of(group));
}

std::unique_ptr<Realization> ConvOperator::realization(int b, int c) const {
  const int K = filter_length();
  Matrix B = Matrix::Zero(K, L_), C(K, L_);
  const Vector taps = h_.matrix({}).row(c).transpose();
  for (int t = 0; t < L_; ++t) {
    B(0, t) = pre(b, c, t);
    C.col(t) = post(b, c, t) * taps;
  }
  return std::make_unique<ShiftRealization>(std::move(B), std::move(C));
}

void ConvOperator::materialize(int b, int c, Eigen::Ref<Matrix> T) const {
  const int K = filter_length();
  auto h = h_.matrix({});
  T.setZero();
  for (int j = 0; j < L_; ++j) {
    const double pj = pre(b, c, j);
    for (int i = j; i < std::min(L_, j + K); ++i) T(i, j) = post(b, c, i) * h(c, i - j) * pj;
  }
}

Vector ConvOperator::apply(int b, int c, const Vector& x) const {
  // Causal convolution of the pre-gated input, then the post gate.
  const int K = filter_length();
  auto h = h_.matrix({});
  Vector y(L_);
  for (int i = 0; i < L_; ++i) {
    double s = 0;
    for (int k = 0; k < K && k <= i; ++k) s += h(c, k) * pre(b, c, i - k) * x(i - k);
    y(i) = post(b, c, i) * s;
  }
  return y;
}

std::unique_ptr<LayerOperator> ConvOperator::example(unsigned seed) {
  std::mt19937 rng(seed);
  return std::make_unique<ConvOperator>(ops::random_normal(rng, {3, 5}), ops::random_normal(rng, {2, 3, 16}),
                                        ops::random_normal(rng, {2, 3, 16}), 0, "example");
}

ESS_REGISTER_FAMILY(conv, "causal convolution per channel, short or long, optional pre/post gates (Hyena, H3); state K",
                    ConvOperator::read, ConvOperator::example);

}  // namespace ess
