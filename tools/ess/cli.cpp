#include "tools/ess/cli.h"

#include <unistd.h>

#include <cmath>
#include <cstdio>
#include <filesystem>
#include <iostream>
#include <sstream>

#include "libess/error.h"
#include "libess/memory.h"

namespace ess::cli {

namespace {
std::string g_command_line;
}

const std::string& command_line() { return g_command_line; }

std::vector<Command>& command_registry() {
  static std::vector<Command> registry;
  return registry;
}

void set_command_line(int argc, char** argv) {
  std::string s;
  for (int k = 0; k < argc; ++k) {
    if (k) s += ' ';
    std::string a = argv[k];
    bool quote = a.empty() || a.find_first_of(" \t\"'") != std::string::npos;
    s += quote ? "'" + a + "'" : a;
  }
  g_command_line = s;
}

bool parse(int argc, char** argv, const std::string& usage, po::options_description& options,
           const std::vector<std::string>& positional, po::variables_map& vm) {
  options.add_options()("help,h", "show this help");
  po::positional_options_description pos;
  for (const auto& p : positional) pos.add(p.c_str(), 1);
  try {
    po::store(po::command_line_parser(argc, argv).options(options).positional(pos).run(), vm);
    if (vm.count("help")) {
      std::cout << usage << "\n\n" << options << "\n";
      return false;
    }
    po::notify(vm);
  } catch (const po::error& e) {
    throw UsageError(std::string(e.what()) + "\nusage: " + usage.substr(0, usage.find('\n')) + "\n(see --help)");
  }
  for (const auto& p : positional)
    if (!vm.count(p)) throw UsageError("missing argument <" + p + ">\nusage: " + usage.substr(0, usage.find('\n')));
  return true;
}

Progress::Progress(bool quiet) : enabled_(!quiet && ::isatty(2)) {}
Progress::~Progress() { done(); }

void Progress::update(const std::string& text) {
  if (!enabled_) return;
  std::fprintf(stderr, "\r\033[K%s", text.c_str());
  std::fflush(stderr);
  shown_ = true;
}

void Progress::done() {
  if (enabled_ && shown_) {
    std::fprintf(stderr, "\r\033[K");
    std::fflush(stderr);
  }
  shown_ = false;
}

void add_memory_option(po::options_description& opts, std::string& value) {
  opts.add_options()("max-memory", po::value(&value),
                     "memory this run may use, e.g. 8G or 500MB (default: the smaller of MemAvailable, the cgroup "
                     "limit and RLIMIT_AS)");
}

void apply_memory_option(const std::string& value) {
  if (!value.empty()) set_memory_limit_override(parse_memory_size(value, "--max-memory"));
}

void check_report_format(const std::string& format) {
  if (format != "text" && format != "json" && format != "markdown")
    throw UsageError("unknown --format '" + format + "' (expected text, json or markdown)");
}

std::string fmt(double v, int precision) {
  if (std::isnan(v)) return "nan";
  std::ostringstream o;
  o.setf(std::ios::fixed);
  o.precision(precision);
  o << v;
  return o.str();
}

std::string json_escape(const std::string& s) {
  std::string o = "\"";
  for (char c : s) {
    switch (c) {
      case '"':
        o += "\\\"";
        break;
      case '\\':
        o += "\\\\";
        break;
      case '\n':
        o += "\\n";
        break;
      case '\t':
        o += "\\t";
        break;
      default:
        if (static_cast<unsigned char>(c) < 0x20) {
          char buf[8];
          std::snprintf(buf, sizeof buf, "\\u%04x", c);
          o += buf;
        } else {
          o += c;
        }
    }
  }
  return o + "\"";
}

}  // namespace ess::cli
