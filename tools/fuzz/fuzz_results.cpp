// libFuzzer harness: a results file (HDF5 read from memory: a memfd), then the summaries and
// diagnoses that report/diagnose/plot build from it.
#include <cstdint>

#include "analysis/diagnosis.h"
#include "analysis/summary.h"
#include "libess/error.h"
#include "libess/results_io.h"
#include "tools/fuzz/fuzz_input.h"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  static ess::fuzz::MemoryFile file("results");
  ess::fuzz::limit_memory();
  try {
    const ess::ResultsFile f = ess::read_results(file.write(data, size));
    for (const auto& R : f.layers) {
      (void)ess::summarize(R);
      (void)ess::diagnose_layer(R, ess::DiagnosisOptions{});
    }
  } catch (const ess::Error&) {
  }
  return 0;
}
