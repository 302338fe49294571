#include "operators/common.h"

#include <cmath>
#include <sstream>

#include "libess/error.h"

namespace ess::ops {

void expect_shape(const std::string& context, const std::string& name, const Tensor& t,
                  const std::vector<std::int64_t>& expected) {
  bool ok = t.shape.size() == expected.size();
  for (size_t k = 0; ok && k < expected.size(); ++k) ok = expected[k] < 0 || expected[k] == t.shape[k];
  if (ok) return;
  std::string want = "[";
  for (size_t k = 0; k < expected.size(); ++k)
    want += (k ? ", " : "") + (expected[k] < 0 ? std::string("*") : std::to_string(expected[k]));
  const std::string found = t.rank() == 0 && t.size() == 0 ? "(absent)" : t.shape_string();
  throw InputError(context + ": dataset '" + name + "' has shape " + found + ", expected " + want + "]");
}

void expect_nonempty(const std::string& context, const std::string& name, const Tensor& t) {
  for (auto n : t.shape)
    if (n < 1) throw InputError(context + ": dataset '" + name + "' has an empty axis: shape " + t.shape_string());
}

std::string index_string(const std::vector<std::int64_t>& shape, std::int64_t flat, const Axes& axes) {
  std::vector<std::int64_t> idx(shape.size());
  for (size_t k = shape.size(); k-- > 0;) {
    idx[k] = flat % shape[k];
    flat /= shape[k];
  }
  if (axes.size() != shape.size()) return shape_string(idx);
  std::string s;
  for (size_t k = 0; k < idx.size(); ++k) s += (k ? ", " : "") + axes[k] + " " + std::to_string(idx[k]);
  return s;
}

void check_finite(const std::string& context, const std::string& name, const Tensor& t, const Axes& axes) {
  for (std::int64_t k = 0; k < t.size(); ++k)
    if (!std::isfinite(t.data[k]))
      throw InputError(context + ": dataset '" + name + "' has a non-finite value (" +
                       (std::isnan(t.data[k]) ? "NaN" : "Inf") + ") at " + index_string(t.shape, k, axes));
}

namespace {
std::string number(double v) {
  std::ostringstream s;
  s.precision(6);
  s << v;
  return s.str();
}
}  // namespace

void check_at_most(const std::string& context, const std::string& name, const Tensor& t, double bound,
                   const std::string& why, const Axes& axes) {
  for (std::int64_t k = 0; k < t.size(); ++k)
    if (t.data[k] > bound)
      throw InputError(context + ": dataset '" + name + "' must be ≤ " + number(bound) + " (" + why + "), found " +
                       number(t.data[k]) + " at " + index_string(t.shape, k, axes));
}

void check_at_least(const std::string& context, const std::string& name, const Tensor& t, double bound,
                    const std::string& why, const Axes& axes) {
  for (std::int64_t k = 0; k < t.size(); ++k)
    if (t.data[k] < bound)
      throw InputError(context + ": dataset '" + name + "' must be ≥ " + number(bound) + " (" + why + "), found " +
                       number(t.data[k]) + " at " + index_string(t.shape, k, axes));
}

std::string context_of(const h5::Object& group) { return group.where(); }

Tensor read_tensor(const h5::Object& group, const std::string& name) {
  const std::string context = context_of(group);
  if (!group.has(name)) throw InputError(context + ": missing dataset '" + name + "'");
  if (group.is_group(name)) throw InputError(context + ": '" + name + "' is a group, expected a dataset");
  const auto dtype = group.dtype(name);
  if (dtype != h5::DType::float32 && dtype != h5::DType::float64)
    throw InputError(context + ": dataset '" + name + "' must be float32 or float64");
  Tensor t;
  t.data = group.read_double(name, &t.shape);
  return t;
}

Tensor read_optional(const h5::Object& group, const std::string& name) {
  return group.has(name) ? read_tensor(group, name) : Tensor();
}

int read_int_attr(const h5::Object& group, const std::string& name, int fallback, long long lo, long long hi) {
  if (!group.has_attr(name)) return fallback;
  const long long v = group.attr_int(name);
  if (v < lo || v > hi)
    throw InputError(context_of(group) + ": attribute '" + name + "' = " + std::to_string(v) + " is out of range [" +
                     std::to_string(lo) + ", " + std::to_string(hi) + "]");
  return static_cast<int>(v);
}

Tensor random_normal(std::mt19937& rng, std::vector<std::int64_t> shape, double scale) {
  Tensor t(std::move(shape));
  std::normal_distribution<double> n(0.0, scale);
  for (auto& v : t.data) v = n(rng);
  return t;
}

Tensor random_uniform(std::mt19937& rng, std::vector<std::int64_t> shape, double lo, double hi) {
  Tensor t(std::move(shape));
  std::uniform_real_distribution<double> u(lo, hi);
  for (auto& v : t.data) v = u(rng);
  return t;
}

}  // namespace ess::ops
