#include "tools/ess/cli.h"

#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <iostream>
#include <sstream>

#include "analysis/diagnosis.h"
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

namespace {
std::vector<std::string> g_args;

std::string join_args(const std::string& skip) {
  std::string s;
  for (const std::string& a : g_args) {
    if (!skip.empty() && a == skip) continue;
    if (!s.empty()) s += ' ';
    bool quote = a.empty() || a.find_first_of(" \t\"'") != std::string::npos;
    s += quote ? "'" + a + "'" : a;
  }
  return s;
}
}  // namespace

void set_command_line(int argc, char** argv) {
  g_args.assign(argv, argv + argc);
  g_command_line = join_args("");
}

std::string command_line_without(const std::string& flag) { return join_args(flag); }

std::string run_fingerprint(const std::string& command, const po::variables_map& vm, const std::string& input_sha256) {
  nlohmann::json options = nlohmann::json::object();
  for (const auto& [name, value] : vm) {
    if (name == "output" || name == "quiet" || name == "threads" || name == "max-memory" || name == "resume" ||
        name == "help")
      continue;
    const boost::any& v = value.value();
    if (const auto* s = boost::any_cast<std::string>(&v))
      options[name] = *s;
    else if (const auto* i = boost::any_cast<int>(&v))
      options[name] = *i;
    else if (const auto* d = boost::any_cast<double>(&v))
      options[name] = *d;
    else if (const auto* b = boost::any_cast<bool>(&v))
      options[name] = *b;
    else if (const auto* u = boost::any_cast<unsigned>(&v))
      options[name] = *u;
    else if (const auto* l = boost::any_cast<std::vector<std::string>>(&v))
      options[name] = *l;
    else
      throw std::logic_error("run_fingerprint: option --" + name + " has a type the fingerprint does not know");
  }
  return nlohmann::json{
      {"command", command}, {"options", options}, {"input_sha256", input_sha256}, {"ess", ESS_VERSION}}
      .dump();
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

std::string flag_name(const std::string& option) {
  if (option == "states") return "--state";
  if (option == "default_seq_len") return "--seq-len";
  std::string flag = "--" + option;
  std::replace(flag.begin(), flag.end(), '_', '-');
  return flag;
}

// --- option groups -------------------------------------------------------------------------------

void OutputOption::add_to(po::options_description& opts, const char* what) {
  opts.add_options()("output,o", po::value(&path_)->required(), what);
}

void QuietOption::add_to(po::options_description& opts) {
  opts.add_options()("quiet,q", po::bool_switch(&quiet_), "no progress on stderr");
}

void FormatOption::add_to(po::options_description& opts) {
  opts.add_options()("format,f", po::value(&value_)->default_value("text"), "text, json or markdown");
}

Format FormatOption::format() const {
  if (value_ == "text") return Format::text;
  if (value_ == "json") return Format::json;
  if (value_ == "markdown") return Format::markdown;
  throw UsageError("unknown --format '" + value_ + "' (expected text, json or markdown)");
}

void EssOptionGroup::add_to(po::options_description& opts) {
  po::options_description group("ESS options");
  group.add_options()("tol", po::value(&o_.tol)->default_value(o_.tol), "tolerance τ for tolerance-ESS")(
      "tol-mode", po::value(&tol_mode_)->default_value(tol_mode_),
      "threshold mode: absolute (σ > τ), block (σ > τ·σ1(H_i)), layer (σ > τ·max σ1 of the layer)")(
      "engine", po::value(&engine_)->default_value(engine_),
      "auto, dense, structured, sweep or lanczos (matrix-free, long L at selected blocks)")(
      "indices", po::value(&o_.indices)->default_value(""),
      "blocks i to measure: start:stop:step or a list i,j,k (default all)")(
      "blocks", po::value(&o_.blocks)->default_value(0),
      "measure N evenly spaced interior blocks, i = round((j+1)·L/(N+1)) (instead of --indices)")(
      "at-tokens", po::value(&at_tokens_),
      "measure the blocks around every position holding one of these token ids, ID[,ID…] (with --window)")(
      "window", po::value(&window_), "with --at-tokens: blocks i with |i − p| ≤ W around each such position p (0)")(
      "keep-sigma", po::value(&o_.keep_sigma)->default_value(0), "store the top-K singular values per block")(
      "threads", po::value(&o_.threads)->default_value(0), "worker threads (0 = all cores)")(
      "sweep-rtol", po::value(&o_.sweep_rtol)->default_value(o_.sweep_rtol),
      "sweep engine: drop σ below this fraction of the running largest σ")(
      "students", po::value(&students_)->default_value(students_),
      "sparse students of attention heads (stored per layer): default (window=16,64,256,1024;sinks=4;"
      "topk=16,64;ess=auto), off, or settings such as 'window=16,64;sinks=4;topk=16;ess=all;families=all'");
  opts.add(group);
}

EssOptions EssOptionGroup::values() const {
  EssOptions o = o_;
  if (!at_tokens_.empty() && (!o.indices.empty() || o.blocks != 0))
    throw UsageError("give one of --indices, --blocks and --at-tokens");
  token_windows();  // checks --at-tokens and --window
  o.tol_mode = parse_tol_mode(tol_mode_);
  o.engine = parse_engine(engine_);
  o.students = parse_student_options(students_);
  o.validate();
  return o;
}

TokenWindows EssOptionGroup::token_windows() const {
  if (window_ != kNoWindow && at_tokens_.empty()) throw UsageError("--window goes with --at-tokens");
  if (window_ != kNoWindow && window_ < 0) throw UsageError("--window must be ≥ 0");
  TokenWindows at;
  if (at_tokens_.empty()) return at;
  at.ids = parse_token_ids(at_tokens_);
  at.window = window_ == kNoWindow ? 0 : window_;
  return at;
}

EssOptions EssOptionGroup::values(const models::Tokens& tokens) const {
  EssOptions o = values();
  const TokenWindows at = token_windows();
  if (!at.active()) return o;
  o.indices = indices_at_tokens(tokens, at);
  return o;
}

std::string EssOptionGroup::selection() const {
  if (!at_tokens_.empty())
    return "at-tokens=" + at_tokens_ + ";window=" + std::to_string(window_ == kNoWindow ? 0 : window_);
  if (o_.blocks > 0) return "blocks=" + std::to_string(o_.blocks);
  if (!o_.indices.empty()) return "indices=" + o_.indices;
  return "all";
}

void EssOptionGroup::refuse_at_tokens(const std::string& command, const std::string& why) const {
  if (!at_tokens_.empty()) throw UsageError("ess " + command + " has no --at-tokens: " + why);
}

namespace {
std::string shortest(double v) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%g", v);
  return buf;
}
}  // namespace

void DiagnosisOptionGroup::add_to(po::options_description& opts, const char* saturated_help,
                                  const char* collapsed_help) {
  const DiagnosisOptions defaults;
  metric_ = to_string(defaults.metric);
  basis_ = to_string(defaults.basis);
  saturated_ = defaults.saturated;
  collapsed_ = defaults.collapsed;
  opts.add_options()("metric", po::value(&metric_)->default_value(metric_), "tolerance or entropy")(
      "utilization", po::value(&basis_)->default_value(basis_),
      "state (ESS_i / TSS_i) or attainable (ESS_i / min(TSS_i, i, L−i))")(
      "saturated", po::value(&saturated_)->default_value(saturated_, shortest(saturated_)), saturated_help)(
      "collapsed", po::value(&collapsed_)->default_value(collapsed_, shortest(collapsed_)), collapsed_help);
}

DiagnosisOptions DiagnosisOptionGroup::values() const {
  DiagnosisOptions o;
  o.metric = parse_metric(metric_);
  o.basis = parse_utilization_basis(basis_);
  o.saturated = saturated_;
  o.collapsed = collapsed_;
  o.validate();
  return o;
}

// --- progress ------------------------------------------------------------------------------------

Progress::Progress(bool quiet) : enabled_(!quiet), terminal_(::isatty(2) != 0) {}
Progress::~Progress() { done(); }

void Progress::update(const std::string& text) {
  if (!enabled_ || !terminal_) return;
  std::fprintf(stderr, "\r\033[K%s", text.c_str());
  std::fflush(stderr);
  shown_ = true;
}

void Progress::done() {
  if (enabled_ && terminal_ && shown_) {
    std::fprintf(stderr, "\r\033[K");
    std::fflush(stderr);
  }
  shown_ = false;
}

ProgressFn Progress::layers() {
  if (!enabled_) return {};
  return [this](const MeasureProgress& p) {
    const std::string layer = "[layer " + std::to_string(p.layer + 1) + "/" + std::to_string(p.layers) + "] " + p.name;
    if (terminal_) {
      update(layer + ": " + std::to_string(p.done) + "/" + std::to_string(p.total) + " channels");
    } else if (p.done == p.total) {
      const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
      std::fprintf(stderr, "%s: %ld channels measured, %.1f s elapsed\n", layer.c_str(), p.total, s);
      std::fflush(stderr);
    }
  };
}

void SummarizingSink::add(LayerResult&& result) {
  entries_.push_back({summarize(result), result.seconds});
  next_.add(std::move(result));
}

// --- output ----------------------------------------------------------------------------------------

namespace {
// Display width: UTF-8 continuation bytes take no column.
size_t width_of(const std::string& s) {
  size_t w = 0;
  for (unsigned char c : s) w += (c & 0xC0) != 0x80;
  return w;
}
}  // namespace

void Table::add(std::vector<std::string> row) {
  row.resize(columns_.size());
  rows_.push_back(std::move(row));
}

void Table::print(std::ostream& out, bool markdown, const std::string& indent) const {
  const size_t n = columns_.size();
  if (markdown) {
    auto line = [&](const std::vector<std::string>& cells) {
      out << indent << "|";
      for (const auto& c : cells) out << " " << c << " |";
      out << "\n";
    };
    std::vector<std::string> headers;
    for (const auto& c : columns_) headers.push_back(c.markdown_header.empty() ? c.header : c.markdown_header);
    line(headers);
    out << indent << "|";
    for (const auto& c : columns_) out << (c.align == left ? " :-- |" : " --: |");
    out << "\n";
    for (const auto& r : rows_) line(r);
    return;
  }
  std::vector<size_t> width(n);
  for (size_t c = 0; c < n; ++c) {
    width[c] = width_of(columns_[c].header);
    for (const auto& r : rows_) width[c] = std::max(width[c], width_of(r[c]));
  }
  auto line = [&](const std::vector<std::string>& cells) {
    std::string s = indent;
    for (size_t c = 0; c < n; ++c) {
      if (c) s += "  ";
      const std::string pad(width[c] - width_of(cells[c]), ' ');
      s += columns_[c].align == left ? cells[c] + pad : pad + cells[c];
    }
    while (!s.empty() && s.back() == ' ') s.pop_back();
    out << s << "\n";
  };
  std::vector<std::string> headers;
  for (const auto& c : columns_) headers.push_back(c.header);
  line(headers);
  size_t total = 0;
  for (auto w : width) total += w + 2;
  out << indent << std::string(total - 2, '-') << "\n";
  for (const auto& r : rows_) line(r);
}

void print_json(std::ostream& out, const Json& document) {
  out << document.dump(2, ' ', false, Json::error_handler_t::replace) << "\n";
}

void MemoryOption::add_to(po::options_description& opts) {
  opts.add_options()("max-memory", po::value(&value_),
                     "memory this run may use, e.g. 8G or 500MB (default: the smallest of MemAvailable, the "
                     "cgroup limit and RLIMIT_AS)");
}

void MemoryOption::apply() const {
  if (!value_.empty()) set_memory_limit_override(parse_memory_size(value_, "--max-memory"));
}

std::vector<int> parse_size_list(const std::string& text, const std::string& flag, long max) {
  std::vector<int> out;
  std::stringstream in(text);
  std::string item;
  while (std::getline(in, item, ',')) {
    size_t used = 0;
    long v = 0;
    try {
      v = std::stol(item, &used);
    } catch (...) {
      used = 0;
    }
    if (item.empty() || used != item.size() || v <= 0 || v > max)
      throw UsageError("bad " + flag + " '" + text + "' (expected positive sizes up to " + std::to_string(max) +
                       ", e.g. 16,32,64)");
    out.push_back(static_cast<int>(v));
  }
  return out;
}

std::string fmt_sig(double v, int significant) {
  if (std::isnan(v)) return "nan";
  std::ostringstream o;
  o.precision(significant);
  o << v;
  return o.str();
}

std::string fmt_sci(double v, int digits, const std::string& nan_text) {
  if (std::isnan(v)) return nan_text;
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.*e", digits, v);
  return buf;
}

std::string fmt_cell(double v, int precision, const std::string& suffix) {
  return std::isnan(v) ? "—" : fmt(v, precision) + suffix;
}

std::string fmt(double v, int precision) {
  if (std::isnan(v)) return "nan";
  std::ostringstream o;
  o.setf(std::ios::fixed);
  o.precision(precision);
  o << v;
  return o.str();
}

}  // namespace ess::cli
