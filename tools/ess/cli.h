// Shared pieces of the ess command-line tool: option parsing, progress, output checks.
#pragma once
#include <boost/program_options.hpp>
#include <functional>
#include <string>
#include <vector>

#include "libess/output_path.h"

namespace ess::cli {

namespace po = boost::program_options;

// The full command line as typed (recorded in every output file).
const std::string& command_line();
void set_command_line(int argc, char** argv);

// Parses argv (argv[0] = subcommand name) with `options` and positional `positional` names.
// Returns false when --help was given (help already printed to stdout). Throws UsageError.
bool parse(int argc, char** argv, const std::string& usage, po::options_description& options,
           const std::vector<std::string>& positional, po::variables_map& vm);

using ess::check_output_path;  // fails fast (InputError) when an output file cannot be created

// A one-line progress indicator on stderr, shown only on a terminal and without --quiet.
class Progress {
 public:
  Progress(bool quiet);
  ~Progress();
  void update(const std::string& text);
  void done();
  bool enabled() const { return enabled_; }

 private:
  bool enabled_;
  bool shown_ = false;
};

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

// --max-memory SIZE (docs/reliability.md): replaces the detected memory limit (MemAvailable,
// cgroup, rlimits) that inputs and work are checked against. apply_memory_option parses the value
// (UsageError on a bad size) and sets ess::set_memory_limit_override; "" leaves the limit alone.
void add_memory_option(po::options_description& opts, std::string& value);
void apply_memory_option(const std::string& value);

// Throws UsageError unless --format is text, json or markdown.
void check_report_format(const std::string& format);

// Formatting helpers.
std::string fmt(double v, int precision = 2);
std::string json_escape(const std::string& s);

}  // namespace ess::cli
