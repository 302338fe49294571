// Results file (format "ess-results", DESIGN §5): writer and validating reader.
#pragma once
#include <memory>
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
  double mqar_accuracy = -1;  // MQAR input: fraction of queries answered right; < 0 = not measured
};

struct ResultsFile {
  std::string path, creator, created, command_line;
  Provenance provenance;
  std::vector<LayerResult> layers;
};

// Receives each layer's result as soon as it is measured (Pipeline::measure_all).
class ResultSink {
 public:
  virtual ~ResultSink() = default;
  virtual void add(LayerResult&& result) = 0;
};

namespace h5 {
class OutputFile;
}

// Streams a results file: built in memory (h5::OutputFile), each layer written to /layers/<name>
// when it is added (so the caller may free the LayerResult), and put in place by commit() through
// a temporary sibling file renamed over `path` (ess::write_file_atomically: never over an input,
// removed on failure or SIGINT/SIGTERM/SIGHUP). Destroyed without commit() (an error, an
// interruption) it writes nothing: there is never a half-written results file at `path`. Throws
// InputError when the file cannot be created or written (disk full: exit 3).
class ResultsWriter final : public ResultSink {
 public:
  ResultsWriter(const std::string& path, const std::string& command_line);
  ~ResultsWriter() override;
  ResultsWriter(const ResultsWriter&) = delete;
  ResultsWriter& operator=(const ResultsWriter&) = delete;
  void add(LayerResult&& result) override { write(result); }
  // Writes one layer (throws std::invalid_argument when its arrays have inconsistent sizes).
  void write(const LayerResult& result);
  // Root attributes (format, creator, created, command line, provenance), then rename into place.
  void commit(const Provenance& provenance);
  int layers_written() const { return layers_; }
  const std::string& path() const { return path_; }

 private:
  std::string path_, command_line_;
  std::unique_ptr<h5::OutputFile> out_;
  int layers_ = 0;
};

// The whole file in one call (a ResultsWriter fed every layer, then committed).
void write_results(const std::string& path, const std::vector<LayerResult>& layers, const Provenance& provenance,
                   const std::string& command_line);

// Reads and validates a results file; optional datasets absent from the file are left empty
// (frobenius, error_bound, status, sigma, sigma_tail). Throws InputError naming file and layer.
ResultsFile read_results(const std::string& path);

}  // namespace ess
