#include <cmath>
#include <optional>
#include <sstream>

#include "libess/checked.h"
#include "libess/error.h"
#include "models/model.h"

namespace ess::models {

int Config::integer(const std::string& k, IntRange range) const {
  if (!has(k)) throw InputError(path_ + ": missing field '" + k + "'");
  const auto& v = j_[k];
  if (v.is_number_unsigned()) {
    const auto u = v.get<std::uint64_t>();
    if (u > static_cast<std::uint64_t>(range.hi))
      throw InputError(path_ + ": field '" + k + "' = " + v.dump() + " is out of range [" + std::to_string(range.lo) +
                       ", " + std::to_string(range.hi) + "]");
    return integer_in(static_cast<long long>(u), k, range);
  }
  if (v.is_number_integer()) return integer_in(v.get<long long>(), k, range);
  // A float that is a whole number (Python writes 4.0 for some configs); NaN/±inf are not.
  if (!v.is_number_float() || !std::isfinite(v.get<double>()) || std::floor(v.get<double>()) != v.get<double>())
    throw InputError(path_ + ": field '" + k + "' must be an integer, found " + v.dump());
  const double d = v.get<double>();
  if (d < static_cast<double>(range.lo) || d > static_cast<double>(range.hi))
    throw InputError(path_ + ": field '" + k + "' = " + v.dump() + " is out of range [" + std::to_string(range.lo) +
                     ", " + std::to_string(range.hi) + "]");
  return static_cast<int>(d);
}

int Config::integer_in(long long v, const std::string& k, IntRange range) const {
  if (v < range.lo || v > range.hi)
    throw InputError(path_ + ": field '" + k + "' = " + std::to_string(v) + " is out of range [" +
                     std::to_string(range.lo) + ", " + std::to_string(range.hi) + "]");
  return static_cast<int>(v);
}

namespace {
std::string number_text(double v) {
  std::ostringstream s;
  s.precision(17);
  s << v;
  return s.str();
}
}  // namespace

double Config::check_number(double d, const std::string& k, NumberRange range) const {
  // NaN fails both comparisons; ±infinity passes only an infinite bound.
  if (!(d >= range.lo && d <= range.hi))
    throw InputError(path_ + ": field '" + k + "' = " + number_text(d) + " is " +
                     (std::isnan(d)   ? std::string("not a number")
                      : std::isinf(d) ? "infinite"
                                      : "out of range") +
                     " (expected a number in [" + number_text(range.lo) + ", " + number_text(range.hi) + "])");
  return d;
}

double Config::number(const std::string& k, NumberRange range) const {
  if (!has(k)) throw InputError(path_ + ": missing field '" + k + "'");
  if (!j_[k].is_number()) throw InputError(path_ + ": field '" + k + "' must be a number, found " + j_[k].dump());
  return check_number(j_[k].get<double>(), k, range);
}

std::vector<double> Config::numbers(const std::string& k, std::size_t count, NumberRange range) const {
  if (!has(k)) throw InputError(path_ + ": missing field '" + k + "'");
  const auto& v = j_[k];
  if (!v.is_array() || v.size() != count)
    throw InputError(path_ + ": field '" + k + "' must be an array of " + std::to_string(count) + " numbers");
  std::vector<double> out;
  for (std::size_t i = 0; i < count; ++i) {
    if (!v[i].is_number())
      throw InputError(path_ + ": field '" + k + "' must be an array of " + std::to_string(count) + " numbers");
    out.push_back(check_number(v[i].get<double>(), k + "[" + std::to_string(i) + "]", range));
  }
  return out;
}

int Config::scaled(const std::string& k, double fallback, int base) const {
  const double factor = number(k, fallback, kPositiveNumber);
  const double value = std::floor(factor * base);
  if (!(value >= 1 && value <= static_cast<double>(kMaxInt)))
    throw InputError(path_ + ": field '" + k + "' = " + number_text(factor) + " times " + std::to_string(base) +
                     " gives " + number_text(value) + ", outside [1, " + std::to_string(kMaxInt) + "]");
  return static_cast<int>(value);
}

int Config::product(std::initializer_list<long long> factors, const std::string& what) const {
  std::optional<std::uint64_t> p = 1;
  for (long long f : factors)
    p = f < 0 || !p ? std::nullopt : checked_mul<std::uint64_t>(*p, static_cast<std::uint64_t>(f));
  if (!p || *p < 1 || *p > static_cast<std::uint64_t>(kMaxInt)) {
    std::string text;
    for (long long f : factors) text += (text.empty() ? "" : " × ") + std::to_string(f);
    throw InputError(path_ + ": " + what + " = " + text + " is outside [1, " + std::to_string(kMaxInt) + "]");
  }
  return static_cast<int>(*p);
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
