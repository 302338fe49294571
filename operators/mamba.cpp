#include "operators/mamba.h"

#include <random>

#include <cmath>

#include "libess/error.h"
#include "operators/common.h"

namespace ess {

MambaOperator::MambaOperator(Tensor dt, Tensor A, Tensor B, Tensor C, const std::string& context)
    : dt_(std::move(dt)), A_(std::move(A)), B_(std::move(B)), C_(std::move(C)) {
  ops::expect_shape(context, "dt", dt_, {-1, -1, -1});
  ops::expect_shape(context, "A", A_, {dt_.dim(1), -1});
  ops::expect_shape(context, "B", B_, {dt_.dim(0), dt_.dim(2), A_.dim(1)});
  ops::expect_shape(context, "C", C_, B_.shape);
  ops::expect_nonempty(context, "dt", dt_);
  ops::expect_nonempty(context, "A", A_);
  ops::check_finite(context, "dt", dt_, ops::kBCL);
  ops::check_finite(context, "A", A_, {"channel", "state"});
  ops::check_finite(context, "B", B_, ops::kBLN);
  ops::check_finite(context, "C", C_, ops::kBLN);
  ops::check_at_least(context, "dt", dt_, 0.0, "a step size, after softplus", ops::kBCL);
  ops::check_at_most(context, "A", A_, 0.0, "A = −exp(A_log)", {"channel", "state"});
}

std::unique_ptr<LayerOperator> MambaOperator::read(const h5::Object& group, const OperatorReadOptions&) {
  return std::make_unique<MambaOperator>(ops::read_tensor(group, "dt"), ops::read_tensor(group, "A"),
                                         ops::read_tensor(group, "B"), ops::read_tensor(group, "C"),
                                         ops::context_of(group));
}

std::unique_ptr<Realization> MambaOperator::realization(int b, int c) const {
  const int L = seq_len(), N = state_size();
  const auto dt = dt_.vector({b, c});
  const auto A = A_.matrix({}).row(c);
  Matrix a(N, L), Bm = B_.matrix({b}).transpose(), Cm = C_.matrix({b}).transpose();
  for (int t = 0; t < L; ++t) {
    a.col(t) = (dt(t) * A.transpose()).array().exp();
    Bm.col(t) *= dt(t);
  }
  return std::make_unique<DiagonalRealization>(std::move(a), std::move(Bm), std::move(Cm));
}

void MambaOperator::multiply(int b, int c, const Eigen::Ref<const Matrix>& X, Eigen::Ref<Matrix> Y) const {
  // h ← exp(dt_t A_c) ⊙ h + dt_t B_t x_t, y_t = C_t·h, one state column per column of X.
  const int L = seq_len(), N = state_size();
  const Index P = X.cols();
  const auto dt = dt_.vector({b, c});
  auto A = A_.matrix({});
  auto B = B_.matrix({b});
  auto C = C_.matrix({b});
  Vector decay(N);
  Matrix h = Matrix::Zero(N, P);
  for (int t = 0; t < L; ++t) {
    for (int n = 0; n < N; ++n) decay(n) = std::exp(dt(t) * A(c, n));
    for (Index p = 0; p < P; ++p) {
      double out = 0;
      for (int n = 0; n < N; ++n) {
        h(n, p) = decay(n) * h(n, p) + dt(t) * B(t, n) * X(t, p);
        out += C(t, n) * h(n, p);
      }
      Y(t, p) = out;
    }
  }
}

Vector MambaOperator::apply(int b, int c, const Vector& x) const {
  // Selective scan: h ← exp(dt_t A) ⊙ h + dt_t B_t x_t, y_t = C_t·h.
  const int L = seq_len(), N = state_size();
  const auto dt = dt_.vector({b, c});
  auto A = A_.matrix({});
  auto B = B_.matrix({b});
  auto C = C_.matrix({b});
  std::vector<double> h(N, 0.0);
  Vector y(L);
  for (int t = 0; t < L; ++t) {
    double out = 0;
    for (int n = 0; n < N; ++n) {
      h[n] = std::exp(dt(t) * A(c, n)) * h[n] + dt(t) * B(t, n) * x(t);
      out += C(t, n) * h[n];
    }
    y(t) = out;
  }
  return y;
}

std::unique_ptr<LayerOperator> MambaOperator::example(unsigned seed) {
  std::mt19937 rng(seed);
  return std::make_unique<MambaOperator>(
      ops::random_uniform(rng, {2, 3, 16}, 0.01, 0.5), ops::random_uniform(rng, {3, 4}, -2, -0.1),
      ops::random_normal(rng, {2, 16, 4}), ops::random_normal(rng, {2, 16, 4}), "example");
}

ESS_REGISTER_FAMILY(mamba, "Mamba (S6) selective SSM per channel: diagonal input-dependent decays; state N",
                    MambaOperator::read, MambaOperator::example);

}  // namespace ess
