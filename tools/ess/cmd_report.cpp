// ess report RESULTS.h5: per-layer summary tables, the model's predictions on its input, and with
// --per-position ESS_i beside the loss of predicting token i.
#include <cmath>
#include <iostream>

#include "analysis/summary.h"
#include "libess/error.h"
#include "libess/results_io.h"
#include "tools/ess/cli.h"

namespace ess::cli {

namespace {

// One line on the model's predictions (/model), or why there are none.
void print_predictions(std::ostream& out, const PredictionSummary& p, bool md) {
  if (!p.present) {
    out << (md ? "**Predictions**" : "predictions")
        << ": none (no /model group: the file comes from `ess compute`, or from an `ess analyze` "
           "older than results format 1.1)\n";
  } else {
    out << (md ? "**Predictions**" : "predictions") << ": loss " << fmt(p.loss, 4) << " nats/token, perplexity "
        << fmt_sig(p.perplexity) << ", next-token accuracy " << fmt(100 * p.accuracy, 1) << "% over " << p.scored
        << " next tokens (" << p.batch << " × " << p.seq_len - 1 << ")\n";
  }
  if (p.mqar_accuracy >= 0)
    out << (md ? "**MQAR accuracy**" : "MQAR accuracy") << ": " << fmt(100 * p.mqar_accuracy, 1) << "%\n";
}

void print_header(std::ostream& out, const std::string& input, const ResultsFile& file, const LayerSummary* first,
                  bool md) {
  if (md)
    out << "## ESS report: `" << input << "`\n\n";
  else
    out << "ESS report: " << input << "\n";
  out << (md ? "Source: `" : "source: ") << file.provenance.source << (md ? "`" : "") << "  (" << file.provenance.input
      << ")\n";
  if (first)
    out << (md ? "Threshold: " : "threshold: ") << first->tol_mode << " τ = " << first->tol
        << "; L = " << first->seq_len << ", " << first->blocks << " block(s) per channel\n";
}

int print_per_position(const std::string& input, const ResultsFile& file, const ResultsSummary& summary, Metric metric,
                       Format format) {
  const PerPosition pp = per_position(file, metric);
  const PredictionSummary pred = summarize_predictions(file);
  if (format == Format::json) {
    const Json positions = to_json(pp);
    print_json(std::cout, {{"file", input},
                           {"source", file.provenance.source},
                           {"input", file.provenance.input},
                           {"predictions", to_json(pred)},
                           {"metric", positions.at("metric")},
                           {"layers", positions.at("layers")},
                           {"positions", positions.at("positions")}});
    return 0;
  }
  const bool md = format == Format::markdown;
  print_header(std::cout, input, file, summary.layers.empty() ? nullptr : &summary.layers[0], md);
  print_predictions(std::cout, pred, md);
  std::cout << "\nPer position i: loss = −log p(token i | tokens < i) (mean over the batch), acc = argmax right, "
            << "#k = mean " << to_string(metric) << "-ESS_i of layer k (over batch and channels)\n\n";
  std::vector<Table::Column> cols{{"i", Table::right}, {"loss", Table::right}, {"acc", Table::right}};
  for (size_t l = 0; l < pp.layers.size(); ++l) cols.push_back({"#" + std::to_string(l), Table::right});
  Table table(cols);
  const int digits = metric == Metric::tolerance ? 1 : 2;
  for (const PositionRow& r : pp.rows) {
    std::vector<std::string> row{std::to_string(r.i), pred.present ? fmt(r.loss, 3) : "",
                                 pred.present ? fmt(100 * r.accuracy, 0) + "%" : ""};
    for (double e : r.ess) row.push_back(std::isnan(e) ? "" : fmt(e, digits));
    table.add(row);
  }
  table.print(std::cout, format);
  std::cout << "\n";
  for (size_t l = 0; l < pp.layers.size(); ++l)
    std::cout << (md ? "- " : "  ") << "#" << l << " = " << pp.layers[l] << " (" << summary.layers[l].family << ")\n";
  return 0;
}

}  // namespace

int run_report(int argc, char** argv) {
  po::options_description opts("options");
  std::string input, metric_name = "tolerance";
  FormatOption format_option;
  opts.add_options()("results", po::value(&input), "results file (format ess-results)");
  format_option.add_to(opts);
  opts.add_options()("per-position", po::bool_switch(),
                     "per block index i: the loss of predicting token i beside each layer's mean ESS_i")(
      "metric", po::value(&metric_name), "with --per-position: tolerance (default) or entropy")(
      "interior", po::bool_switch(), "aggregate only interior blocks, min(i, L−i) ≥ TSS_i (no boundary blocks)");
  po::variables_map vm;
  if (!parse(argc, argv,
             "ess report RESULTS.h5 [--format text|json|markdown] [--per-position [--metric M]] [--interior]\n\n"
             "Per layer: family, channels, mean and max tolerance-ESS and entropy-ESS, TSS,\n"
             "utilization (ESS / min(TSS_i, i, L−i), averaged), and totals over channels and layers;\n"
             "the model's loss, perplexity and next-token accuracy on its input (ess analyze's /model).\n"
             "--per-position: one row per measured block index i with the loss of predicting token i\n"
             "from tokens < i and each layer's mean ESS_i.\n"
             "--interior: leave out the boundary blocks where min(i, L−i) < TSS_i.",
             opts, {"results"}, vm))
    return 0;
  const Format format = format_option.format();
  const bool by_position = vm["per-position"].as<bool>();
  if (vm.count("metric") && !by_position)
    throw UsageError(std::vector<MessagePart>{Option{"metric"}, " goes with ", Option{"per_position"}});
  const Metric metric = parse_metric(metric_name);
  const bool interior = vm["interior"].as<bool>();
  const ResultsFile file = interior ? interior_only(read_results(input)) : read_results(input);
  const ResultsSummary summary = summarize(file);
  if (by_position) return print_per_position(input, file, summary, metric, format);
  const auto& S = summary.layers;
  const PredictionSummary pred = summarize_predictions(file);

  if (format == Format::json) {
    Json layers = Json::array();
    for (const auto& s : S) layers.push_back(to_json(s));
    print_json(
        std::cout,
        {{"file", input},
         {"source", file.provenance.source},
         {"input", file.provenance.input},
         {"interior", interior},
         {"layers", layers},
         {"model",
          {{"total_tolerance_ess", summary.total_tolerance_ess}, {"total_entropy_ess", summary.total_entropy_ess}}},
         {"predictions", to_json(pred)}});
    return 0;
  }

  const bool md = format == Format::markdown;
  print_header(std::cout, input, file, S.empty() ? nullptr : &S[0], md);
  if (interior) std::cout << "interior blocks only: min(i, L−i) ≥ TSS_i (--interior)\n";
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
               fmt_cell(s.mean_tolerance_ess, 2), fmt_cell(s.max_tolerance_ess, 0), fmt_cell(s.mean_entropy_ess, 2),
               fmt_cell(s.max_entropy_ess, 2), fmt(s.mean_tss, 1), fmt_cell(100 * s.utilization, 1, "%"),
               fmt_cell(s.total_tolerance_ess, 1)});
  table.print(std::cout, format);
  std::cout << "\n"
            << (md ? "**Model total**" : "model total") << ": tolerance-ESS "
            << fmt_cell(summary.total_tolerance_ess, 1) << ", entropy-ESS " << fmt_cell(summary.total_entropy_ess, 1)
            << " (sum over layers of the per-channel means"
            << (summary.unmeasured_layers
                    ? "; " + std::to_string(summary.unmeasured_layers) + " layer(s) without a usable block left out"
                    : std::string())
            << ")\n";
  print_predictions(std::cout, pred, md);
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
  for (const auto& s : S)
    if (s.measured_channels == 0)
      std::cout << "warning: layer " << s.name << " has no usable block (every block failed or was uncertified): "
                << "no ESS for it (— in the table)\n";
    else if (s.measured_channels < s.channels)
      std::cout << "warning: layer " << s.name << ": " << s.channels - s.measured_channels << " of " << s.channels
                << " channels have no usable block; its means and total cover the other " << s.measured_channels
                << "\n";
  if (summary.bad_blocks > summary.uncertified_blocks)
    std::cout << "warning: " << summary.bad_blocks - summary.uncertified_blocks
              << " block(s) did not converge or were non-finite; they are excluded\n";
  return 0;
}

ESS_REGISTER_COMMAND("report", "summary tables of a results file (text, json, markdown)", 40, run_report);

}  // namespace ess::cli
