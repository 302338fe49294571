#include "operators/retention.h"

#include <random>

#include <cmath>

#include "libess/error.h"
#include "operators/common.h"

namespace ess {

RetentionOperator::RetentionOperator(Tensor q, Tensor k, Tensor decay, const std::string& context)
    : HeadStateOperator(std::move(q), std::move(k), context), decay_(std::move(decay)) {
  if (decay_.rank() == 1)
    ops::expect_shape(context, "decay", decay_, {q_.dim(1)});
  else
    ops::expect_shape(context, "decay", decay_, {q_.dim(1), q_.dim(3)});
  ops::check_finite(context, "decay", decay_, decay_.rank() == 1 ? ops::Axes{"head"} : ops::Axes{"head", "feature"});
}

std::unique_ptr<LayerOperator> RetentionOperator::read(const h5::Object& group, const OperatorReadOptions&) {
  return std::make_unique<RetentionOperator>(ops::read_tensor(group, "q"), ops::read_tensor(group, "k"),
                                             ops::read_tensor(group, "decay"), ops::context_of(group));
}

std::unique_ptr<Realization> RetentionOperator::realization(int b, int h) const {
  Matrix a(key_dim(), 1);
  for (int n = 0; n < key_dim(); ++n) a(n, 0) = gamma(h, n);
  return std::make_unique<DiagonalRealization>(a, k_columns(b, h), q_columns(b, h));
}

Vector RetentionOperator::apply(int b, int h, const Vector& x) const {
  const int L = seq_len(), d = key_dim();
  auto Q = q_.matrix({b, h});
  auto K = k_.matrix({b, h});
  Vector y = Vector::Zero(L);
  for (int i = 0; i < L; ++i)
    for (int j = 0; j <= i; ++j) {
      double t = 0;
      for (int n = 0; n < d; ++n) t += Q(i, n) * K(j, n) * std::pow(gamma(h, n), i - j);
      y(i) += t * x(j);
    }
  return y;
}

std::unique_ptr<LayerOperator> RetentionOperator::example(unsigned seed) {
  std::mt19937 rng(seed);
  return std::make_unique<RetentionOperator>(ops::random_normal(rng, {2, 2, 16, 3}),
                                             ops::random_normal(rng, {2, 2, 16, 3}),
                                             ops::random_uniform(rng, {2, 3}, 0.5, 0.99), "example");
}

ESS_REGISTER_FAMILY(retention, "q_i·k_j·γ^(i−j) per head (RetNet), decay per head or per key dim; state d_k",
                    RetentionOperator::read, RetentionOperator::example);

}  // namespace ess
