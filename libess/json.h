// Bounded parsing of untrusted JSON (safetensors headers, model.safetensors.index.json,
// config.json, tokenizer.json). nlohmann's parser is iterative, but printing, copying, comparing
// and walking a parsed value recurse, so a document nested 100 000 deep would overflow the stack
// later; the limits below refuse it while it is parsed (docs/reliability.md).
#pragma once
#include <cstdint>
#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

namespace ess {

struct JsonLimits {
  // Largest accepted text. The parsed value takes up to ~20× the text in memory.
  std::uint64_t max_bytes = 64ULL << 20;
  // Deepest nesting of arrays/objects (the top-level value is depth 1). Real files nest < 10 deep.
  int max_depth = 64;
  // Most values (scalars, arrays and objects counted alike).
  std::uint64_t max_values = 20'000'000;
  // Refuse an object that repeats a key (at any depth) instead of keeping the last one.
  bool unique_keys = false;
  // Accept the bare literals Infinity, -Infinity and NaN outside strings (Python's json writes
  // them); they become ±infinity / quiet-NaN doubles.
  bool python_literals = false;
};

// Parses `text`, throwing ess::InputError "<what>: …" when it is not valid JSON, breaks a limit,
// or contains a NUL byte (nlohmann stops at a NUL and would ignore whatever follows it). Trailing
// JSON whitespace is allowed, nothing else after the value.
nlohmann::json parse_json(std::string_view text, const std::string& what, const JsonLimits& limits = {});

// Reads a regular file (never blocks on a FIFO or device; InputError otherwise) of at most
// limits.max_bytes and parses it. Messages name the file.
nlohmann::json read_json_file(const std::string& path, const JsonLimits& limits = {});

}  // namespace ess
