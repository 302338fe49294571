// `ess analyze CKPT --text FILE`: a UTF-8 text file, cut into documents, tokenized with the
// checkpoint's tokenizer.json and laid out as the same TokenBatch read_tokens_file gives
// (docs/checkpoints.md, "Text input", is the specification).
#pragma once
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "models/tokenizer.h"
#include "models/tokens.h"

namespace ess {

// A line that holds only this (a trailing \r is allowed) separates two documents.
inline constexpr const char* kDocumentDelimiter = "<|doc|>";

struct TextOptions {
  int max_len = 0;  // 0: one row with every token; N: rows of exactly N tokens, the tail dropped
};

// What is put around and between documents, and where each rule came from.
struct SpecialTokenRules {
  std::vector<int> prefix, suffix;  // around every document
  int separator = -1;               // EOS between documents (−1: unknown)
  std::string description;          // e.g. "per document: <s> before (tokenizer.json post-processor); …"
};

// The documents of `text`: the pieces between delimiter lines. The line break that ends the last
// line before a delimiter line belongs to the delimiter; documents with no bytes are dropped.
std::vector<std::string_view> split_documents(std::string_view text);

// BOS/EOS rules from the files in `dir` (tokenizer_config.json, generation_config.json,
// config.json) and the tokenizer's post-processor. InputError when a named token is unknown.
SpecialTokenRules special_token_rules(const std::string& dir, const models::Tokenizer& tokenizer);

// Every document encoded (with the per-document specials), joined with the separator between
// consecutive documents unless a document already ends with it.
std::vector<int> encode_documents(const models::Tokenizer& tokenizer, const SpecialTokenRules& rules,
                                  const std::vector<std::string_view>& documents);

// Per-document encodings with their specials and no separators (`ess tokenize --documents`).
std::vector<std::vector<int>> encode_each_document(const models::Tokenizer& tokenizer, const SpecialTokenRules& rules,
                                                   const std::vector<std::string_view>& documents);

// Largest text file read (a regular file, never waited on: docs/reliability.md).
inline constexpr std::uint64_t kMaxTextBytes = 64ULL << 20;

// The bytes of a text file: a regular file of at most kMaxTextBytes (InputError otherwise).
std::string read_text_bytes(const std::string& path);

// Reads `path` (UTF-8; InputError naming the byte offset of invalid bytes), tokenizes it with
// `checkpoint_dir`/tokenizer.json and lays the token stream out as rows; every id must be below
// `vocab` (the model's vocab_size; 0 skips the check).
TokenBatch read_text_file(const std::string& path, const std::string& checkpoint_dir, int vocab,
                          const TextOptions& options);

// The tokenizer of a checkpoint directory, or InputError naming the missing file.
models::Tokenizer load_checkpoint_tokenizer(const std::string& checkpoint_dir);

}  // namespace ess
