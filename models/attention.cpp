// Building blocks of the attention architectures (models/models.h): LayerNorm, activations by
// their Hugging Face names, rotary embeddings (full or partial), and multi-head softmax attention
// computed through the captured operator.
#include <cmath>

#include "libess/block_products.h"
#include "libess/error.h"
#include "libess/parallel.h"
#include "models/models.h"
#include "operators/softmax_attention.h"

namespace ess::models {

Matrix matmul_nt(const Eigen::Ref<const Matrix>& X, const Eigen::Ref<const RowMatrix>& W) {
  Matrix Y(X.rows(), W.rows());
  blas_gemm_xw(X, W, true, Y);
  return Y;
}

Matrix matmul_nn(const Eigen::Ref<const Matrix>& X, const Eigen::Ref<const RowMatrix>& W) {
  Matrix Y(X.rows(), W.cols());
  blas_gemm_xw(X, W, false, Y);
  return Y;
}

Matrix linear(const Matrix& X, const LoadedWeights& w, const std::string& weight, const std::string& bias) {
  Matrix Y = matmul_nt(X, w.matrix(weight));
  if (!bias.empty() && w.has(bias)) Y.rowwise() += w.vector(bias).transpose();
  return Y;
}

Matrix layer_norm(const Matrix& X, const Eigen::Ref<const Vector>& w, const Eigen::Ref<const Vector>& b, double eps) {
  Matrix Y(X.rows(), X.cols());
  const double n = static_cast<double>(X.cols());
  for (Index r = 0; r < X.rows(); ++r) {
    const double mean = X.row(r).sum() / n;
    const auto centred = X.row(r).array() - mean;
    const double var = centred.square().sum() / n;
    Y.row(r) = (centred / std::sqrt(var + eps)).matrix().cwiseProduct(w.transpose());
    if (b.size()) Y.row(r) += b.transpose();
  }
  return Y;
}

Activation read_activation(const Config& c, const std::string& field, const std::string& fallback) {
  std::string name = fallback;
  if (c.has(field)) {
    if (!c.json()[field].is_string()) throw InputError(c.path() + ": field '" + field + "' must be a string");
    name = c.json()[field].get<std::string>();
  }
  if (name == "silu" || name == "swish") return Activation::silu;
  if (name == "gelu") return Activation::gelu;
  if (name == "gelu_new" || name == "gelu_pytorch_tanh") return Activation::gelu_tanh;
  if (name == "relu") return Activation::relu;
  throw InputError(c.path() + ": " + field + " '" + name +
                   "' is not supported (silu, swish, gelu, gelu_new, gelu_pytorch_tanh, relu)");
}

Matrix activate(const Matrix& X, Activation a) {
  switch (a) {
    case Activation::silu:
      return silu(X);
    case Activation::gelu:
      return X.unaryExpr([](double v) { return 0.5 * v * (1.0 + std::erf(v / std::sqrt(2.0))); });
    case Activation::gelu_tanh:
      return X.unaryExpr(
          [](double v) { return 0.5 * v * (1.0 + std::tanh(std::sqrt(2.0 / M_PI) * (v + 0.044715 * v * v * v))); });
    case Activation::relu:
      return X.cwiseMax(0.0);
  }
  return X;
}

Rotary::Rotary(const Vector& inv_freq, int seq_len) : cos_(seq_len, inv_freq.size()), sin_(seq_len, inv_freq.size()) {
  for (int t = 0; t < seq_len; ++t)
    for (Index k = 0; k < inv_freq.size(); ++k) {
      cos_(t, k) = std::cos(t * inv_freq(k));
      sin_(t, k) = std::sin(t * inv_freq(k));
    }
}

void Rotary::apply(Eigen::Ref<Matrix> X) const {
  const Index half = cos_.cols();
  for (Index t = 0; t < X.rows(); ++t)
    for (Index k = 0; k < half; ++k) {
      const double a = X(t, k), b = X(t, k + half);
      X(t, k) = a * cos_(t, k) - b * sin_(t, k);
      X(t, k + half) = b * cos_(t, k) + a * sin_(t, k);
    }
}

Vector rope_inv_freq(double theta, int dims) {
  Vector inv(dims / 2);
  for (int k = 0; k < dims / 2; ++k) inv(k) = 1.0 / std::pow(theta, 2.0 * k / dims);
  return inv;
}

Vector read_partial_rotary(const Config& c, int head_dim, const std::vector<std::string>& fraction_keys,
                           const std::vector<std::string>& theta_keys, double default_fraction) {
  nlohmann::json rp = nlohmann::json::object();
  if (c.has("rope_parameters")) {
    rp = c.json()["rope_parameters"];
    if (!rp.is_object()) throw InputError(c.path() + ": rope_parameters must be an object");
  }
  const Config rpc(rp, c.path() + " rope_parameters");
  if (c.has("rope_scaling") || rp.value("rope_type", std::string("default")) != "default")
    throw InputError(c.path() + ": rope scaling is not supported for this architecture (default rotary only)");
  auto first = [&](const std::vector<std::string>& keys, const char* nested, double fallback) {
    for (const auto& k : keys)
      if (c.has(k)) return c.number(k);
    return rpc.number(nested, fallback);
  };
  const double fraction = first(fraction_keys, "partial_rotary_factor", default_fraction);
  const double theta = first(theta_keys, "rope_theta", 10000.0);
  if (!(fraction > 0 && fraction <= 1)) throw InputError(c.path() + ": the rotary fraction must lie in (0, 1]");
  const int dims = static_cast<int>(head_dim * fraction);
  if (dims % 2)
    throw InputError(c.path() + ": " + std::to_string(dims) + " rotary features (head_dim " + std::to_string(head_dim) +
                     " × " + std::to_string(fraction) + ") is odd");
  return rope_inv_freq(theta, dims);
}

std::unique_ptr<LayerOperator> softmax_attention(std::vector<Matrix> Q, std::vector<Matrix> K,
                                                 const std::vector<Matrix>& V, const AttentionSpec& a,
                                                 const std::string& context, std::vector<Matrix>& O) {
  const int B = static_cast<int>(Q.size()), L = B ? static_cast<int>(Q[0].rows()) : 0;
  const int H = a.heads, hd = a.head_dim, rep = H / a.kv_heads;
  const int window = a.window > 0 && a.window < L ? a.window : 0;
  const double scale = a.scale > 0 ? a.scale : 1.0 / std::sqrt(static_cast<double>(hd));
  Tensor q_t({B, H, L, hd}), k_t({B, H, L, hd});
  for (int b = 0; b < B; ++b) {
    for (int h = 0; h < H; ++h) {
      put_head(q_t, b, h, Q[b].middleCols(h * hd, hd));
      put_head(k_t, b, h, K[b].middleCols(h / rep * hd, hd));
    }
    Q[b] = Matrix();
    K[b] = Matrix();
  }
  auto op = std::make_unique<SoftmaxAttentionOperator>(std::move(q_t), std::move(k_t), std::vector<std::uint8_t>{},
                                                       scale, window, context, a.softcap);
  O.assign(B, Matrix());
  for (int b = 0; b < B; ++b) {
    O[b].resize(L, H * hd);
    // Heads in parallel (libess/parallel.h): each writes its own columns, the same bits on any thread.
    parallel_for(H, [&](int h) { op->multiply(b, h, V[b].middleCols(h / rep * hd, hd), O[b].middleCols(h * hd, hd)); });
  }
  return op;
}

}  // namespace ess::models
