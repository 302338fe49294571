#include "operators/common.h"

#include <cmath>

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
  throw InputError(context + ": dataset '" + name + "' has shape " + t.shape_string() + ", expected " + want + "]");
}

std::string index_string(const std::vector<std::int64_t>& shape, std::int64_t flat) {
  std::vector<std::int64_t> idx(shape.size());
  for (size_t k = shape.size(); k-- > 0;) {
    idx[k] = flat % shape[k];
    flat /= shape[k];
  }
  return shape_string(idx);
}

void check_finite(const std::string& context, const std::string& name, const Tensor& t) {
  for (std::int64_t k = 0; k < t.size(); ++k)
    if (!std::isfinite(t.data[k]))
      throw InputError(context + ": dataset '" + name + "' has a non-finite value (" +
                       (std::isnan(t.data[k]) ? "NaN" : "Inf") + ") at index " + index_string(t.shape, k));
}

std::string context_of(const h5::Object& group) { return group.where(); }

Tensor read_tensor(const h5::Object& group, const std::string& name) {
  const std::string context = context_of(group);
  if (!group.has(name)) throw InputError(context + ": missing dataset '" + name + "'");
  auto dtype = group.dtype(name);
  if (dtype != h5::DType::float32 && dtype != h5::DType::float64)
    throw InputError(context + ": dataset '" + name + "' must be float32 or float64");
  Tensor t;
  t.data = group.read_double(name, &t.shape);
  check_finite(context, name, t);
  return t;
}

Tensor read_optional(const h5::Object& group, const std::string& name) {
  return group.has(name) ? read_tensor(group, name) : Tensor();
}

}  // namespace ess::ops
