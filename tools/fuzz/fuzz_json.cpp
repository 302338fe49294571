// libFuzzer harness: ess::parse_json (every untrusted JSON: safetensors headers, index files,
// config.json, tokenizer.json) under each option, and printing the parsed value back (the
// printing recursion is what a deep document used to overflow).
#include <cstdint>
#include <string_view>

#include "libess/error.h"
#include "libess/json.h"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size == 0) return 0;
  // First byte: options; the rest: the text.
  ess::JsonLimits limits;
  limits.unique_keys = data[0] & 1;
  limits.python_literals = data[0] & 2;
  limits.max_depth = 1 + (data[0] >> 2) % 64;
  const std::string_view text(reinterpret_cast<const char*>(data + 1), size - 1);
  try {
    const nlohmann::json j = ess::parse_json(text, "fuzz.json", limits);
    (void)j.dump();
    const nlohmann::json copy = j;
    if (!(copy == j) && !j.is_discarded() && text.find("NaN") == std::string_view::npos) __builtin_trap();
  } catch (const ess::InputError&) {
  }
  return 0;
}
