#include "operators/linear_attention.h"

#include <random>

#include <cmath>

#include "libess/error.h"
#include "operators/common.h"

namespace ess {

LinearAttentionOperator::LinearAttentionOperator(Tensor q, Tensor k, bool normalize, const std::string& context)
    : HeadStateOperator(std::move(q), std::move(k), context), normalize_(normalize) {
  if (!normalize_) return;
  for (int b = 0; b < batch(); ++b)
    for (int h = 0; h < channels(); ++h) {
      Vector z = normalizers(b, h);
      for (int t = 0; t < seq_len(); ++t)
        if (!(std::abs(z(t)) > 1e-300))
          throw InputError(context + ": row normaliser Σ_{m≤i} q_i·k_m is zero at batch " + std::to_string(b) +
                           ", head " + std::to_string(h) + ", position " + std::to_string(t) +
                           " (normalize=1 needs positive feature maps)");
    }
}

std::unique_ptr<LayerOperator> LinearAttentionOperator::read(const h5::Object& group, const OperatorReadOptions&) {
  bool normalize = group.has_attr("normalize") && group.attr_int("normalize") != 0;
  return std::make_unique<LinearAttentionOperator>(ops::read_tensor(group, "q"), ops::read_tensor(group, "k"),
                                                   normalize, ops::context_of(group));
}

Vector LinearAttentionOperator::normalizers(int b, int h) const {
  const int L = seq_len();
  Vector z = Vector::Ones(L);
  if (!normalize_) return z;
  auto Q = q_.matrix({b, h});
  auto K = k_.matrix({b, h});
  Eigen::RowVectorXd ksum = Eigen::RowVectorXd::Zero(key_dim());
  for (int t = 0; t < L; ++t) {
    ksum += K.row(t);
    z(t) = Q.row(t).dot(ksum);
  }
  return z;
}

std::unique_ptr<Realization> LinearAttentionOperator::realization(int b, int h) const {
  Matrix C = q_columns(b, h);
  const Vector z = normalizers(b, h);
  for (int t = 0; t < seq_len(); ++t) C.col(t) /= z(t);
  return std::make_unique<ScalarRealization>(Vector::Ones(1), k_columns(b, h), C);
}

Vector LinearAttentionOperator::apply(int b, int h, const Vector& x) const {
  // y_i = Σ_{j≤i} (q_i·k_j) x_j / z_i, straight from the definition.
  const int L = seq_len();
  auto Q = q_.matrix({b, h});
  auto K = k_.matrix({b, h});
  Vector y(L);
  for (int i = 0; i < L; ++i) {
    double num = 0, den = 0;
    for (int j = 0; j <= i; ++j) {
      const double a = Q.row(i).dot(K.row(j));
      num += a * x(j);
      den += a;
    }
    y(i) = normalize_ ? num / den : num;
  }
  return y;
}

std::unique_ptr<LayerOperator> LinearAttentionOperator::example(unsigned seed) {
  std::mt19937 rng(seed);
  return std::make_unique<LinearAttentionOperator>(ops::random_uniform(rng, {2, 2, 16, 3}, 0.1, 1),
                                                   ops::random_uniform(rng, {2, 2, 16, 3}, 0.1, 1), true, "example");
}

ESS_REGISTER_FAMILY(linear_attention, "φ(q_i)·φ(k_j) per head, optionally row-normalized; state d_k",
                    LinearAttentionOperator::read, LinearAttentionOperator::example);

}  // namespace ess
