#include "operators/dense.h"

#include <random>

#include "libess/error.h"
#include "operators/common.h"

namespace ess {

DenseOperator::DenseOperator(Tensor T, const std::string& context) : T_(std::move(T)) {
  ops::expect_shape(context, "T", T_, {-1, -1, -1, -1});
  if (T_.dim(2) != T_.dim(3))
    throw InputError(context + ": dataset 'T' has shape " + T_.shape_string() + "; the last two axes must be L × L");
  ops::expect_nonempty(context, "T", T_);
  ops::check_finite(context, "T", T_, ops::kBCLL);
  const std::int64_t L = T_.dim(2);
  for (std::int64_t b = 0; b < T_.dim(0); ++b)
    for (std::int64_t c = 0; c < T_.dim(1); ++c) {
      auto M = T_.matrix({b, c});
      for (std::int64_t i = 0; i < L; ++i)
        for (std::int64_t j = i + 1; j < L; ++j)
          if (M(i, j) != 0.0)
            throw InputError(context + ": dense T is not lower-triangular (causal): batch " + std::to_string(b) +
                             ", channel " + std::to_string(c) + ", (row " + std::to_string(i) + ", column " +
                             std::to_string(j) + ") = " + std::to_string(M(i, j)) +
                             " lies above the diagonal (output " + std::to_string(i) + " would see future input " +
                             std::to_string(j) + ")");
    }
}

std::unique_ptr<LayerOperator> DenseOperator::read(const h5::Object& group, const OperatorReadOptions&) {
  return std::make_unique<DenseOperator>(ops::read_tensor(group, "T"), ops::context_of(group));
}

void DenseOperator::materialize(int b, int c, Eigen::Ref<Matrix> T) const { T = T_.matrix({b, c}); }

void DenseOperator::multiply(int b, int c, const Eigen::Ref<const Matrix>& X, Eigen::Ref<Matrix> Y) const {
  Y.noalias() = T_.matrix({b, c}).triangularView<Eigen::Lower>() * X;
}

Vector DenseOperator::apply(int b, int c, const Vector& x) const {
  auto M = T_.matrix({b, c});
  const int L = seq_len();
  Vector y = Vector::Zero(L);
  for (int i = 0; i < L; ++i)
    for (int j = 0; j <= i; ++j) y(i) += M(i, j) * x(j);
  return y;
}

std::unique_ptr<LayerOperator> DenseOperator::example(unsigned seed) {
  std::mt19937 rng(seed);
  Tensor T = ops::random_normal(rng, {2, 2, 16, 16});
  for (std::int64_t m = 0; m < 2 * 2; ++m)
    for (std::int64_t i = 0; i < 16; ++i)
      for (std::int64_t j = i + 1; j < 16; ++j) T.data[(m * 16 + i) * 16 + j] = 0;  // causal
  return std::make_unique<DenseOperator>(std::move(T), "example");
}

ESS_REGISTER_FAMILY(dense, "a given causal T per batch element and channel (no realization)", DenseOperator::read,
                    DenseOperator::example);

}  // namespace ess
