// libFuzzer harness: a tokens file (one sequence of ids per line) for a vocabulary of 100.
#include <cstdint>

#include "libess/error.h"
#include "models/tokens.h"
#include "tools/fuzz/fuzz_input.h"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  static ess::fuzz::MemoryFile file("tokens");
  ess::fuzz::limit_memory();
  try {
    const ess::TokenBatch b = ess::read_tokens_file(file.write(data, size), 100);
    for (const auto& seq : b.tokens)
      for (int t : seq)
        if (t < 0 || t >= 100 || seq.size() != b.tokens[0].size()) __builtin_trap();
  } catch (const ess::InputError&) {
  }
  return 0;
}
