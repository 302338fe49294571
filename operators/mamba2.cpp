#include "operators/mamba2.h"

#include <random>

#include <cmath>

#include "libess/error.h"
#include "operators/common.h"

namespace ess {

Mamba2Operator::Mamba2Operator(Tensor dt, Tensor A, Tensor B, Tensor C, const std::string& context)
    : dt_(std::move(dt)), A_(std::move(A)), B_(std::move(B)), C_(std::move(C)) {
  ops::expect_shape(context, "dt", dt_, {-1, -1, -1});
  ops::expect_shape(context, "A", A_, {dt_.dim(1)});
  ops::expect_shape(context, "B", B_, {dt_.dim(0), -1, dt_.dim(2), -1});
  ops::expect_shape(context, "C", C_, B_.shape);
  const auto G = B_.dim(1);
  if (G < 1 || dt_.dim(1) % G != 0)
    throw InputError(context + ": " + std::to_string(dt_.dim(1)) + " heads cannot be split evenly over " +
                     std::to_string(G) + " groups (B, C have shape " + B_.shape_string() + ")");
  ops::expect_nonempty(context, "dt", dt_);
  ops::expect_nonempty(context, "B", B_);
  ops::check_finite(context, "dt", dt_, ops::kBHL);
  ops::check_finite(context, "A", A_, {"head"});
  ops::check_finite(context, "B", B_, ops::kBGLN);
  ops::check_finite(context, "C", C_, ops::kBGLN);
  ops::check_at_least(context, "dt", dt_, 0.0, "a step size, after softplus", ops::kBHL);
  ops::check_at_most(context, "A", A_, 0.0, "A = −exp(A_log)", {"head"});
}

std::unique_ptr<LayerOperator> Mamba2Operator::read(const h5::Object& group, const OperatorReadOptions&) {
  return std::make_unique<Mamba2Operator>(ops::read_tensor(group, "dt"), ops::read_tensor(group, "A"),
                                          ops::read_tensor(group, "B"), ops::read_tensor(group, "C"),
                                          ops::context_of(group));
}

std::unique_ptr<Realization> Mamba2Operator::realization(int b, int h) const {
  const int L = seq_len(), g = group_of(h);
  const auto dt = dt_.vector({b, h});
  Vector a(L);
  Matrix Bm = B_.matrix({b, g}).transpose(), Cm = C_.matrix({b, g}).transpose();
  for (int t = 0; t < L; ++t) {
    a(t) = std::exp(dt(t) * A_.data[h]);
    Bm.col(t) *= dt(t);
  }
  return std::make_unique<ScalarRealization>(std::move(a), std::move(Bm), std::move(Cm));
}

void Mamba2Operator::multiply(int b, int h, const Eigen::Ref<const Matrix>& X, Eigen::Ref<Matrix> Y) const {
  // S ← exp(dt_t A_h) S + dt_t x_t B_tᵀ (S: P × N), y_t = S C_t.
  const int L = seq_len(), g = group_of(h);
  const auto dt = dt_.vector({b, h});
  auto B = B_.matrix({b, g});
  auto C = C_.matrix({b, g});
  Matrix S = Matrix::Zero(X.cols(), state_size());
  for (int t = 0; t < L; ++t) {
    S *= std::exp(dt(t) * A_.data[h]);
    S.noalias() += (dt(t) * X.row(t)).transpose() * B.row(t);
    Y.row(t) = (S * C.row(t).transpose()).transpose();
  }
}

Vector Mamba2Operator::apply(int b, int h, const Vector& x) const {
  // Direct sum: y_i = Σ_{j≤i} (C_i·B_j) dt_j exp(A_h Σ_{m=j+1..i} dt_m) x_j.
  const int L = seq_len(), g = group_of(h);
  const auto dt = dt_.vector({b, h});
  auto B = B_.matrix({b, g});
  auto C = C_.matrix({b, g});
  Vector y = Vector::Zero(L);
  for (int i = 0; i < L; ++i) {
    double span = 0;  // Σ_{m=j+1..i} dt_m
    for (int j = i; j >= 0; --j) {
      if (j < i) span += dt(j + 1);
      y(i) += C.row(i).dot(B.row(j)) * dt(j) * std::exp(A_.data[h] * span) * x(j);
    }
  }
  return y;
}

std::unique_ptr<LayerOperator> Mamba2Operator::example(unsigned seed) {
  std::mt19937 rng(seed);
  return std::make_unique<Mamba2Operator>(
      ops::random_uniform(rng, {2, 4, 16}, 0.01, 0.5), ops::random_uniform(rng, {4}, -2, -0.1),
      ops::random_normal(rng, {2, 2, 16, 4}), ops::random_normal(rng, {2, 2, 16, 4}), "example");
}

ESS_REGISTER_FAMILY(mamba2, "Mamba2 (SSD) per head: scalar input-dependent decay, B and C shared by a group; state N",
                    Mamba2Operator::read, Mamba2Operator::example);

}  // namespace ess
