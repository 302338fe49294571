// config.json access, declared weights (validation, loading by role) and the numerical building
// blocks the architectures share.
#include <algorithm>
#include <cmath>
#include <limits>
#include <optional>
#include <set>
#include <sstream>
#include <stdexcept>

#include "libess/block_products.h"
#include "libess/checked.h"
#include "libess/error.h"
#include "models/models.h"

namespace ess::models {

// --- Config -----------------------------------------------------------------------------------

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

// --- declarations -----------------------------------------------------------------------------

WeightDecl& WeightDecl::or_named(std::string alternative) {
  names.push_back(std::move(alternative));
  return *this;
}

WeightDecl& WeightDecl::when(bool present, std::string why) {
  active = present;
  condition = std::move(why);
  return *this;
}

WeightDecl& WeightDecl::optional(std::string why) {
  required = false;
  condition = std::move(why);
  return *this;
}

WeightDecl& WeightDecl::only_in_layers(std::vector<bool> which, std::string why) {
  if (!per_layer) throw std::logic_error("weight '" + role + "': only_in_layers on a global weight");
  in_layer = std::move(which);
  condition = std::move(why);
  return *this;
}

WeightDecl& WeightDecl::repeated(int n) {
  items = n;
  return *this;
}

std::string WeightDecl::name(int layer, int item, size_t k) const {
  std::string s = names.at(k);
  for (const auto& [key, value] : {std::pair<std::string, int>{"{l}", layer}, {"{i}", item}})
    for (size_t p; (p = s.find(key)) != std::string::npos;) s.replace(p, key.size(), std::to_string(value));
  return s;
}

WeightDecl& WeightDecls::add(WeightDecl d) {
  for (const auto& e : decls_)
    if (e.role == d.role) throw std::logic_error("weight role '" + d.role + "' declared twice");
  decls_.push_back(std::move(d));
  return decls_.back();
}

WeightDecl& WeightDecls::global(std::string role, std::string name, std::vector<std::int64_t> shape) {
  WeightDecl d;
  d.role = std::move(role);
  d.names = {std::move(name)};
  d.shape = std::move(shape);
  return add(std::move(d));
}

WeightDecl& WeightDecls::layer(std::string role, std::string pattern, std::vector<std::int64_t> shape) {
  if (pattern.find("{l}") == std::string::npos)
    throw std::logic_error("per-layer weight '" + role + "' has no {l} in '" + pattern + "'");
  WeightDecl& d = global(std::move(role), std::move(pattern), std::move(shape));
  d.per_layer = true;
  return d;
}

const char* to_string(WeightCheck::State s) {
  switch (s) {
    case WeightCheck::State::ok:
      return "ok";
    case WeightCheck::State::off:
      return "off";
    case WeightCheck::State::missing:
      return "missing";
    case WeightCheck::State::wrong_shape:
      return "wrong shape";
    case WeightCheck::State::wrong_dtype:
      return "wrong dtype";
  }
  return "?";
}

// --- ModelWeights -----------------------------------------------------------------------------

const WeightDecl& ModelWeights::decl(const std::string& role) const {
  for (const auto& d : decls_.list())
    if (d.role == role) return d;
  throw std::logic_error("architecture asks for undeclared weight role '" + role + "'");
}

WeightCheck ModelWeights::check_one(const WeightDecl& d, int layer, int item) const {
  WeightCheck c;
  c.decl = &d;
  c.layer = layer;
  c.item = item;
  c.name = d.name(layer, item);
  if (!d.active || !d.declared_in(std::max(layer, 0))) {
    c.state = WeightCheck::State::off;
    return c;
  }
  for (size_t k = 0; k < d.names.size(); ++k) {
    const std::string n = d.name(layer, item, k);
    if (ckpt_.has(n)) {
      c.name = n;
      c.found = ckpt_.info(n);
      break;
    }
  }
  const std::string why = d.condition.empty() ? "" : "; " + d.condition;
  if (c.found.name.empty()) {
    c.state = WeightCheck::State::missing;
    std::string also;
    for (size_t k = 1; k < d.names.size(); ++k) also += (k == 1 ? " (nor '" : "', '") + d.name(layer, item, k);
    if (!also.empty()) also += "')";
    c.message = ckpt_.dir() + ": checkpoint has no tensor '" + c.name + "'" + also + " (config.json implies shape " +
                shape_string(d.shape) + why + ")";
  } else if (c.found.shape != d.shape) {
    c.state = WeightCheck::State::wrong_shape;
    c.message = c.found.file + ": tensor '" + c.name + "' has shape " + shape_string(c.found.shape) +
                ", but config.json implies " + shape_string(d.shape);
  } else if (c.found.dtype != "F32" && c.found.dtype != "F16" && c.found.dtype != "BF16" && c.found.dtype != "F64") {
    c.state = WeightCheck::State::wrong_dtype;
    c.message =
        c.found.file + ": tensor '" + c.name + "' has dtype " + c.found.dtype + " (supported: F32, F16, BF16, F64)";
  }
  if (c.state == WeightCheck::State::missing && !d.required) c.state = WeightCheck::State::off;
  return c;
}

std::vector<WeightCheck> ModelWeights::check() const {
  std::vector<WeightCheck> out;
  for (const auto& d : decls_.list()) {
    const int layers = d.per_layer ? decls_.num_layers() : 1;
    for (int l = 0; l < layers; ++l)
      for (int i = 0; i < d.items; ++i) out.push_back(check_one(d, d.per_layer ? l : -1, i));
  }
  return out;
}

void ModelWeights::validate() const {
  for (const auto& c : check())
    if (c.problem()) throw InputError(c.message);
}

std::vector<std::string> ModelWeights::undeclared() const {
  std::set<std::string> used;
  for (const auto& c : check())
    if (!c.found.name.empty() && c.state != WeightCheck::State::off) used.insert(c.name);
  std::vector<std::string> out;
  for (const auto& n : ckpt_.names())
    if (!used.count(n)) out.push_back(n);
  return out;
}

bool ModelWeights::has(const std::string& role, int layer, int item) const {
  const WeightDecl& d = decl(role);
  return check_one(d, d.per_layer ? layer : -1, item).state == WeightCheck::State::ok;
}

Tensor ModelWeights::load(const std::string& role, int layer, int item) const {
  const WeightDecl& d = decl(role);
  const WeightCheck c = check_one(d, d.per_layer ? layer : -1, item);
  if (c.problem()) throw InputError(c.message);
  if (c.state != WeightCheck::State::ok)
    throw std::logic_error("weight '" + c.name + "' (" + role + ") is not present; ask has() first");
  Tensor t = ckpt_.read(c.name);
  for (std::int64_t k = 0; k < t.size(); ++k)
    if (!std::isfinite(t.data[k]))
      throw InputError(c.found.file + ": tensor '" + c.name + "' has a non-finite value at flat index " +
                       std::to_string(k));
  return t;
}

Tensor ModelWeights::load_rows(const std::string& role, const std::vector<std::int64_t>& rows) const {
  const WeightDecl& d = decl(role);
  const WeightCheck c = check_one(d, -1, 0);
  if (c.problem()) throw InputError(c.message);
  if (c.state != WeightCheck::State::ok)
    throw std::logic_error("weight '" + c.name + "' (" + role + ") is not present; ask has() first");
  Tensor t = ckpt_.read_rows(c.name, rows);
  const std::size_t width = rows.empty() ? 0 : t.data.size() / rows.size();
  for (std::size_t k = 0; k < t.data.size(); ++k)
    if (!std::isfinite(t.data[k]))
      throw InputError(c.found.file + ": tensor '" + c.name + "' has a non-finite value in row " +
                       std::to_string(rows[k / width]) + " (flat index " +
                       std::to_string(static_cast<std::uint64_t>(rows[k / width]) * width + k % width) + ")");
  return t;
}

bool ModelWeights::present(const WeightDecl& d, int layer, int item) const {
  const WeightCheck c = check_one(d, d.per_layer ? layer : -1, item);
  if (c.problem()) throw InputError(c.message);
  return c.state == WeightCheck::State::ok;
}

LoadedWeights ModelWeights::load_global(const std::vector<std::string>& roles) const {
  LoadedWeights w;
  for (const auto& role : roles) {
    const WeightDecl& d = decl(role);
    for (int i = 0; i < d.items; ++i)
      if (present(d, -1, i)) w.add(role, i, load(role, -1, i));
  }
  return w;
}

LoadedWeights ModelWeights::load_layer(int layer) const {
  LoadedWeights w;
  for (const auto& d : decls_.list()) {
    if (!d.per_layer) continue;
    for (int i = 0; i < d.items; ++i)
      if (present(d, layer, i)) w.add(d.role, i, load(d.role, layer, i));
  }
  return w;
}

const Tensor& LoadedWeights::tensor(const std::string& role, int item) const {
  const auto it = t_.find({role, item});
  if (it == t_.end()) throw std::logic_error("weight role '" + role + "' is not loaded (absent; ask has() first)");
  return it->second;
}

Eigen::Map<const RowMatrix> LoadedWeights::matrix(const std::string& role, int item) const {
  const Tensor& t = tensor(role, item);
  const std::int64_t rows = t.rank() ? t.dim(0) : 1;
  return Eigen::Map<const RowMatrix>(t.data.data(), rows, rows ? t.size() / rows : 0);
}

Eigen::Map<const Vector> LoadedWeights::vector(const std::string& role, int item) const {
  const Tensor& t = tensor(role, item);
  return Eigen::Map<const Vector>(t.data.data(), t.size());
}

void declare_lm_head(WeightDecls& decls, int vocab, int dim, bool tied) {
  declare_lm_head(decls, vocab, dim, tied, "lm_head.weight");
}

void declare_lm_head(WeightDecls& decls, int vocab, int dim, bool tied, const std::string& name) {
  auto& d = decls.global("lm_head", name, {vocab, dim});
  if (tied)
    d.optional("tie_word_embeddings: the embedding is the head");
  else
    d.condition = "tie_word_embeddings is false";
}

// --- building blocks --------------------------------------------------------------------------

std::vector<Matrix> embed(const ModelWeights& W, const Tokens& tokens) {
  // Only the rows of the ids present are read and converted: the whole float64 embedding (2.1 GB
  // for Llama-3.2-1B) is then held once, by the (tied) head at the end, never twice.
  std::vector<std::int64_t> ids;
  for (const auto& seq : tokens) ids.insert(ids.end(), seq.begin(), seq.end());
  std::sort(ids.begin(), ids.end());
  ids.erase(std::unique(ids.begin(), ids.end()), ids.end());
  const Tensor rows = W.load_rows("embed", ids);
  Index dim = 1;
  for (size_t d = 1; d < rows.shape.size(); ++d) dim *= static_cast<Index>(rows.shape[d]);
  const Eigen::Map<const RowMatrix> emb(rows.data.data(), static_cast<Index>(ids.size()), dim);
  std::vector<Matrix> H(tokens.size());
  for (size_t b = 0; b < tokens.size(); ++b) {
    H[b].resize(static_cast<Index>(tokens[b].size()), dim);
    for (size_t t = 0; t < tokens[b].size(); ++t) {
      const auto at = std::lower_bound(ids.begin(), ids.end(), static_cast<std::int64_t>(tokens[b][t]));
      H[b].row(static_cast<Index>(t)) = emb.row(at - ids.begin());
    }
  }
  return H;
}

Matrix rms_norm(const Matrix& X, const Eigen::Ref<const Vector>& w, double eps) {
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

Matrix causal_depthwise_conv(const Matrix& X, const Eigen::Ref<const RowMatrix>& weight, const Vector& bias) {
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

void finish_logits(const Matrix& X, const Eigen::Ref<const RowMatrix>& head, bool keep, ModelRun& out) {
  finish_logits(X, head, keep, out, HeadOptions{});
}

void finish_logits(const Matrix& X, const Eigen::Ref<const RowMatrix>& head, bool keep, ModelRun& out,
                   const HeadOptions& options) {
  const Index L = X.rows(), V = head.rows();
  const double cap = options.softcap;
  const size_t b = out.argmax.size();
  if (!out.inputs || b >= out.inputs->size() || static_cast<Index>((*out.inputs)[b].size()) != L)
    throw std::logic_error("finish_logits: the hidden states do not match the tokens being run");
  const std::vector<int>& ids = (*out.inputs)[b];
  std::vector<int> best(L);
  std::vector<double> logprob(L, std::numeric_limits<double>::quiet_NaN());
  Matrix all;
  if (keep) all.resize(L, V);
  // Tiles of 64 positions × 4096 vocabulary rows (2 MB), so the logits never exist whole (a 256k
  // vocabulary would make one 64-row chunk 131 MB); per position a running maximum, argmax (the
  // first one on ties), the next token's logit and Σ exp(logit − max), rescaled when the maximum
  // grows. log p(next) = (logit(next) − max) − log Σ exp(logit − max): no overflow, and no
  // cancellation against a large max.
  const Index rows = 64, cols = 4096;
  Matrix part;
  std::vector<double> top(rows), sum(rows), target(rows);
  std::vector<Index> arg(rows);
  for (Index r0 = 0; r0 < L; r0 += rows) {
    const Index n = std::min(rows, L - r0);
    std::fill(top.begin(), top.end(), -std::numeric_limits<double>::infinity());
    std::fill(sum.begin(), sum.end(), 0.0);
    std::fill(arg.begin(), arg.end(), Index{0});
    std::fill(target.begin(), target.end(), std::numeric_limits<double>::quiet_NaN());
    for (Index v0 = 0; v0 < V; v0 += cols) {
      const Index m = std::min(cols, V - v0);
      part.resize(n, m);
      blas_gemm_xw(X.middleRows(r0, n), head.middleRows(v0, m), true, part);
      if (options.bias.size()) part.rowwise() += options.bias.segment(v0, m).transpose();
      if (cap > 0) part = part.unaryExpr([cap](double v) { return cap * std::tanh(v / cap); });
      for (Index r = 0; r < n; ++r) {
        Index k;
        const double tile_top = part.row(r).maxCoeff(&k);
        if (tile_top > top[r]) {
          sum[r] *= std::exp(top[r] - tile_top);  // exp(−inf) = 0 on the first tile
          top[r] = tile_top;
          arg[r] = v0 + k;
        }
        sum[r] += (part.row(r).array() - top[r]).exp().sum();
        const Index t = r0 + r;
        if (t + 1 < L && ids[t + 1] >= v0 && ids[t + 1] < v0 + m) target[r] = part(r, ids[t + 1] - v0);
      }
      if (keep) all.block(r0, v0, n, m) = part;
    }
    for (Index r = 0; r < n; ++r) {
      const Index t = r0 + r;
      best[t] = static_cast<int>(arg[r]);
      if (t + 1 < L) logprob[t] = (target[r] - top[r]) - std::log(sum[r]);
    }
  }
  out.argmax.push_back(std::move(best));
  out.logprobs.push_back(std::move(logprob));
  if (keep) out.logits.push_back(std::move(all));
}

void final_norm_and_head(const ModelWeights& W, const std::string& norm_role, double eps,
                         const std::vector<Matrix>& hidden, bool keep, ModelRun& out) {
  const std::string head = W.has("lm_head") ? "lm_head" : "embed";
  const LoadedWeights g = W.load_global({norm_role, head});
  for (const Matrix& h : hidden) finish_logits(rms_norm(h, g.vector(norm_role), eps), g.matrix(head), keep, out);
}

void put_head(Tensor& t, int b, int h, const Eigen::Ref<const Matrix>& X) { t.matrix({b, h}) = X; }

Matrix mamba2_inputs(const Matrix& xBC, Matrix dt, const Eigen::Ref<const Vector>& dt_bias, const Mamba2Dims& d, int b,
                     Tensor& dt_t, Tensor& B_t, Tensor& C_t) {
  for (Index t = 0; t < dt.rows(); ++t)
    for (int h = 0; h < d.H; ++h) dt(t, h) = std::clamp(softplus(dt(t, h) + dt_bias(h)), d.dt_min, d.dt_max);
  dt_t.matrix({b}) = dt.transpose();
  for (int g = 0; g < d.G; ++g) {
    B_t.matrix({b, g}) = xBC.middleCols(d.E + g * d.N, d.N);
    C_t.matrix({b, g}) = xBC.middleCols(d.E + d.G * d.N + g * d.N, d.N);
  }
  return xBC.leftCols(d.E);
}

}  // namespace ess::models
