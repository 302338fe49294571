// Results file (format "ess-results", DESIGN §5): writer and validating reader.
#pragma once
#include <string>
#include <vector>

#include "libess/compute.h"

namespace ess {

constexpr int kResultsFormatMajor = 1;
constexpr int kResultsFormatMinor = 0;

struct Provenance {
  std::string source;         // operator file or checkpoint directory
  std::string source_sha256;  // of the operator file / of the checkpoint's weight files
  std::string input;          // description of the input (operator file, tokens file, mqar spec)
  std::string architecture;   // checkpoint architecture (analyze), empty otherwise
  double mqar_accuracy = -1;  // analyze --mqar: fraction of queries answered right; < 0 = not measured
};

struct ResultsFile {
  std::string path, creator, created, command_line;
  Provenance provenance;
  std::vector<LayerResult> layers;
};

// Writes atomically (temporary file renamed into place).
void write_results(const std::string& path, const std::vector<LayerResult>& layers, const Provenance& provenance,
                   const std::string& command_line);

// Reads and validates a results file; optional datasets absent from the file are left empty
// (frobenius, error_bound, status, sigma, sigma_tail). Throws InputError naming file and layer.
ResultsFile read_results(const std::string& path);

}  // namespace ess
