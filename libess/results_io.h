// Results file (format "ess-results", DESIGN §5): writer and validating reader.
#pragma once
#include <cstdint>
#include <limits>
#include <memory>
#include <string>
#include <vector>

#include "libess/compute.h"
#include "libess/hdf5.h"

namespace ess {

constexpr int kResultsFormatMajor = 1;
constexpr int kResultsFormatMinor = 1;  // 1.1: optional /model group (predictions)

struct Provenance {
  std::string source;         // operator file or checkpoint directory
  std::string source_sha256;  // of the operator file / of the checkpoint's weight files
  std::string input;          // description of the input (operator file, tokens file, mqar spec)
  std::string architecture;   // checkpoint architecture (analyze), empty otherwise
  double mqar_accuracy = -1;  // MQAR input: fraction of queries answered right; < 0 = not measured
  // How the blocks were chosen: "all", "indices=SPEC", "blocks=N", "at-tokens=ID[,ID…];window=W"
  // (root attribute block_selection; empty = not recorded).
  std::string block_selection;
};

// The model's own predictions on the input its operators were measured on (`ess analyze`; the
// /model group, docs/results-format.md). All arrays are [B, L] row-major.
struct Predictions {
  int batch = 0, seq_len = 0;           // B, L; batch 0 = no predictions (no /model group)
  int vocab_size = 0;                   // V (argmax < V)
  std::vector<std::int32_t> input_ids;  // the tokens the model was run on
  std::vector<std::int32_t> argmax;     // most likely next token at each position
  std::vector<double> logprobs;         // log p(input_ids[b][t+1] | input_ids[b][0..t]); NaN at t = L−1
  double loss = std::numeric_limits<double>::quiet_NaN();        // −mean(logprobs[:, :L−1]), nats/token
  double perplexity = std::numeric_limits<double>::quiet_NaN();  // exp(loss)
  bool present() const { return batch > 0; }
  size_t at(int b, int t) const { return static_cast<size_t>(b) * seq_len + t; }
  // Number of scored positions, B·(L−1).
  long scored() const { return static_cast<long>(batch) * (seq_len > 0 ? seq_len - 1 : 0); }
};

// loss = −mean over b and t < L−1 of logprobs[b][t], perplexity = exp(loss) (NaN when L = 1).
void set_loss(Predictions& p);

struct ResultsFile {
  std::string path, creator, created, command_line;
  Provenance provenance;
  std::vector<LayerResult> layers;
  Predictions predictions;  // present() only when the file has a /model group (format ≥ 1.1, analyze)
};

// Receives each layer's result as soon as it is measured (Pipeline::measure_all).
class ResultSink {
 public:
  virtual ~ResultSink() = default;
  virtual void add(LayerResult&& result) = 0;
};

// Streams a results file: built in memory (h5::OutputFile), each layer written to /layers/<name>
// when it is added (so the caller may free the LayerResult), and put in place by commit() through
// a temporary sibling file renamed over `path` (ess::write_file_atomically: never over an input,
// removed on failure or SIGINT/SIGTERM/SIGHUP). Destroyed without commit() (an error, an
// interruption) it writes nothing: there is never a half-written results file at `path`. Throws
// InputError when the file cannot be created or written (disk full: exit 3).
class ResultsWriter final : public ResultSink {
 public:
  // deflate: compression of the large datasets (h5::kDefaultDeflate; 0 for none, e.g. a scratch file).
  ResultsWriter(const std::string& path, const std::string& command_line, int deflate = h5::kDefaultDeflate);
  ~ResultsWriter() override;
  ResultsWriter(const ResultsWriter&) = delete;
  ResultsWriter& operator=(const ResultsWriter&) = delete;
  void add(LayerResult&& result) override { write(result); }
  // Writes one layer (throws std::invalid_argument when its arrays have inconsistent sizes).
  void write(const LayerResult& result);
  // The /model group (the model's predictions; once, before commit). std::invalid_argument when
  // the arrays' sizes disagree with batch × seq_len.
  void write_predictions(const Predictions& predictions);
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
                   const std::string& command_line, int deflate = h5::kDefaultDeflate);

// Reads and validates a results file; optional datasets absent from the file are left empty
// (frobenius, error_bound, status, sigma, sigma_tail; predictions when there is no /model group).
// Throws InputError naming file and layer (or dataset of /model).
ResultsFile read_results(const std::string& path);

}  // namespace ess
