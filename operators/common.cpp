#include "operators/common.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <sstream>

#include "libess/checked.h"
#include "libess/error.h"
#include "libess/memory.h"

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

void check_declared_memory(const h5::Object& layers) {
  std::uint64_t total = 0;
  std::uint64_t largest = 0;
  std::string largest_name;
  for (const std::string& name : layers.children()) {
    if (!layers.is_group(name)) continue;  // reported by the reader
    const h5::Object g = layers.group(name);
    for (const std::string& ds : g.children()) {
      if (g.is_group(ds)) continue;
      const auto shape = g.shape(ds);
      // In memory: uint8 masks as bytes, everything else as float64.
      const std::uint64_t width = g.dtype(ds) == h5::DType::uint8 ? 1 : sizeof(double);
      const auto count = element_count(shape);
      const auto bytes = count ? checked_mul<std::uint64_t>(*count, width) : std::nullopt;
      const auto sum = bytes ? checked_add<std::uint64_t>(total, *bytes) : std::nullopt;
      total = sum ? *sum : kUnlimitedMemory;
      if (!bytes || *bytes > largest) {
        largest = bytes ? *bytes : kUnlimitedMemory;
        largest_name = g.where(ds) + " " + shape_string(shape);
      }
      if (!sum) break;
    }
    if (total == kUnlimitedMemory) break;
  }
  check_memory(total,
               layers.file() + ": reading the operator file (largest dataset " + largest_name + ": " +
                   format_bytes(largest) + ")",
               "datasets are read as float64 before any block is measured; export fewer layers, a smaller "
               "batch or a shorter sequence");
}

Tensor read_tensor(const h5::Object& group, const std::string& name) {
  const std::string context = context_of(group);
  if (!group.has(name)) throw InputError(context + ": missing dataset '" + name + "'");
  if (group.is_group(name)) throw InputError(context + ": '" + name + "' is a group, expected a dataset");
  const auto dtype = group.dtype(name);
  if (dtype != h5::DType::float32 && dtype != h5::DType::float64)
    throw InputError(context + ": dataset '" + name + "' must be float32 or float64");
  // Every axis is used as an int (batch, channel, position, feature): checked before reading.
  const auto shape = group.shape(name);
  for (size_t k = 0; k < shape.size(); ++k)
    if (shape[k] > std::numeric_limits<int>::max())
      throw InputError(context + ": dataset '" + name + "' has shape " + shape_string(shape) + ": axis " +
                       std::to_string(k) + " is longer than " + std::to_string(std::numeric_limits<int>::max()));
  Tensor t;
  t.data = group.read_double(name, &t.shape);
  return t;
}

Tensor read_optional(const h5::Object& group, const std::string& name) {
  return group.has(name) ? read_tensor(group, name) : Tensor();
}

int read_int_attr(const h5::Object& group, const std::string& name, int fallback, long long lo, long long hi) {
  if (!group.has_attr(name)) return fallback;
  return static_cast<int>(group.attr_int_in_range(name, std::max<long long>(lo, std::numeric_limits<int>::min()),
                                                  std::min<long long>(hi, std::numeric_limits<int>::max())));
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
