// ess report RESULTS.h5: per-layer summary tables.
#include <iostream>

#include "analysis/summary.h"
#include "libess/results_io.h"
#include "tools/ess/cli.h"

namespace ess::cli {

int run_report(int argc, char** argv) {
  po::options_description opts("options");
  std::string input;
  FormatOption format_option;
  opts.add_options()("results", po::value(&input), "results file (format ess-results)");
  format_option.add_to(opts);
  po::variables_map vm;
  if (!parse(argc, argv,
             "ess report RESULTS.h5 [--format text|json|markdown]\n\n"
             "Per layer: family, channels, mean and max tolerance-ESS and entropy-ESS, TSS,\n"
             "utilization (ESS / min(TSS_i, i, L−i), averaged), and totals over channels and layers.",
             opts, {"results"}, vm))
    return 0;
  const Format format = format_option.format();
  const ResultsFile file = read_results(input);
  const ResultsSummary summary = summarize(file);
  const auto& S = summary.layers;

  if (format == Format::json) {
    Json layers = Json::array();
    for (const auto& s : S) layers.push_back(to_json(s));
    print_json(
        std::cout,
        {{"file", input},
         {"source", file.provenance.source},
         {"input", file.provenance.input},
         {"layers", layers},
         {"model",
          {{"total_tolerance_ess", summary.total_tolerance_ess}, {"total_entropy_ess", summary.total_entropy_ess}}}});
    return 0;
  }

  const bool md = format == Format::markdown;
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
  Table table({{"layer"},
               {"family"},
               {"channels", Table::right},
               {"engine"},
               {"tolESS mean", Table::right},
               {"max", Table::right},
               {"entESS mean", Table::right},
               {"max", Table::right},
               {"TSS mean", Table::right},
               {"util", Table::right},
               {"total tolESS", Table::right}});
  for (const auto& s : S)
    table.add({s.name, s.family, std::to_string(s.channels) + (s.channel_kind == "head" ? " heads" : " ch"), s.engine,
               fmt(s.mean_tolerance_ess), fmt(s.max_tolerance_ess, 0), fmt(s.mean_entropy_ess), fmt(s.max_entropy_ess),
               fmt(s.mean_tss, 1), fmt(100 * s.utilization, 1) + "%", fmt(s.total_tolerance_ess, 1)});
  table.print(std::cout, format);
  std::cout << "\n"
            << (md ? "**Model total**" : "model total") << ": tolerance-ESS " << fmt(summary.total_tolerance_ess, 1)
            << ", entropy-ESS " << fmt(summary.total_entropy_ess, 1) << " (sum over layers of the per-channel means)\n";
  if (summary.interval_blocks)
    std::cout << "note: entropy-ESS of " << summary.interval_blocks
              << " block(s) comes from partial spectra (lanczos engine): the value is the midpoint of a certified "
                 "interval (widest "
              << fmt(100 * summary.max_interval_rel, 2)
              << "% of its upper end; entropy_ess_lower / entropy_ess_upper in the file)\n";
  if (summary.uncertified_blocks)
    std::cout << "warning: " << summary.uncertified_blocks
              << " block(s) could not be certified (lanczos: σ_k not below the threshold within the engine's limits); "
                 "they are excluded\n";
  if (summary.bad_blocks > summary.uncertified_blocks)
    std::cout << "warning: " << summary.bad_blocks - summary.uncertified_blocks
              << " block(s) did not converge or were non-finite; they are excluded\n";
  return 0;
}

ESS_REGISTER_COMMAND("report", "summary tables of a results file (text, json, markdown)", 40, run_report);

}  // namespace ess::cli
