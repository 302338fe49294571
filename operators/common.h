// Shared validation and reading helpers for the operator families.
#pragma once
#include <string>
#include <vector>

#include "libess/hdf5.h"
#include "libess/tensor.h"

namespace ess::ops {

// Throws InputError "<context>: dataset '<name>' has shape [..], expected [..]" unless shapes
// match; -1 in `expected` matches any size.
void expect_shape(const std::string& context, const std::string& name, const Tensor& t,
                  const std::vector<std::int64_t>& expected);
// Throws InputError naming the first NaN/Inf (with its index) in a tensor.
void check_finite(const std::string& context, const std::string& name, const Tensor& t);
// Reads a float32/float64 dataset of a layer group (any other dtype → InputError), checks finiteness.
Tensor read_tensor(const h5::Object& group, const std::string& name);
// Reads an optional dataset; empty Tensor when absent.
Tensor read_optional(const h5::Object& group, const std::string& name);
// "file.h5:/layers/name" for messages.
std::string context_of(const h5::Object& group);
// Index formatted like [b, h, t, n] for messages.
std::string index_string(const std::vector<std::int64_t>& shape, std::int64_t flat);

}  // namespace ess::ops
