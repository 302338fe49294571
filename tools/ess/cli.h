// Shared pieces of the ess command-line tool: option parsing and shared option groups, progress,
// the one table renderer (text and markdown) and the one JSON printer.
#pragma once
#include <boost/program_options.hpp>
#include <chrono>
#include <iosfwd>
#include <limits>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "analysis/summary.h"
#include "libess/compute.h"
#include "libess/output_path.h"
#include "libess/pipeline.h"
#include "models/tokens.h"

namespace ess {
struct DiagnosisOptions;
}

namespace ess::cli {

namespace po = boost::program_options;

// The full command line as typed (recorded in every output file).
const std::string& command_line();
void set_command_line(int argc, char** argv);

// The same without the argument `flag` (a switch such as "--resume" that does not change results).
std::string command_line_without(const std::string& flag);

// The fingerprint of a resumable run (libess/resume.h) as JSON text: the command, the value of
// every option given or defaulted except those that cannot change the results (output, quiet,
// threads, max-memory, resume, help), and `input_sha256`, a digest of the input's content.
std::string run_fingerprint(const std::string& command, const po::variables_map& vm, const std::string& input_sha256);

// Parses argv (argv[0] = subcommand name) with `options` and positional `positional` names.
// Returns false when --help was given (help already printed to stdout). Throws UsageError.
bool parse(int argc, char** argv, const std::string& usage, po::options_description& options,
           const std::vector<std::string>& positional, po::variables_map& vm);

// The flag that sets a library option named in an error (libess/error.h): "keep_sigma" →
// "--keep-sigma", "states" → "--state", "default_seq_len" → "--seq-len".
std::string flag_name(const std::string& option);

// --- shared option groups (add_to registers the options; read the values after parse) ---------

// -o/--output FILE (required); check() fails fast (InputError) when it cannot be written.
class OutputOption {
 public:
  void add_to(po::options_description& opts, const char* what);
  const std::string& path() const { return path_; }
  // Also refuses an output that is one of `inputs` or a file this process opened as an input.
  void check(const std::vector<std::string>& inputs = {}) const { check_output_path(path_, inputs); }

 private:
  std::string path_;
};

// -q/--quiet: no progress on stderr.
class QuietOption {
 public:
  void add_to(po::options_description& opts);
  bool quiet() const { return quiet_; }

 private:
  bool quiet_ = false;
};

enum class Format { text, json, markdown };

// -f/--format text|json|markdown (report, diagnose, compress).
class FormatOption {
 public:
  void add_to(po::options_description& opts);
  Format format() const;  // throws UsageError for an unknown format

 private:
  std::string value_ = "text";
};

// The ESS options of compute, analyze and study: --tol, --tol-mode, --engine, the block selection
// (--indices, --blocks, --at-tokens with --window), --keep-sigma, --threads, --sweep-rtol,
// --students (fields of EssOptions).
class EssOptionGroup {
 public:
  void add_to(po::options_description& opts);  // as a titled group in --help
  // Validated; UsageError names the flag. --at-tokens is not resolved here (it needs the input
  // tokens: values(tokens)); indices stays as given.
  EssOptions values() const;
  // The same with --at-tokens resolved against the input (an explicit index list); UsageError
  // when none of the ids occurs in the input.
  EssOptions values(const models::Tokens& tokens) const;
  TokenWindows token_windows() const;  // --at-tokens and --window (inactive when not given)
  // How the blocks were chosen, as stored in the results file's `block_selection` attribute:
  // "all", "indices=SPEC", "blocks=N" or "at-tokens=ID[,ID…];window=W".
  std::string selection() const;
  // UsageError for --at-tokens on a command whose input has no tokens (`command`, `why`).
  void refuse_at_tokens(const std::string& command, const std::string& why) const;

 private:
  EssOptions o_;
  std::string tol_mode_ = "absolute", engine_ = "auto", students_ = "default", at_tokens_;
  static constexpr int kNoWindow = std::numeric_limits<int>::min();
  int window_ = kNoWindow;
};

// --metric, --saturated, --collapsed (diagnose, plot; fields of DiagnosisOptions).
class DiagnosisOptionGroup {
 public:
  void add_to(po::options_description& opts, const char* saturated_help, const char* collapsed_help);
  DiagnosisOptions values() const;  // validated

 private:
  // Defaults: DiagnosisOptions' (set by add_to).
  std::string metric_, basis_;
  double saturated_ = 0, collapsed_ = 0;
};

// --max-memory SIZE (docs/reliability.md): replaces the detected memory limit (MemAvailable, the
// cgroup limit, rlimits) that inputs and work are checked against (ess::check_memory). apply()
// parses the value (UsageError on a bad size) and sets ess::set_memory_limit_override; without
// the option the limit is left alone.
class MemoryOption {
 public:
  void add_to(po::options_description& opts);
  void apply() const;

 private:
  std::string value_;
};

// --- progress ------------------------------------------------------------------------------------

// Progress on stderr, never with --quiet. On a terminal: one line rewritten in place. Otherwise
// (a batch job's log file, a pipe): update() shows nothing, and layers() writes one line per layer
// when its last channel is done, with the seconds since the Progress was made, so that a long run
// under Slurm or nohup says where it is.
class Progress {
 public:
  explicit Progress(bool quiet);
  ~Progress();
  void update(const std::string& text);
  void done();
  // A pipeline callback: "[layer k/n] name: done/total channels" (terminal), or once per layer
  // "[layer k/n] name: total channels measured, T s elapsed" (log).
  ProgressFn layers();

 private:
  bool enabled_;   // not quiet
  bool terminal_;  // stderr is a terminal
  bool shown_ = false;
  std::chrono::steady_clock::time_point start_ = std::chrono::steady_clock::now();
};

// Passes each result on to `next` (e.g. a ResultsWriter), keeping its summary for the report the
// command prints at the end.
class SummarizingSink final : public ResultSink {
 public:
  explicit SummarizingSink(ResultSink& next) : next_(next) {}
  void add(LayerResult&& result) override;
  struct Entry {
    LayerSummary summary;
    double seconds = 0;
  };
  const std::vector<Entry>& entries() const { return entries_; }

 private:
  ResultSink& next_;
  std::vector<Entry> entries_;
};

// --- output ------------------------------------------------------------------------------------

// One renderer for every table: text (columns padded and separated by two spaces, a rule under
// the header) or markdown (a pipe table).
class Table {
 public:
  enum Align { left, right };
  struct Column {
    std::string header;
    Align align = left;
    std::string markdown_header = "";  // when the markdown header differs (e.g. no abbreviation)
  };
  explicit Table(std::vector<Column> columns) : columns_(std::move(columns)) {}
  void add(std::vector<std::string> row);
  void print(std::ostream& out, bool markdown, const std::string& indent = "") const;
  void print(std::ostream& out, Format format, const std::string& indent = "") const {
    print(out, format == Format::markdown, indent);
  }

 private:
  std::vector<Column> columns_;
  std::vector<std::vector<std::string>> rows_;
};

// Every --format json / --json document is an nlohmann::ordered_json value (keys in the
// documented order) printed by print_json: numbers as nlohmann::json writes them (integers as
// integers; floating-point values as the shortest decimal that reads back to the same double;
// NaN and ±Inf as null), two-space indentation (docs/analysis.md, "JSON output").
using Json = nlohmann::ordered_json;
void print_json(std::ostream& out, const Json& document);

// Subcommands register themselves (one .cpp per command) with ESS_REGISTER_COMMAND; `order`
// sorts the help listing.
struct Command {
  const char* name;
  const char* summary;
  int order;
  int (*run)(int argc, char** argv);
};
std::vector<Command>& command_registry();
struct CommandRegistrar {
  CommandRegistrar(const char* name, const char* summary, int order, int (*run)(int, char**)) {
    command_registry().push_back({name, summary, order, run});
  }
};
#define ESS_REGISTER_COMMAND(name, summary, order, fn) \
  static ::ess::cli::CommandRegistrar ess_register_##fn(name, summary, order, fn)

// "16,32,64" → {16, 32, 64} for a size-list option (`flag` as the user writes it): every item an
// integer in 1..max, else UsageError naming the flag and the value. Empty text → empty list.
std::vector<int> parse_size_list(const std::string& text, const std::string& flag, long max);

// Fixed-point text of v ("nan" for NaN), for tables and messages.
std::string fmt(double v, int precision = 2);
// A table cell: fmt(v) followed by `suffix`, or "—" where there is no value (NaN: a layer without a
// usable block has no mean).
std::string fmt_cell(double v, int precision, const std::string& suffix = "");
// v in exponent notation with `digits` after the point (1.23e-04); `nan_text` for NaN.
std::string fmt_sci(double v, int digits, const std::string& nan_text = "nan");
// v with `significant` digits, switching to exponent notation for large or small values (%g):
// perplexities of random-weight models reach 1e200.
std::string fmt_sig(double v, int significant = 6);

}  // namespace ess::cli
