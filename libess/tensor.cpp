#include "libess/tensor.h"

#include <stdexcept>

namespace ess {

Tensor::Tensor(std::vector<std::int64_t> s) : shape(std::move(s)) {
  std::int64_t n = 1;
  for (auto d : shape) n *= d;
  data.assign(static_cast<size_t>(n), 0.0);
}

std::string shape_string(const std::vector<std::int64_t>& shape) {
  std::string s = "[";
  for (size_t k = 0; k < shape.size(); ++k) s += (k ? ", " : "") + std::to_string(shape[k]);
  return s + "]";
}

std::string Tensor::shape_string() const { return ess::shape_string(shape); }

namespace {
std::int64_t offset_of(const std::vector<std::int64_t>& shape, std::initializer_list<std::int64_t> leading,
                       int trailing) {
  if (static_cast<int>(leading.size()) + trailing != static_cast<int>(shape.size()))
    throw std::invalid_argument("Tensor slice: wrong number of leading indices for shape " + shape_string(shape));
  std::int64_t off = 0;
  size_t k = 0;
  for (auto i : leading) {
    if (i < 0 || i >= shape[k]) throw std::out_of_range("Tensor slice index out of range");
    off = off * shape[k] + i;
    ++k;
  }
  for (; k < shape.size(); ++k) off *= shape[k];
  return off;
}
}  // namespace

Eigen::Map<const RowMatrix> Tensor::matrix(std::initializer_list<std::int64_t> leading) const {
  auto off = offset_of(shape, leading, 2);
  return Eigen::Map<const RowMatrix>(data.data() + off, shape[shape.size() - 2], shape.back());
}

Eigen::Map<RowMatrix> Tensor::matrix(std::initializer_list<std::int64_t> leading) {
  auto off = offset_of(shape, leading, 2);
  return Eigen::Map<RowMatrix>(data.data() + off, shape[shape.size() - 2], shape.back());
}

Eigen::Map<const Vector> Tensor::vector(std::initializer_list<std::int64_t> leading) const {
  auto off = offset_of(shape, leading, 1);
  return Eigen::Map<const Vector>(data.data() + off, shape.back());
}

}  // namespace ess
