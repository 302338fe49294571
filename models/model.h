// Hugging Face–layout causal language models run in C++ (float64), each sequence mixer's
// operator captured for the given tokens (DESIGN §5–6).
#pragma once
#include <initializer_list>
#include <limits>
#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "libess/operator.h"
#include "models/safetensors.h"
#include "models/tokens.h"

namespace ess::models {

struct ModelRun {
  std::vector<OperatorLayer> layers;     // one per mixer, in order
  std::vector<std::vector<int>> argmax;  // [B][L] most likely next token at each position
  std::vector<Matrix> logits;            // per batch element, L × V (only when asked for: large)
};

class CausalLM {
 public:
  virtual ~CausalLM() = default;
  virtual std::string architecture() const = 0;
  virtual int vocab_size() const = 0;
  virtual int num_layers() const = 0;
  // Runs the model; token ids must lie in [0, vocab_size()).
  virtual ModelRun run(const Tokens& tokens, bool keep_logits = false) const = 0;
};

std::vector<std::string> supported_architectures();
// Reads config.json, checks every tensor's presence, shape and finiteness. InputError on problems.
std::unique_ptr<CausalLM> load_causal_lm(const std::string& dir);

// --- shared building blocks -------------------------------------------------------------------

// config.json access with messages naming the file and field. Every number is validated here
// (docs/reliability.md): integers are integral and within a range (default [1, kMaxInt]: sizes and
// counts, so num_hidden_layers = 0 is refused), numbers are finite (NaN never, ±infinity only when
// the range's bound is infinite) and within a range, and sizes formed from several fields go
// through scaled() / product(), which refuse results beyond kMaxInt. kMaxInt = 2^28 keeps sums of
// up to 8 such values within int.
class Config {
 public:
  static constexpr long long kMaxInt = 1LL << 28;
  struct IntRange {
    long long lo, hi;
  };
  struct NumberRange {
    double lo, hi;  // inclusive
  };
  static constexpr IntRange kPositive{1, kMaxInt}, kNonNegative{0, kMaxInt};
  static constexpr NumberRange kFinite{-std::numeric_limits<double>::max(), std::numeric_limits<double>::max()};
  static constexpr NumberRange kNonNegativeNumber{0.0, std::numeric_limits<double>::max()};
  static constexpr NumberRange kPositiveNumber{std::numeric_limits<double>::min(), std::numeric_limits<double>::max()};

  Config(nlohmann::json j, std::string path) : j_(std::move(j)), path_(std::move(path)) {}
  bool has(const std::string& k) const { return j_.contains(k) && !j_[k].is_null(); }
  int integer(const std::string& k, IntRange range = kPositive) const;
  int integer(const std::string& k, int fallback, IntRange range = kPositive) const {
    return has(k) ? integer(k, range) : fallback;
  }
  double number(const std::string& k, NumberRange range = kFinite) const;
  double number(const std::string& k, double fallback, NumberRange range = kFinite) const {
    return has(k) ? number(k, range) : fallback;
  }
  // An array of `count` numbers, each checked like number().
  std::vector<double> numbers(const std::string& k, std::size_t count, NumberRange range = kFinite) const;
  // ⌊factor · base⌋ with factor = field k (or `fallback`), finite and > 0 (Mamba's `expand` ×
  // hidden_size); the result must lie in [1, kMaxInt].
  int scaled(const std::string& k, double fallback, int base) const;
  // The product of config values, refused (InputError naming `what`) outside [1, kMaxInt].
  int product(std::initializer_list<long long> factors, const std::string& what) const;
  bool boolean(const std::string& k, bool fallback) const;
  const nlohmann::json& json() const { return j_; }
  const std::string& path() const { return path_; }

 private:
  int integer_in(long long v, const std::string& k, IntRange range) const;
  double check_number(double d, const std::string& k, NumberRange range) const;
  nlohmann::json j_;
  std::string path_;
};

// Weight tensors with shape checks against the config.
class Weights {
 public:
  explicit Weights(const std::string& dir) : ckpt_(dir) {}
  bool has(const std::string& name) const { return ckpt_.has(name); }
  const st::TensorInfo& info(const std::string& name) const { return ckpt_.info(name); }
  // Row-major [rows, cols] matrix (a Linear weight is [out, in]); 1-D tensors with cols = 1.
  RowMatrix matrix(const std::string& name, std::int64_t rows, std::int64_t cols) const;
  Vector vector(const std::string& name, std::int64_t n) const;
  // Any shape, checked exactly.
  Tensor tensor(const std::string& name, const std::vector<std::int64_t>& shape) const;
  std::vector<std::string> weight_files() const { return ckpt_.files(); }
  const std::string& dir() const { return ckpt_.dir(); }

 private:
  st::Checkpoint ckpt_;
};

// Embedding rows of every sequence: one L × D matrix per batch element.
std::vector<Matrix> embed(const Weights& W, const std::string& name, int vocab, int dim, const Tokens& tokens);
// y = rms_norm(x) ⊙ w over the last axis (rows of X).
Matrix rms_norm(const Matrix& X, const Vector& w, double eps);
Matrix silu(const Matrix& X);
double softplus(double x);
// Causal depthwise conv: X [L, C], weight [C, K] (row-major), bias [C] (may be empty).
Matrix causal_depthwise_conv(const Matrix& X, const RowMatrix& weight, const Vector& bias);
// logits = X headᵀ in row chunks (an L × V matrix is large): appends argmax and, if asked, logits.
void finish_logits(const Matrix& X, const RowMatrix& head, bool keep, ModelRun& out);
// The end of every model: final RMSNorm (weight `norm`) then the LM head (`head`, [V, D]) for each
// batch element's hidden states.
void final_norm_and_head(const Weights& W, const std::string& norm, const std::string& head, int vocab, int dim,
                         double eps, const std::vector<Matrix>& hidden, bool keep, ModelRun& out);

}  // namespace ess::models
