// libFuzzer harness: an operator file (HDF5 read from memory: a memfd), every family's reader and
// validation, then the ESS of each small layer with the engine `auto` picks and with dense SVDs.
#include <cstdint>

#include "libess/compute.h"
#include "libess/error.h"
#include "operators/registry.h"
#include "tools/fuzz/fuzz_input.h"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  static ess::fuzz::MemoryFile file("operators");
  ess::fuzz::limit_memory();
  try {
    const auto layers = ess::read_operator_file(file.write(data, size));
    for (const auto& layer : layers) {
      const auto& op = *layer.op;
      // Keep each input fast: the readers are what is fuzzed, the engines have their own tests.
      if (op.seq_len() > 64 || static_cast<long>(op.batch()) * op.channels() > 8 || op.realization_dim() > 64) continue;
      ess::EssOptions o;
      o.threads = 1;
      for (ess::EngineKind e : {ess::EngineKind::automatic, ess::EngineKind::dense}) {
        o.engine = e;
        const ess::LayerResult R = ess::compute_layer(layer, o);
        if (R.tolerance_ess.size() != static_cast<size_t>(R.batch) * R.channels * R.indices.size()) __builtin_trap();
      }
    }
  } catch (const ess::Error&) {
  }
  return 0;
}
