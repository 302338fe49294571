#include "operators/delta_net.h"

#include <random>

#include <cmath>

#include "libess/error.h"
#include "operators/common.h"

namespace ess {

DeltaNetOperator::DeltaNetOperator(Tensor q, Tensor k, Tensor beta, Tensor log_gate, const std::string& context)
    : HeadStateOperator(std::move(q), std::move(k), context), beta_(std::move(beta)), gate_(std::move(log_gate)) {
  ops::expect_shape(context, "beta", beta_, {q_.dim(0), q_.dim(1), q_.dim(2)});
  ops::check_finite(context, "beta", beta_, ops::kBHL);
  if (ops::present(gate_)) {
    ops::expect_shape(context, "log_gate", gate_, {q_.dim(0), q_.dim(1), q_.dim(2)});
    ops::check_finite(context, "log_gate", gate_, ops::kBHL);
    ops::check_at_most(context, "log_gate", gate_, 0.0, "a log decay gate", ops::kBHL);
  }
}

std::unique_ptr<LayerOperator> DeltaNetOperator::read(const h5::Object& group, const OperatorReadOptions&) {
  return std::make_unique<DeltaNetOperator>(ops::read_tensor(group, "q"), ops::read_tensor(group, "k"),
                                            ops::read_tensor(group, "beta"), ops::read_optional(group, "log_gate"),
                                            ops::context_of(group));
}

std::unique_ptr<Realization> DeltaNetOperator::realization(int b, int h) const {
  const int L = seq_len();
  Vector s(L);
  const Vector beta = beta_.vector({b, h});
  for (int t = 0; t < L; ++t) s(t) = gate(b, h, t);
  Matrix K = k_columns(b, h);
  Matrix B = K * beta.asDiagonal();
  return std::make_unique<DeltaRealization>(s, beta, K, B, q_columns(b, h));
}

Vector DeltaNetOperator::apply(int b, int h, const Vector& x) const {
  // The delta rule on a d-vector state: S_t = e^{g_t}(S_{t−1} − β_t k_t (k_tᵀ S_{t−1})) + β_t k_t x_t.
  const int L = seq_len(), d = key_dim();
  auto Q = q_.matrix({b, h});
  auto K = k_.matrix({b, h});
  const auto beta = beta_.vector({b, h});
  std::vector<double> S(d, 0.0);
  Vector y(L);
  for (int t = 0; t < L; ++t) {
    double ks = 0;
    for (int n = 0; n < d; ++n) ks += K(t, n) * S[n];
    const double g = gate(b, h, t);
    for (int n = 0; n < d; ++n) S[n] = g * (S[n] - beta(t) * K(t, n) * ks) + beta(t) * K(t, n) * x(t);
    double out = 0;
    for (int n = 0; n < d; ++n) out += Q(t, n) * S[n];
    y(t) = out;
  }
  return y;
}

std::unique_ptr<LayerOperator> DeltaNetOperator::example(unsigned seed) {
  std::mt19937 rng(seed);
  return std::make_unique<DeltaNetOperator>(
      ops::random_normal(rng, {2, 2, 16, 3}), ops::random_normal(rng, {2, 2, 16, 3}, 0.5),
      ops::random_uniform(rng, {2, 2, 16}, 0, 1), ops::random_uniform(rng, {2, 2, 16}, -0.3, 0), "example");
}

ESS_REGISTER_FAMILY(delta_net, "(gated) DeltaNet: rank-one-update transitions; state d_k", DeltaNetOperator::read,
                    DeltaNetOperator::example);

}  // namespace ess
