// ess report RESULTS.h5: per-layer summary tables.
#include <iomanip>
#include <iostream>
#include <sstream>

#include "analysis/summary.h"
#include "libess/error.h"
#include "libess/results_io.h"
#include "tools/ess/cli.h"

namespace ess::cli {

namespace {

struct Column {
  std::string header;
  bool left;
};

void print_table(std::ostream& out, const std::vector<Column>& cols, const std::vector<std::vector<std::string>>& rows,
                 bool markdown) {
  std::vector<size_t> width(cols.size());
  for (size_t c = 0; c < cols.size(); ++c) {
    width[c] = cols[c].header.size();
    for (const auto& r : rows) width[c] = std::max(width[c], r[c].size());
  }
  auto line = [&](const std::vector<std::string>& cells) {
    if (markdown) out << "| ";
    for (size_t c = 0; c < cols.size(); ++c) {
      if (c) out << (markdown ? " | " : "  ");
      out << (cols[c].left ? std::left : std::right) << std::setw(static_cast<int>(width[c])) << cells[c];
    }
    out << (markdown ? " |" : "") << "\n";
  };
  std::vector<std::string> headers;
  for (const auto& c : cols) headers.push_back(c.header);
  line(headers);
  if (markdown) {
    out << "|";
    for (size_t c = 0; c < cols.size(); ++c)
      out << (cols[c].left ? " :" : " ") << std::string(width[c] - 1, '-') << (cols[c].left ? "" : ":") << " |";
    out << "\n";
  } else {
    size_t total = 0;
    for (auto w : width) total += w + 2;
    out << std::string(total - 2, '-') << "\n";
  }
  for (const auto& r : rows) line(r);
}

}  // namespace

int run_report(int argc, char** argv) {
  po::options_description opts("options");
  std::string input, format;
  opts.add_options()("results", po::value(&input), "results file (format ess-results)")(
      "format,f", po::value(&format)->default_value("text"), "text, json or markdown");
  po::variables_map vm;
  if (!parse(argc, argv,
             "ess report RESULTS.h5 [--format text|json|markdown]\n\n"
             "Per layer: family, channels, mean and max tolerance-ESS and entropy-ESS, TSS,\n"
             "utilization (ESS / min(TSS_i, i, L−i), averaged), and totals over channels and layers.",
             opts, {"results"}, vm))
    return 0;
  check_report_format(format);
  const ResultsFile file = read_results(input);
  std::vector<LayerSummary> S;
  double model_total_tol = 0, model_total_ent = 0;
  for (const auto& R : file.layers) {
    S.push_back(summarize(R));
    model_total_tol += S.back().total_tolerance_ess;
    model_total_ent += S.back().total_entropy_ess;
  }

  if (format == "json") {
    std::ostringstream o;
    o << "{\n  \"file\": " << json_escape(input) << ",\n  \"source\": " << json_escape(file.provenance.source)
      << ",\n  \"input\": " << json_escape(file.provenance.input) << ",\n  \"layers\": [";
    for (size_t k = 0; k < S.size(); ++k) {
      const auto& s = S[k];
      auto num = [](double v) { return std::isnan(v) ? std::string("null") : fmt(v, 6); };
      o << (k ? "," : "") << "\n    {\"name\": " << json_escape(s.name) << ", \"layer_index\": " << s.layer_index
        << ", \"family\": " << json_escape(s.family) << ", \"channel_kind\": " << json_escape(s.channel_kind)
        << ", \"batch\": " << s.batch << ", \"channels\": " << s.channels << ", \"seq_len\": " << s.seq_len
        << ", \"blocks\": " << s.blocks << ", \"engine\": " << json_escape(s.engine) << ", \"tol\": " << s.tol
        << ", \"tol_mode\": " << json_escape(s.tol_mode) << ", \"mean_tolerance_ess\": " << num(s.mean_tolerance_ess)
        << ", \"max_tolerance_ess\": " << num(s.max_tolerance_ess)
        << ", \"total_tolerance_ess\": " << num(s.total_tolerance_ess)
        << ", \"mean_entropy_ess\": " << num(s.mean_entropy_ess) << ", \"max_entropy_ess\": " << num(s.max_entropy_ess)
        << ", \"total_entropy_ess\": " << num(s.total_entropy_ess) << ", \"mean_tss\": " << num(s.mean_tss)
        << ", \"max_tss\": " << num(s.max_tss) << ", \"utilization\": " << num(s.utilization)
        << ", \"entropy_utilization\": " << num(s.entropy_utilization) << ", \"bad_blocks\": " << s.bad_blocks << "}";
    }
    o << "\n  ],\n  \"model\": {\"total_tolerance_ess\": " << fmt(model_total_tol, 6)
      << ", \"total_entropy_ess\": " << fmt(model_total_ent, 6) << "}\n}\n";
    std::cout << o.str();
    return 0;
  }

  const bool md = format == "markdown";
  if (md)
    std::cout << "## ESS report: `" << input << "`\n\n";
  else
    std::cout << "ESS report: " << input << "\n";
  std::cout << (md ? "Source: `" : "source: ") << file.provenance.source << (md ? "`" : "") << "  ("
            << file.provenance.input << ")\n";
  if (!S.empty())
    std::cout << (md ? "Threshold: " : "threshold: ") << S[0].tol_mode << " τ = " << S[0].tol
              << "; L = " << S[0].seq_len << ", " << S[0].blocks << " block(s) per channel\n";
  std::cout << "\n";
  std::vector<Column> cols = {{"layer", true},        {"family", true}, {"channels", false},    {"engine", true},
                              {"tolESS mean", false}, {"max", false},   {"entESS mean", false}, {"max", false},
                              {"TSS mean", false},    {"util", false},  {"total tolESS", false}};
  std::vector<std::vector<std::string>> rows;
  for (const auto& s : S) {
    rows.push_back({s.name, s.family, std::to_string(s.channels) + (s.channel_kind == "head" ? " heads" : " ch"),
                    s.engine, fmt(s.mean_tolerance_ess), fmt(s.max_tolerance_ess, 0), fmt(s.mean_entropy_ess),
                    fmt(s.max_entropy_ess), fmt(s.mean_tss, 1), fmt(100 * s.utilization, 1) + "%",
                    fmt(s.total_tolerance_ess, 1)});
  }
  print_table(std::cout, cols, rows, md);
  std::cout << "\n"
            << (md ? "**Model total**" : "model total") << ": tolerance-ESS " << fmt(model_total_tol, 1)
            << ", entropy-ESS " << fmt(model_total_ent, 1) << " (sum over layers of the per-channel means)\n";
  long bad = 0;
  for (const auto& s : S) bad += s.bad_blocks;
  if (bad) std::cout << "warning: " << bad << " block(s) did not converge or were non-finite; they are excluded\n";
  return 0;
}

ESS_REGISTER_COMMAND("report", "summary tables of a results file (text, json, markdown)", 40, run_report);

}  // namespace ess::cli
