// Hugging Face tokenizer.json (the `tokenizers` library's serialization) for BPE models: byte-level
// BPE (GPT-2, GPT-NeoX/Pythia, Llama-3, Qwen2/3) and SentencePiece-style BPE with byte fallback
// (Llama-2, Mistral, TinyStories). Written from the format's documentation and the library's
// behaviour; docs/checkpoints.md lists the supported components.
#pragma once
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json_fwd.hpp>

namespace ess::models {

class Tokenizer {
 public:
  // Parses tokenizer.json. InputError naming the file and the component it cannot handle (an
  // unknown model type, normalizer, pre-tokenizer or post-processor, a merge outside the vocabulary).
  static Tokenizer from_file(const std::string& tokenizer_json);
  static Tokenizer from_json_text(const std::string& json_text, const std::string& name);
  // From a parsed tokenizer.json (`name` in messages).
  static Tokenizer from_json(const nlohmann::json& j, const std::string& name);
  Tokenizer(Tokenizer&&) noexcept;
  Tokenizer& operator=(Tokenizer&&) noexcept;
  ~Tokenizer();

  // Token ids of `text` (valid UTF-8; see invalid_utf8_offset) as the `tokenizers` library gives
  // them without special tokens: added tokens are matched first (those with normalized=false on the
  // raw text, the others on the normalized text, leftmost-longest), the rest is normalized,
  // pre-tokenized and split by the BPE model.
  std::vector<int> encode(std::string_view text) const;

  // What the tokenizer.json post-processor puts around one sequence (TemplateProcessing's `single`,
  // RobertaProcessing / BertProcessing's cls … sep; nothing for ByteLevel or no post-processor).
  struct Template {
    std::vector<int> prefix, suffix;
  };
  const Template& single_template() const;

  // Id of a token string: added tokens first, then the model's vocabulary.
  std::optional<int> token_to_id(const std::string& token) const;
  std::string id_to_token(int id) const;  // "" when unknown
  int size() const;                       // largest id + 1 (vocabulary and added tokens)
  // One line for `ess inspect`: "BPE, 50257 tokens, byte-level; normalizer NFC; …".
  std::string summary() const;

 private:
  struct Impl;
  explicit Tokenizer(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

// Byte offset of the first byte that is not part of valid UTF-8 (overlong forms, surrogates and
// code points above U+10FFFF are invalid), or std::string_view::npos when all of `s` is valid.
size_t invalid_utf8_offset(std::string_view s);

}  // namespace ess::models
