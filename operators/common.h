// Shared validation and reading helpers for the operator families. Every message starts with the
// context string the family was given ("ops.h5:/layers/blk0" when read from a file).
#pragma once
#include <random>
#include <string>
#include <vector>

#include "libess/hdf5.h"
#include "libess/tensor.h"

namespace ess::ops {

// Names of a tensor's axes, used to say where a bad value sits ("batch 0, head 1, position 3").
using Axes = std::vector<std::string>;
inline const Axes kBHLD = {"batch", "head", "position", "feature"};  // q, k [B, H, L, d]
inline const Axes kBHL = {"batch", "head", "position"};              // beta, dt [B, H, L]
inline const Axes kBCL = {"batch", "channel", "position"};           // dt, gates [B, C, L]
inline const Axes kBCLL = {"batch", "channel", "row", "column"};     // dense T [B, C, L, L]
inline const Axes kBLN = {"batch", "position", "state"};             // Mamba B, C [B, L, N]
inline const Axes kBGLN = {"batch", "group", "position", "state"};   // Mamba2 B, C [B, G, L, N]
inline const Axes kCN = {"channel", "mode"};                         // S4D [C, N]
inline const Axes kCK = {"channel", "tap"};                          // conv h [C, K]

// Throws InputError "<context>: dataset '<name>' has shape [..], expected [..]" unless shapes
// match; -1 in `expected` matches any size.
void expect_shape(const std::string& context, const std::string& name, const Tensor& t,
                  const std::vector<std::int64_t>& expected);
// Throws InputError unless every axis of the tensor has at least one element.
void expect_nonempty(const std::string& context, const std::string& name, const Tensor& t);
// Throws InputError naming the first NaN/Inf, with its index ("batch 0, head 1, position 3, …"
// when `axes` are given, else "[0, 1, 3, …]").
void check_finite(const std::string& context, const std::string& name, const Tensor& t, const Axes& axes = {});
// Throws InputError naming the first value above `bound` (≤ 0 decays) / below `bound` (dt ≥ 0).
void check_at_most(const std::string& context, const std::string& name, const Tensor& t, double bound,
                   const std::string& why, const Axes& axes = {});
void check_at_least(const std::string& context, const std::string& name, const Tensor& t, double bound,
                    const std::string& why, const Axes& axes = {});
// "batch 0, head 1, position 3" (or "[0, 1, 3]" without axis names) for a flat row-major index.
std::string index_string(const std::vector<std::int64_t>& shape, std::int64_t flat, const Axes& axes = {});

// Reads a float32/float64 dataset of a layer group (any other dtype → InputError naming it; an
// axis longer than INT_MAX is refused before reading).
// Finiteness and shape are checked by the family's constructor, which knows the axes.
Tensor read_tensor(const h5::Object& group, const std::string& name);
// Reads an optional dataset; a default (rank-0, no data) Tensor when absent.
Tensor read_optional(const h5::Object& group, const std::string& name);
// True unless `t` is the default Tensor() that stands for an absent optional dataset.
inline bool present(const Tensor& t) { return !t.shape.empty() || !t.data.empty(); }
// Largest sequence length accepted from a `seq_len` attribute (lengths are ints throughout).
constexpr long long kMaxSeqLen = 1LL << 30;
// Integer attribute `name` of the group, or `fallback` when absent; must lie in [lo, hi].
int read_int_attr(const h5::Object& group, const std::string& name, int fallback, long long lo, long long hi);
// "file.h5:/layers/name" for messages.
std::string context_of(const h5::Object& group);
// Sums the in-memory size of every layer's datasets from their declared shapes (no data read) and
// refuses (InputError, ess::check_memory) a file whose datasets would not fit: a few-KB file can
// declare terabytes.
void check_declared_memory(const h5::Object& layers);

// Random tensors for the families' example operators (the same draws for the same generator state).
Tensor random_normal(std::mt19937& rng, std::vector<std::int64_t> shape, double scale = 1.0);
Tensor random_uniform(std::mt19937& rng, std::vector<std::int64_t> shape, double lo, double hi);

}  // namespace ess::ops
