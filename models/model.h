// Hugging Face–layout causal language models run in C++ (float64), each sequence mixer's
// operator captured for the given tokens (DESIGN §5–6).
//
// Every architecture declares its weight tensors once (WeightDecls: name pattern, shape from the
// config, when present); that one list validates the checkpoint at load, serves the forward pass
// (which asks for weights by role) and is what `ess inspect CKPT` shows. Architectures register
// themselves (models/models.h, ESS_REGISTER_ARCHITECTURE); docs/adding-an-architecture.md.
#pragma once
#include <cstdint>
#include <functional>
#include <initializer_list>
#include <limits>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "libess/operator.h"
#include "models/safetensors.h"
#include "models/tokens.h"

namespace ess::models {

// --- config.json ------------------------------------------------------------------------------

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

// --- declared weights -------------------------------------------------------------------------

// One weight tensor an architecture declares: the role the forward pass asks for it by, its name
// in the checkpoint, its shape computed from config.json, and when it is present.
struct WeightDecl {
  std::string role;                 // "q_proj", "embed", …: unique within an architecture
  std::vector<std::string> names;   // name pattern, then accepted alternative spellings (first found wins);
                                    // "{l}" stands for the layer index, "{i}" for the item index
  std::vector<std::int64_t> shape;  // exact shape, from config.json
  bool per_layer = false;           // one tensor per layer ("{l}" in the names)
  std::vector<bool> in_layer;       // per layer: declared there (hybrids); empty = every layer
  int items = 1;                    // tensors per layer or model ("{i}" = 0 … items−1, e.g. MoE experts)
  bool active = true;               // false: the config says it is absent (see condition)
  bool required = true;             // false: may be missing (e.g. lm_head when tied to the embedding)
  std::string condition;            // the config fact behind active/required/in_layer, for messages

  // Builders, chained after WeightDecls::global/layer:
  WeightDecl& or_named(std::string alternative);                               // another accepted name
  WeightDecl& when(bool present, std::string condition);                       // present only if `present`
  WeightDecl& optional(std::string condition);                                 // may be absent
  WeightDecl& only_in_layers(std::vector<bool> which, std::string condition);  // hybrids
  WeightDecl& repeated(int n);                                                 // "{i}" = 0 … n−1
  // names[k] with {l} and {i} substituted.
  std::string name(int layer, int item, size_t k = 0) const;
  bool declared_in(int layer) const { return !per_layer || in_layer.empty() || in_layer.at(layer); }
};

// The declaration list of one architecture instance (config values already substituted).
class WeightDecls {
 public:
  explicit WeightDecls(int num_layers) : layers_(num_layers) {}
  // A tensor that appears once (embedding, final norm, LM head).
  WeightDecl& global(std::string role, std::string name, std::vector<std::int64_t> shape);
  // A tensor of every layer: `pattern` contains "{l}".
  WeightDecl& layer(std::string role, std::string pattern, std::vector<std::int64_t> shape);
  int num_layers() const { return layers_; }
  const std::vector<WeightDecl>& list() const { return decls_; }

 private:
  WeightDecl& add(WeightDecl d);
  int layers_;
  std::vector<WeightDecl> decls_;
};

// The status of one declared tensor (one layer, one item) in a checkpoint.
struct WeightCheck {
  enum class State { ok, off, missing, wrong_shape, wrong_dtype };
  const WeightDecl* decl = nullptr;
  int layer = -1, item = 0;
  std::string name;  // the name found, else the declared one
  State state = State::ok;
  st::TensorInfo found;  // shape, dtype, file of the tensor found (when present)
  std::string message;   // for missing / wrong_shape / wrong_dtype: the InputError text
  bool problem() const { return state == State::missing || state == State::wrong_shape || state == State::wrong_dtype; }
};
const char* to_string(WeightCheck::State s);

// A layer's (or the model's global) weights read as float64, looked up by role.
class LoadedWeights {
 public:
  bool has(const std::string& role, int item = 0) const { return t_.count({role, item}) > 0; }
  const Tensor& tensor(const std::string& role, int item = 0) const;
  // The tensor as [dim 0, product of the others] (a Linear weight [out, in]; conv1d [C, 1, K] → C × K).
  Eigen::Map<const RowMatrix> matrix(const std::string& role, int item = 0) const;
  // All elements as a vector (a bias or norm weight).
  Eigen::Map<const Vector> vector(const std::string& role, int item = 0) const;
  void add(const std::string& role, int item, Tensor t) { t_[{role, item}] = std::move(t); }

 private:
  std::map<std::pair<std::string, int>, Tensor> t_;
};

// A checkpoint together with an architecture's declared weights.
class ModelWeights {
 public:
  explicit ModelWeights(const std::string& dir) : ckpt_(dir), decls_(0) {}
  void declare(WeightDecls decls) { decls_ = std::move(decls); }
  const WeightDecls& declarations() const { return decls_; }
  const std::string& dir() const { return ckpt_.dir(); }
  const st::Checkpoint& checkpoint() const { return ckpt_; }

  // Every declared tensor (per layer and item) against the checkpoint headers; reads no data.
  std::vector<WeightCheck> check() const;
  // InputError with the first problem of check(): missing tensor, wrong shape or dtype, naming the
  // file, the tensor and the shape config.json implies.
  void validate() const;
  // Checkpoint tensors that no active declaration claims (ignored by the forward pass).
  std::vector<std::string> undeclared() const;

  // True when the role is active and present (in that layer).
  bool has(const std::string& role, int layer = -1, int item = 0) const;
  // One tensor as float64 with its declared shape; InputError naming it on non-finite values.
  Tensor load(const std::string& role, int layer = -1, int item = 0) const;
  // Only the given rows (along dim 0) of a global tensor, e.g. the embeddings of the tokens being
  // run; InputError naming the tensor and row on non-finite values or a row out of range.
  Tensor load_rows(const std::string& role, const std::vector<std::int64_t>& rows) const;
  // Every present tensor of the given global roles / of one layer, read when called: the forward
  // pass keeps one layer's weights at a time.
  LoadedWeights load_global(const std::vector<std::string>& roles) const;
  LoadedWeights load_layer(int layer) const;

 private:
  const WeightDecl& decl(const std::string& role) const;
  WeightCheck check_one(const WeightDecl& d, int layer, int item) const;
  bool present(const WeightDecl& d, int layer, int item) const;  // ok: true; off: false; problem: InputError
  st::Checkpoint ckpt_;
  WeightDecls decls_;
};

// --- models -----------------------------------------------------------------------------------

struct ModelRun {
  std::vector<OperatorLayer> layers;     // one per mixer, in order (empty when streamed)
  std::vector<std::vector<int>> argmax;  // [B][L] most likely next token at each position
  // [B][L] log p(tokens[b][t+1] | tokens[b][0..t]): the log-softmax (float64, max-shifted) of the
  // logits at t taken at the next input token; NaN at t = L−1 (no next token in the input).
  std::vector<std::vector<double>> logprobs;
  std::vector<Matrix> logits;  // per batch element, L × V (only when asked for: large)
  // The tokens being run, while stream() runs (finish_logits reads the next tokens); null after.
  const Tokens* inputs = nullptr;
};

// Receives each mixer's operator as soon as the forward pass has used it (the model keeps no
// reference to it).
using LayerCallback = std::function<void(OperatorLayer&&)>;

class CausalLM {
 public:
  virtual ~CausalLM() = default;
  const std::string& architecture() const { return architecture_; }
  int vocab_size() const { return vocab_; }
  int num_layers() const { return layers_; }
  // Operators stream() hands over: one per mixer (hybrids with two mixers per block hand over more;
  // layer_index is then the block index, shared by the block's mixers).
  virtual int num_mixers() const { return layers_; }
  // The checkpoint and this architecture's declared weights.
  const ModelWeights& weights() const { return W_; }
  // config.json's max_position_embeddings, the context the model was configured for; 0 when it
  // gives none (state-space models). Longer inputs still run (rotary positions extrapolate), and
  // `ess analyze` notes it; GPT-2's learned positions refuse them (n_positions).
  long long max_positions() const { return max_positions_; }

  // Runs the model on [B][L] token ids in [0, vocab_size()) (InputError otherwise), handing each
  // mixer's operator to on_layer as soon as its output has been computed through it. Peak memory:
  // one layer's float64 weights (or the embedding) + one layer's operator + the activations.
  // Returns the model's predictions on the input: argmax and next-token log-probabilities.
  ModelRun stream(const Tokens& tokens, const LayerCallback& on_layer, bool keep_logits = false) const;
  // The same, collecting every layer's operator into ModelRun::layers.
  ModelRun run(const Tokens& tokens, bool keep_logits = false) const;

 protected:
  // Architectures read config.json in their constructor, set vocab_ and layers_, and
  // W_.declare() their weights. load_causal_lm validates them afterwards.
  CausalLM(const std::string& dir, std::string architecture) : W_(dir), architecture_(std::move(architecture)) {}
  // The forward pass: appends argmax, logprobs (and logits) of each sequence to `out` — through
  // finish_logits, which computes all three from the final hidden states — and hands operators to
  // on_layer. stream() checks that every sequence got its predictions.
  virtual void forward(const Tokens& tokens, const LayerCallback& on_layer, bool keep_logits, ModelRun& out) const = 0;

  ModelWeights W_;
  int vocab_ = 0, layers_ = 0;

 private:
  friend std::unique_ptr<CausalLM> open_causal_lm(const std::string& dir);
  std::string architecture_;
  long long max_positions_ = 0;
};

// Memory guard of the forward pass (docs/reliability.md): a lower bound on what a forward pass
// over batch × seq_len tokens allocates, from the declared weight shapes (activations of the
// residual stream and the widest projection, one sequence's logits or all of them when kept, one
// layer's weights and the embedding as float64). CausalLM::stream checks it (ess::check_memory,
// InputError naming the size and the limit) before anything is computed.
std::uint64_t forward_bytes_lower_bound(const WeightDecls& decls, int vocab, long long batch, long long seq_len,
                                        bool keep_logits);
void check_forward_memory(const WeightDecls& decls, const std::string& architecture, int vocab, long long batch,
                          long long seq_len, bool keep_logits);

// Names of the registered architectures (config.json `architectures[0]`), sorted.
std::vector<std::string> supported_architectures();
// Reads config.json and builds the architecture (its weight declarations), without checking the
// tensors against them: `ess inspect` shows what is declared, present, missing or misshapen.
std::unique_ptr<CausalLM> open_causal_lm(const std::string& dir);
// open_causal_lm, then every declared tensor's presence, shape and dtype. InputError on problems.
std::unique_ptr<CausalLM> load_causal_lm(const std::string& dir);

}  // namespace ess::models
