#include <cmath>

#include "libess/error.h"
#include "models/model.h"

namespace ess::models {

int Config::integer(const std::string& k) const {
  if (!has(k)) throw InputError(path_ + ": missing field '" + k + "'");
  const auto& v = j_[k];
  if (!v.is_number_integer() && !(v.is_number() && std::floor(v.get<double>()) == v.get<double>()))
    throw InputError(path_ + ": field '" + k + "' must be an integer, found " + v.dump());
  const double d = v.get<double>();
  if (d < 0 || d > 1e9) throw InputError(path_ + ": field '" + k + "' = " + v.dump() + " is out of range");
  return static_cast<int>(d);
}

double Config::number(const std::string& k) const {
  if (!has(k)) throw InputError(path_ + ": missing field '" + k + "'");
  if (!j_[k].is_number()) throw InputError(path_ + ": field '" + k + "' must be a number, found " + j_[k].dump());
  return j_[k].get<double>();
}

bool Config::boolean(const std::string& k, bool fallback) const {
  if (!has(k)) return fallback;
  if (!j_[k].is_boolean()) throw InputError(path_ + ": field '" + k + "' must be true or false");
  return j_[k].get<bool>();
}

Tensor Weights::tensor(const std::string& name, const std::vector<std::int64_t>& shape) const {
  if (!ckpt_.has(name))
    throw InputError(ckpt_.dir() + ": checkpoint has no tensor '" + name + "' (expected shape " + shape_string(shape) +
                     ")");
  const auto& info = ckpt_.info(name);
  if (info.shape != shape)
    throw InputError(info.file + ": tensor '" + name + "' has shape " + shape_string(info.shape) +
                     ", but config.json implies " + shape_string(shape));
  Tensor t = ckpt_.read(name);
  for (std::int64_t k = 0; k < t.size(); ++k)
    if (!std::isfinite(t.data[k]))
      throw InputError(info.file + ": tensor '" + name + "' has a non-finite value at flat index " + std::to_string(k));
  return t;
}

RowMatrix Weights::matrix(const std::string& name, std::int64_t rows, std::int64_t cols) const {
  Tensor t = tensor(name, {rows, cols});
  return Eigen::Map<const RowMatrix>(t.data.data(), rows, cols);
}

Vector Weights::vector(const std::string& name, std::int64_t n) const {
  Tensor t = tensor(name, {n});
  return Eigen::Map<const Vector>(t.data.data(), n);
}

std::vector<Matrix> embed(const Weights& W, const std::string& name, int vocab, int dim, const Tokens& tokens) {
  const RowMatrix emb = W.matrix(name, vocab, dim);
  std::vector<Matrix> H(tokens.size());
  for (size_t b = 0; b < tokens.size(); ++b) {
    H[b].resize(static_cast<Index>(tokens[b].size()), dim);
    for (size_t t = 0; t < tokens[b].size(); ++t) H[b].row(static_cast<Index>(t)) = emb.row(tokens[b][t]);
  }
  return H;
}

Matrix rms_norm(const Matrix& X, const Vector& w, double eps) {
  Matrix Y(X.rows(), X.cols());
  for (Index r = 0; r < X.rows(); ++r) {
    const double ms = X.row(r).squaredNorm() / static_cast<double>(X.cols());
    Y.row(r) = X.row(r).cwiseProduct(w.transpose()) / std::sqrt(ms + eps);
  }
  return Y;
}

Matrix silu(const Matrix& X) {
  return X.unaryExpr([](double v) { return v / (1.0 + std::exp(-v)); });
}

double softplus(double x) { return x > 20 ? x : std::log1p(std::exp(x)); }

Matrix causal_depthwise_conv(const Matrix& X, const RowMatrix& weight, const Vector& bias) {
  const Index L = X.rows(), C = X.cols(), K = weight.cols();
  Matrix Y(L, C);
  for (Index c = 0; c < C; ++c)
    for (Index t = 0; t < L; ++t) {
      double s = bias.size() ? bias(c) : 0.0;
      for (Index k = 0; k < K; ++k) {
        const Index src = t - (K - 1) + k;
        if (src >= 0) s += weight(c, k) * X(src, c);
      }
      Y(t, c) = s;
    }
  return Y;
}

void finish_logits(const Matrix& X, const RowMatrix& head, bool keep, ModelRun& out) {
  const Index L = X.rows(), V = head.rows();
  std::vector<int> best(L);
  Matrix all;
  if (keep) all.resize(L, V);
  const Index chunk = 64;
  for (Index r0 = 0; r0 < L; r0 += chunk) {
    const Index n = std::min(chunk, L - r0);
    const Matrix part = X.middleRows(r0, n) * head.transpose();
    for (Index r = 0; r < n; ++r) {
      Index k;
      part.row(r).maxCoeff(&k);
      best[r0 + r] = static_cast<int>(k);
    }
    if (keep) all.middleRows(r0, n) = part;
  }
  out.argmax.push_back(std::move(best));
  if (keep) out.logits.push_back(std::move(all));
}

void final_norm_and_head(const Weights& W, const std::string& norm, const std::string& head, int vocab, int dim,
                         double eps, const std::vector<Matrix>& hidden, bool keep, ModelRun& out) {
  const Vector w = W.vector(norm, dim);
  const RowMatrix H = W.matrix(head, vocab, dim);
  for (const Matrix& h : hidden) finish_logits(rms_norm(h, w, eps), H, keep, out);
}

}  // namespace ess::models
