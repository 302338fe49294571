// libFuzzer harness: tokenizer.json and --text input. The first byte picks the mode:
//  - even: the rest is a tokenizer.json (ess::models::Tokenizer::from_json_text); one that parses
//    encodes a fixed sample text, every id below the tokenizer's size;
//  - odd: the rest is a text file, split into documents and encoded with the shipped tiny
//    SentencePiece-style tokenizer (data/tokenizers/tiny-sp) as `ess analyze --text` does.
#include <cstdint>
#include <string>
#include <string_view>

#include "libess/error.h"
#include "models/text_input.h"
#include "models/tokenizer.h"
#include "tools/fuzz/fuzz_input.h"

namespace {

void check_ids(const std::vector<int>& ids, int size) {
  for (int id : ids)
    if (id < 0 || id >= size) __builtin_trap();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size == 0) return 0;
  ess::fuzz::limit_memory();
  const std::string_view rest(reinterpret_cast<const char*>(data + 1), size - 1);
  try {
    if (data[0] % 2 == 0) {
      const auto tok = ess::models::Tokenizer::from_json_text(std::string(rest), "tokenizer.json");
      check_ids(tok.encode("Hello, world! Once upon a time\n\t 123 ünïcödé ✓"), tok.size());
      (void)tok.summary();
    } else {
      static const auto tok =
          ess::models::Tokenizer::from_file(std::string(ESS_SOURCE_DIR) + "/data/tokenizers/tiny-sp/tokenizer.json");
      if (ess::models::invalid_utf8_offset(rest) != std::string_view::npos) return 0;  // refused by read_text_file
      for (std::string_view doc : ess::split_documents(rest)) check_ids(tok.encode(doc), tok.size());
    }
  } catch (const ess::Error&) {
  }
  return 0;
}
