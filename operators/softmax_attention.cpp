#include "operators/softmax_attention.h"

#include <random>

#include <cmath>
#include <limits>

#include "libess/error.h"
#include "operators/common.h"

namespace ess {

SoftmaxAttentionOperator::SoftmaxAttentionOperator(Tensor q, Tensor k, std::vector<std::uint8_t> mask, double scale,
                                                   int window, const std::string& context, double softcap)
    : q_(std::move(q)), k_(std::move(k)), mask_(std::move(mask)), scale_(scale), window_(window), softcap_(softcap) {
  ops::expect_shape(context, "q", q_, {-1, -1, -1, -1});
  ops::expect_shape(context, "k", k_, q_.shape);
  ops::expect_nonempty(context, "q", q_);
  ops::check_finite(context, "q", q_, ops::kBHLD);
  ops::check_finite(context, "k", k_, ops::kBHLD);
  const int L = seq_len();
  if (scale_ <= 0) scale_ = 1.0 / std::sqrt(static_cast<double>(q_.dim(3)));
  if (!std::isfinite(scale_)) throw InputError(context + ": attribute 'scale' is not finite");
  if (window_ < 0) throw InputError(context + ": attribute 'window' must be ≥ 0 (0 = no window)");
  if (!(softcap_ >= 0) || !std::isfinite(softcap_))
    throw InputError(context + ": attribute 'softcap' must be a finite number ≥ 0 (0 = no soft-capping)");
  if (!mask_.empty()) {
    if (mask_.size() != static_cast<size_t>(L) * L)
      throw InputError(context + ": dataset 'mask' must be [L, L] = [" + std::to_string(L) + ", " + std::to_string(L) +
                       "]");
    for (int i = 0; i < L; ++i)
      for (int j = i + 1; j < L; ++j)
        if (mask_[static_cast<size_t>(i) * L + j])
          throw InputError(context + ": mask is not causal: mask[" + std::to_string(i) + ", " + std::to_string(j) +
                           "] = 1 lets position " + std::to_string(i) + " attend to the future");
  }
  // Every row needs at least one allowed position; last[j] = last row attending to j.
  std::vector<int> last(L, -1);
  for (int i = 0; i < L; ++i) {
    bool any = false;
    for (int j = 0; j <= i; ++j)
      if (allowed(i, j)) {
        any = true;
        last[j] = i;
      }
    if (!any)
      throw InputError(context + ": row " + std::to_string(i) +
                       " of the attention mask allows no position (softmax undefined)");
  }
  tss_.assign(L, 0);
  for (int i = 1; i < L; ++i)
    for (int j = 0; j < i; ++j) tss_[i] += last[j] >= i;
}

std::unique_ptr<LayerOperator> SoftmaxAttentionOperator::read(const h5::Object& group, const OperatorReadOptions&) {
  const std::string ctx = ops::context_of(group);
  Tensor q = ops::read_tensor(group, "q"), k = ops::read_tensor(group, "k");
  std::vector<std::uint8_t> mask;
  if (group.has("mask")) {
    if (group.dtype("mask") != h5::DType::uint8)
      throw InputError(ctx + ": dataset 'mask' must be uint8 (1 = may attend); from numpy write mask.astype('u1')");
    std::vector<std::int64_t> shape;
    mask = group.read_uint8("mask", &shape);
    // A malformed q is reported by the constructor; here only the mask's own shape.
    const std::int64_t L = q.rank() == 4 ? q.dim(2) : -1;
    if (L >= 0 && shape != std::vector<std::int64_t>{L, L})
      throw InputError(ctx + ": dataset 'mask' has shape " + shape_string(shape) + ", expected [" + std::to_string(L) +
                       ", " + std::to_string(L) + "]");
  }
  double scale = 0.0;  // 0 = the default 1/sqrt(d)
  if (group.has_attr("scale")) {
    scale = group.attr_double("scale");
    if (!(scale > 0) || !std::isfinite(scale))
      throw InputError(ctx + ": attribute 'scale' must be a finite number > 0, found " + std::to_string(scale));
  }
  const int window = ops::read_int_attr(group, "window", 0, 0, std::numeric_limits<int>::max());
  double softcap = 0.0;  // 0 = none
  if (group.has_attr("softcap")) {
    softcap = group.attr_double("softcap");
    if (!(softcap >= 0) || !std::isfinite(softcap))
      throw InputError(ctx + ": attribute 'softcap' must be a finite number ≥ 0 (0 = none), found " +
                       std::to_string(softcap));
  }
  return std::make_unique<SoftmaxAttentionOperator>(std::move(q), std::move(k), std::move(mask), scale, window, ctx,
                                                    softcap);
}

void SoftmaxAttentionOperator::materialize(int b, int c, Eigen::Ref<Matrix> T) const {
  const int L = seq_len();
  auto Q = q_.matrix({b, c});
  auto K = k_.matrix({b, c});
  Matrix S = (Q * K.transpose()) * scale_;  // S(i, j) = q_i·k_j·scale
  if (softcap_ > 0) S = S.unaryExpr([this](double s) { return logit(s); });
  T.setZero();
  for (int i = 0; i < L; ++i) {
    double m = -std::numeric_limits<double>::infinity();
    for (int j = 0; j <= i; ++j)
      if (allowed(i, j)) m = std::max(m, S(i, j));
    double z = 0;
    for (int j = 0; j <= i; ++j)
      if (allowed(i, j)) z += (T(i, j) = std::exp(S(i, j) - m));
    for (int j = 0; j <= i; ++j) T(i, j) /= z;
  }
}

void SoftmaxAttentionOperator::multiply(int b, int c, const Eigen::Ref<const Matrix>& X, Eigen::Ref<Matrix> Y) const {
  const int L = seq_len();
  auto Q = q_.matrix({b, c});
  auto K = k_.matrix({b, c});
  Matrix P;
  for (int i0 = 0; i0 < L; i0 += kRowTile) {
    const int n = std::min(kRowTile, L - i0), i1 = i0 + n;
    const int j0 = window_ > 0 ? std::max(0, i0 - window_ + 1) : 0;            // first key any row of the tile sees
    P = Q.middleRows(i0, n) * K.middleRows(j0, i1 - j0).transpose() * scale_;  // P(r, j − j0) = q_i·k_j·scale
    if (softcap_ > 0) P = P.unaryExpr([this](double s) { return logit(s); });
    for (int r = 0; r < n; ++r) {
      const int i = i0 + r;
      double m = -std::numeric_limits<double>::infinity();
      for (int j = j0; j <= i; ++j)
        if (allowed(i, j)) m = std::max(m, P(r, j - j0));
      double z = 0;
      for (int j = j0; j < i1; ++j) {
        double& p = P(r, j - j0);
        if (j <= i && allowed(i, j))
          z += (p = std::exp(p - m));
        else
          p = 0;
      }
      P.row(r) /= z;
    }
    Y.middleRows(i0, n).noalias() = P * X.middleRows(j0, i1 - j0);
  }
}

Vector SoftmaxAttentionOperator::apply(int b, int c, const Vector& x) const {
  // Row by row from the definition: y_i = Σ_j softmax_j(s_ij) x_j over allowed j.
  const int L = seq_len(), d = static_cast<int>(q_.dim(3));
  auto Q = q_.matrix({b, c});
  auto K = k_.matrix({b, c});
  Vector y(L), s(L);
  for (int i = 0; i < L; ++i) {
    double m = -std::numeric_limits<double>::infinity();
    for (int j = 0; j <= i; ++j) {
      if (!allowed(i, j)) continue;
      double dot = 0;
      for (int n = 0; n < d; ++n) dot += Q(i, n) * K(j, n);
      s(j) = logit(dot * scale_);
      m = std::max(m, s(j));
    }
    double num = 0, den = 0;
    for (int j = 0; j <= i; ++j) {
      if (!allowed(i, j)) continue;
      const double w = std::exp(s(j) - m);
      num += w * x(j);
      den += w;
    }
    y(i) = num / den;
  }
  return y;
}

std::unique_ptr<LayerOperator> SoftmaxAttentionOperator::example(unsigned seed) {
  std::mt19937 rng(seed);
  return std::make_unique<SoftmaxAttentionOperator>(ops::random_normal(rng, {2, 2, 16, 3}),
                                                    ops::random_normal(rng, {2, 2, 16, 3}), std::vector<std::uint8_t>{},
                                                    0.0, 0, "example");
}

ESS_REGISTER_FAMILY(softmax_attention,
                    "softmax(q_i·k_j·scale) per head, causal, optional window, mask or logit soft-cap (no realization)",
                    SoftmaxAttentionOperator::read, SoftmaxAttentionOperator::example);

}  // namespace ess
