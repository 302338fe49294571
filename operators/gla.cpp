#include "operators/gla.h"

#include <random>

#include <cmath>

#include "libess/error.h"
#include "operators/common.h"

namespace ess {

GlaOperator::GlaOperator(Tensor q, Tensor k, Tensor log_decay, const std::string& context)
    : HeadStateOperator(std::move(q), std::move(k), context), g_(std::move(log_decay)) {
  ops::expect_shape(context, "log_decay", g_, q_.shape);
  ops::check_finite(context, "log_decay", g_, ops::kBHLD);
  ops::check_at_most(context, "log_decay", g_, 0.0, "a log decay; exp(g) > 1 would grow the state", ops::kBHLD);
}

std::unique_ptr<LayerOperator> GlaOperator::read(const h5::Object& group, const OperatorReadOptions&) {
  return std::make_unique<GlaOperator>(ops::read_tensor(group, "q"), ops::read_tensor(group, "k"),
                                       ops::read_tensor(group, "log_decay"), ops::context_of(group));
}

std::unique_ptr<Realization> GlaOperator::realization(int b, int h) const {
  Matrix a = g_.matrix({b, h}).transpose().array().exp();
  return std::make_unique<DiagonalRealization>(a, k_columns(b, h), q_columns(b, h));
}

void GlaOperator::multiply(int b, int h, const Eigen::Ref<const Matrix>& X, Eigen::Ref<Matrix> Y) const {
  const int L = seq_len(), d = key_dim();
  auto Q = q_.matrix({b, h});
  auto K = k_.matrix({b, h});
  auto G = g_.matrix({b, h});
  Matrix S = Matrix::Zero(d, X.cols());
  for (int t = 0; t < L; ++t) {
    for (int n = 0; n < d; ++n) S.row(n) *= std::exp(G(t, n));
    S.noalias() += K.row(t).transpose() * X.row(t);
    Y.row(t) = Q.row(t) * S;
  }
}

Vector GlaOperator::apply(int b, int h, const Vector& x) const {
  // For each i, walk j downward accumulating the decay exponent Σ_{m=j+1..i} g_m.
  const int L = seq_len(), d = key_dim();
  auto Q = q_.matrix({b, h});
  auto K = k_.matrix({b, h});
  auto G = g_.matrix({b, h});
  Vector y = Vector::Zero(L), expo(d);
  for (int i = 0; i < L; ++i) {
    expo.setZero();
    for (int j = i; j >= 0; --j) {
      if (j < i) expo += G.row(j + 1).transpose();
      double t = 0;
      for (int n = 0; n < d; ++n) t += Q(i, n) * K(j, n) * std::exp(expo(n));
      y(i) += t * x(j);
    }
  }
  return y;
}

std::unique_ptr<LayerOperator> GlaOperator::example(unsigned seed) {
  std::mt19937 rng(seed);
  return std::make_unique<GlaOperator>(ops::random_normal(rng, {2, 2, 16, 3}), ops::random_normal(rng, {2, 2, 16, 3}),
                                       ops::random_uniform(rng, {2, 2, 16, 3}, -0.5, 0), "example");
}

ESS_REGISTER_FAMILY(gla, "gated linear attention: per-key-dim data-dependent decays; state d_k", GlaOperator::read,
                    GlaOperator::example);

}  // namespace ess
