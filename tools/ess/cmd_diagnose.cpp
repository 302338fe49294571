// ess diagnose RESULTS.h5: saturation / collapse per layer and channel.
#include <cmath>
#include <cstdio>
#include <iostream>
#include <sstream>

#include "analysis/diagnosis.h"
#include "libess/error.h"
#include "tools/ess/cli.h"

namespace ess::cli {

namespace {
std::string number(double v) {
  if (!std::isfinite(v)) return "null";
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.10g", v);
  return buf;
}
}  // namespace

int run_diagnose(int argc, char** argv) {
  po::options_description opts("options");
  std::string input, format, metric, basis;
  DiagnosisOptions o;
  opts.add_options()("results", po::value(&input), "results file (format ess-results)")(
      "metric", po::value(&metric)->default_value(to_string(o.metric)), "tolerance or entropy")(
      "utilization", po::value(&basis)->default_value(to_string(o.basis)),
      "state (ESS_i / TSS_i) or attainable (ESS_i / min(TSS_i, i, L−i))")(
      "saturated", po::value(&o.saturated)->default_value(o.saturated, number(o.saturated)),
      "utilization at or above which a channel is saturated")("collapsed",
                                                              po::value(&o.collapsed)->default_value(o.collapsed, number(o.collapsed)),
                                                              "utilization at or below which a channel is collapsed")(
      "format,f", po::value(&format)->default_value("text"), "text, json or markdown");
  po::variables_map vm;
  if (!parse(argc, argv,
             "ess diagnose RESULTS.h5 [--metric tolerance|entropy] [--saturated 0.9] [--collapsed 0.1]\n"
             "             [--format text|json|markdown]\n\n"
             "Per channel, utilization = mean over (batch, i) of ESS_i / min(TSS_i, i, L−i). A channel is\n"
             "dead when its ESS is 0 at every block, else saturated at or above --saturated, collapsed at\n"
             "or below --collapsed, healthy otherwise. Per layer: the counts, the mean utilization over\n"
             "channels, a verdict and what to do about it. Verdicts: dead (every channel dead), partly\n"
             "dead (more than half dead), saturated / collapsed / healthy (more than half of the live\n"
             "channels so), mixed otherwise. See docs/analysis.md.",
             opts, {"results"}, vm))
    return 0;
  o.metric = parse_metric(metric);
  o.basis = parse_utilization_basis(basis);
  std::string why;
  if (!o.IsValid(&why)) throw UsageError(why);
  check_report_format(format);
  const ResultsFile file = read_results(input);
  const auto layers = diagnose(file, o);

  if (format == "json") {
    std::ostringstream j;
    j << "{\"file\": " << json_escape(input) << ", \"metric\": " << json_escape(to_string(o.metric))
      << ", \"utilization_basis\": " << json_escape(to_string(o.basis))
      << ", \"saturated_threshold\": " << number(o.saturated) << ", \"collapsed_threshold\": " << number(o.collapsed)
      << ", \"summary\": " << json_escape(model_summary(layers)) << ",\n \"layers\": [";
    for (size_t k = 0; k < layers.size(); ++k) {
      const auto& d = layers[k];
      j << (k ? "," : "") << "\n  {\"name\": " << json_escape(d.name) << ", \"layer_index\": " << d.layer_index
        << ", \"family\": " << json_escape(d.family) << ", \"channel_kind\": " << json_escape(d.channel_kind)
        << ", \"tss\": " << d.tss << ", \"utilization\": " << number(d.utilization)
        << ", \"live_utilization\": " << number(d.live_utilization) << ", \"mean_ess\": " << number(d.mean_ess)
        << ", \"input_limited\": " << (d.input_limited ? "true" : "false") << ", \"verdict\": " << json_escape(d.verdict)
        << ", \"channels\": {\"saturated\": " << d.saturated << ", \"healthy\": " << d.healthy
        << ", \"collapsed\": " << d.collapsed << ", \"dead\": " << d.dead << "}, \"summary\": " << json_escape(d.advice)
        << "}";
    }
    j << "\n]}\n";
    std::cout << j.str();
    return 0;
  }
  const bool md = format == "markdown";
  std::cout << (md ? "## ESS diagnosis: `" : "ESS diagnosis: ") << input << (md ? "`\n\n" : "\n")
            << "metric: " << to_string(o.metric)
            << "-ESS; utilization = mean of ESS_i / "
            << (o.basis == UtilizationBasis::state ? "TSS_i" : "min(TSS_i, i, L−i)") << "; saturated ≥ "
            << fmt(100 * o.saturated, 0)
            << "%, collapsed ≤ " << fmt(100 * o.collapsed, 0) << "%, dead = ESS 0 everywhere\n\n";
  if (md)
    std::cout << "| layer | name | family | TSS | utilization | verdict | saturated | healthy | collapsed | dead |\n"
                 "| --: | :-- | :-- | --: | --: | :-- | --: | --: | --: | --: |\n";
  else
    std::cout << "  #  name                     family             TSS   util  verdict       sat  hlth  coll  dead\n";
  for (const auto& d : layers) {
    if (md) {
      std::cout << "| " << d.layer_index << " | " << d.name << " | " << d.family << " | " << d.tss << " | "
                << fmt(100 * d.utilization, 1) << "% | " << d.verdict << " | " << d.saturated << " | " << d.healthy
                << " | " << d.collapsed << " | " << d.dead << " |\n";
    } else {
      char buf[256];
      std::snprintf(buf, sizeof buf, "%3d  %-24s %-17s %5d %5.1f%%  %-11s %5d %5d %5d %5d\n", d.layer_index,
                    d.name.substr(0, 24).c_str(), d.family.substr(0, 17).c_str(), d.tss, 100 * d.utilization,
                    d.verdict.c_str(), d.saturated, d.healthy, d.collapsed, d.dead);
      std::cout << buf;
    }
  }
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
