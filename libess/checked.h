// Overflow-checked integer arithmetic for sizes read from files (shapes, counts, byte totals).
// Untrusted sizes are multiplied only through these helpers: no signed overflow, no wrap-around.
#pragma once
#include <cstdint>
#include <initializer_list>
#include <limits>
#include <optional>
#include <type_traits>
#include <vector>

namespace ess {

// a·b, or nullopt when the product does not fit in T.
template <class T>
std::optional<T> checked_mul(T a, T b) {
  static_assert(std::is_integral_v<T>);
  T r;
  if (__builtin_mul_overflow(a, b, &r)) return std::nullopt;
  return r;
}

// a + b, or nullopt when the sum does not fit in T.
template <class T>
std::optional<T> checked_add(T a, T b) {
  static_assert(std::is_integral_v<T>);
  T r;
  if (__builtin_add_overflow(a, b, &r)) return std::nullopt;
  return r;
}

// a·b and a + b for byte estimates: saturate at the largest uint64 instead of overflowing, so an
// absurd size stays absurd (and is refused by ess::check_memory).
inline std::uint64_t saturating_mul(std::uint64_t a, std::uint64_t b) {
  return checked_mul(a, b).value_or(std::numeric_limits<std::uint64_t>::max());
}
inline std::uint64_t saturating_add(std::uint64_t a, std::uint64_t b) {
  return checked_add(a, b).value_or(std::numeric_limits<std::uint64_t>::max());
}

// Product of the factors, or nullopt when one is negative or the product exceeds `limit`.
inline std::optional<std::uint64_t> checked_product(std::initializer_list<std::int64_t> factors,
                                                    std::uint64_t limit = std::numeric_limits<std::uint64_t>::max()) {
  std::uint64_t n = 1;
  for (std::int64_t f : factors) {
    if (f < 0) return std::nullopt;
    const auto p = checked_mul<std::uint64_t>(n, static_cast<std::uint64_t>(f));
    if (!p || *p > limit) return std::nullopt;
    n = *p;
  }
  return n;
}

// Number of elements of a shape (product of its dimensions; 1 for rank 0), or nullopt when a
// dimension is negative or the product exceeds `limit`. A shape with a zero dimension has 0
// elements whatever its other dimensions.
inline std::optional<std::uint64_t> element_count(const std::vector<std::int64_t>& shape,
                                                  std::uint64_t limit = std::numeric_limits<std::int64_t>::max()) {
  for (std::int64_t d : shape)
    if (d < 0) return std::nullopt;
  for (std::int64_t d : shape)
    if (d == 0) return 0;
  std::uint64_t n = 1;
  for (std::int64_t d : shape) {
    const auto p = checked_mul<std::uint64_t>(n, static_cast<std::uint64_t>(d));
    if (!p || *p > limit) return std::nullopt;
    n = *p;
  }
  return n;
}

}  // namespace ess
