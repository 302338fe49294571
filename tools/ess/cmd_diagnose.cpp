// ess diagnose RESULTS.h5: saturation / collapse per layer and channel.
#include <iostream>

#include "analysis/diagnosis.h"
#include "tools/ess/cli.h"

namespace ess::cli {

int run_diagnose(int argc, char** argv) {
  po::options_description opts("options");
  std::string input;
  DiagnosisOptionGroup diagnosis_options;
  FormatOption format_option;
  opts.add_options()("results", po::value(&input), "results file (format ess-results)");
  diagnosis_options.add_to(opts, "utilization at or above which a channel is saturated",
                           "utilization at or below which a channel is collapsed");
  format_option.add_to(opts);
  opts.add_options()("interior", po::bool_switch(),
                     "use only interior blocks, min(i, L−i) ≥ TSS_i (no boundary blocks)");
  po::variables_map vm;
  if (!parse(argc, argv,
             "ess diagnose RESULTS.h5 [--metric tolerance|entropy] [--utilization state|attainable]\n"
             "             [--saturated 0.8] [--collapsed 0.3] [--format text|json|markdown] [--interior]\n\n"
             "Per channel, utilization = mean over (batch, i) of ESS_i / TSS_i (the share of the layer's\n"
             "own state the input uses; --utilization attainable: of min(TSS_i, i, L−i)). A channel is\n"
             "dead when its ESS is 0 at every block, else saturated at or above --saturated, collapsed at\n"
             "or below --collapsed, healthy otherwise. Per layer: the counts, the mean utilization over\n"
             "channels, a verdict and what to do about it. Verdicts: dead (every channel dead), partly\n"
             "dead (more than half dead), saturated / collapsed / healthy (more than half of the live\n"
             "channels so), mixed otherwise; unmeasured where no block is usable (failed, or lanczos\n"
             "could not certify). The defaults are calibrated on the MQAR zoo: models that\n"
             "fail for lack of state read saturated, models with far more state than the task needs\n"
             "read collapsed. See docs/analysis.md.",
             opts, {"results"}, vm))
    return 0;
  const DiagnosisOptions o = diagnosis_options.values();
  const Format format = format_option.format();
  const bool interior = vm["interior"].as<bool>();
  const ResultsFile file = interior ? interior_only(read_results(input)) : read_results(input);
  const auto layers = diagnose(file, o);

  if (format == Format::json) {
    Json entries = Json::array();
    for (const auto& d : layers) entries.push_back(to_json(d));
    print_json(std::cout, {{"file", input},
                           {"metric", to_string(o.metric)},
                           {"utilization_basis", to_string(o.basis)},
                           {"interior", interior},
                           {"saturated_threshold", o.saturated},
                           {"collapsed_threshold", o.collapsed},
                           {"summary", model_summary(layers)},
                           {"layers", entries}});
    return 0;
  }
  const bool md = format == Format::markdown;
  std::cout << (md ? "## ESS diagnosis: `" : "ESS diagnosis: ") << input << (md ? "`\n\n" : "\n")
            << "metric: " << to_string(o.metric) << "-ESS; utilization = mean of ESS_i / "
            << (o.basis == UtilizationBasis::state ? "TSS_i" : "min(TSS_i, i, L−i)") << "; saturated ≥ "
            << fmt(100 * o.saturated, 0) << "%, collapsed ≤ " << fmt(100 * o.collapsed, 0)
            << "%, dead = ESS 0 everywhere" << (interior ? "; interior blocks only (min(i, L−i) ≥ TSS_i)" : "")
            << "\n\n";
  Table table({{"#", Table::right, "layer"},
               {"name"},
               {"family"},
               {"TSS", Table::right},
               {"util", Table::right, "utilization"},
               {"verdict"},
               {"sat", Table::right, "saturated"},
               {"hlth", Table::right, "healthy"},
               {"coll", Table::right, "collapsed"},
               {"dead", Table::right}});
  for (const auto& d : layers)
    table.add({std::to_string(d.layer_index), d.name, d.family, std::to_string(d.tss),
               fmt_cell(100 * d.utilization, 1, "%"), d.verdict, std::to_string(d.saturated), std::to_string(d.healthy),
               std::to_string(d.collapsed), std::to_string(d.dead)});
  table.print(std::cout, format, md ? "" : "  ");
  std::cout << "\n" << (md ? "**Summary.** " : "summary: ") << model_summary(layers) << "\n";
  bool header = false;
  for (const auto& d : layers)
    if (d.verdict != "healthy" || d.dead) {
      if (!header) std::cout << "\n";
      header = true;
      std::cout << (md ? "- " : "  - ") << d.advice << "\n";
    }
  return 0;
}

ESS_REGISTER_COMMAND("diagnose", "saturation / collapse per layer and channel", 30, run_diagnose);

}  // namespace ess::cli
