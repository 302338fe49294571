// A dense row-major float64 array with a shape, as read from HDF5 or safetensors.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "libess/types.h"

namespace ess {

struct Tensor {
  std::vector<std::int64_t> shape;
  std::vector<double> data;

  Tensor() = default;
  Tensor(std::vector<std::int64_t> s, std::vector<double> d) : shape(std::move(s)), data(std::move(d)) {}
  explicit Tensor(std::vector<std::int64_t> s);  // zero-filled

  int rank() const { return static_cast<int>(shape.size()); }
  std::int64_t dim(int k) const { return shape.at(k); }
  std::int64_t size() const { return static_cast<std::int64_t>(data.size()); }
  std::string shape_string() const;

  // Row-major slice of the last two axes at leading indices (e.g. [B,H,L,d] at (b,h) → L×d).
  Eigen::Map<const RowMatrix> matrix(std::initializer_list<std::int64_t> leading) const;
  Eigen::Map<RowMatrix> matrix(std::initializer_list<std::int64_t> leading);
  // Contiguous last-axis slice at leading indices (e.g. [B,C,L] at (b,c) → L).
  Eigen::Map<const Vector> vector(std::initializer_list<std::int64_t> leading) const;
};

std::string shape_string(const std::vector<std::int64_t>& shape);

}  // namespace ess
