// Model inputs for `ess analyze`: a tokens file or the built-in MQAR batch generator.
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace ess {

namespace models {
using Tokens = std::vector<std::vector<int>>;  // [B][L] token ids
}

struct TokenBatch {
  models::Tokens tokens;                 // [B][L]
  std::vector<std::vector<int>> target;  // [B][L] expected next token, −1 where none (MQAR)
  std::string description;               // recorded as the results' `input`
};

// Bounds on a tokens file, checked while it is read (before storing more).
constexpr std::size_t kMaxTokenLineBytes = 16u << 20;  // one line (sequence) as text
constexpr std::size_t kMaxTokenSequences = 1u << 20;   // lines with tokens
constexpr std::uint64_t kMaxTokens = 1u << 28;         // tokens in all

// One sequence per line, whitespace-separated non-negative ids, every line the same length, ids
// below `vocab`; a regular file (a FIFO or device is refused, not waited on) within the bounds
// above. InputError naming the file, line and position otherwise.
TokenBatch read_tokens_file(const std::string& path, int vocab);

// Multi-query associative recall (Arora et al., "Zoology", 2023). Each sequence: kv key–value pairs
// (keys distinct, from the lower half of the vocabulary [1, V/2), values from the upper half
// [V/2, V)), then (len − 2·kv)/2 query pairs "key value" drawn from the context; the model is right
// at a query when its most likely next token at the key's position is the paired value.
struct MqarSpec {
  int kv = 16, len = 256, n = 8, vocab = 0;  // vocab 0 = the model's
  unsigned seed = 0;
};
MqarSpec parse_mqar(const std::string& spec);  // "kv=16,len=256,n=8,seed=0,vocab=512"; UsageError
TokenBatch make_mqar(const MqarSpec& spec, int model_vocab);
// Fraction of positions with a target where argmax equals the target.
double mqar_accuracy(const TokenBatch& batch, const std::vector<std::vector<int>>& argmax);

// Blocks around given tokens (`--at-tokens ID[,ID…] --window W`): every block i, 1 ≤ i ≤ L−1, with
// |i − p| ≤ window for some position p at which some sequence of the batch holds one of `ids`
// (the union over the batch: every sequence is measured at the same blocks). Ascending, no
// duplicates; empty when no id occurs.
struct TokenWindows {
  std::vector<int> ids;  // empty = not asked for
  int window = 0;
  bool active() const { return !ids.empty(); }
};
std::vector<int> blocks_at_tokens(const models::Tokens& tokens, const TokenWindows& at);
// The same as an explicit index list for EssOptions::indices ("i,j,k"); UsageError naming
// --at-tokens when none of the ids occurs in the input.
std::string indices_at_tokens(const models::Tokens& tokens, const TokenWindows& at);
// "ID[,ID…]" → ids (each ≥ 0); UsageError naming --at-tokens otherwise.
std::vector<int> parse_token_ids(const std::string& spec);

}  // namespace ess
