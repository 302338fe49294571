// libFuzzer harness: a .safetensors file (header parsing, offsets, dtype conversion).
#include <cstdint>

#include "libess/error.h"
#include "models/safetensors.h"
#include "tools/fuzz/fuzz_input.h"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  static ess::fuzz::MemoryFile file("safetensors");
  ess::fuzz::limit_memory();
  try {
    ess::st::SafetensorsFile f(file.write(data, size));
    for (const auto& name : f.names()) {
      try {
        const ess::Tensor t = f.read(name);
        (void)t;
      } catch (const ess::InputError&) {
      }
    }
  } catch (const ess::InputError&) {
  }
  return 0;
}
