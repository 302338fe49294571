// ess plot RESULTS.h5 -o FILE.svg: one self-contained SVG with a utilization overview of all
// layers, and per layer the mean ESS profile (with TSS and the attainable bound) and a
// channel × index heat map (analysis/figures.h).
#include <algorithm>
#include <iostream>
#include <sstream>

#include "analysis/figures.h"
#include "libess/error.h"
#include "libess/files.h"
#include "tools/ess/cli.h"

namespace ess::cli {

namespace {

std::vector<std::string> split_names(const std::string& s) {
  std::vector<std::string> out;
  std::stringstream in(s);
  std::string item;
  while (std::getline(in, item, ','))
    if (!item.empty()) out.push_back(item);
  return out;
}

}  // namespace

int run_plot(int argc, char** argv) {
  po::options_description opts("options");
  std::string input, layer_list;
  OutputOption output;
  DiagnosisOptionGroup diagnosis_options;
  opts.add_options()("results", po::value(&input), "results file (format ess-results)");
  output.add_to(opts, "SVG file to write");
  diagnosis_options.add_to(opts, "saturation threshold drawn in the overview",
                           "collapse threshold drawn in the overview");
  opts.add_options()("layers", po::value(&layer_list)->default_value(""), "comma-separated layer names (default: all)");
  po::variables_map vm;
  if (!parse(argc, argv,
             "ess plot RESULTS.h5 -o FILE.svg [--metric tolerance|entropy] [--layers a,b]\n\n"
             "Writes one self-contained SVG (open it in a browser): a utilization overview of all layers\n"
             "(box plot of per-channel utilization with the thresholds and each layer's verdict), then per\n"
             "layer the mean ESS profile over i with TSS_i and the attainable bound min(TSS_i, i, L−i), and\n"
             "a channel × index heat map of the batch-averaged ESS with a colour bar.",
             opts, {"results"}, vm))
    return 0;
  const DiagnosisOptions o = diagnosis_options.values();
  if (input.empty()) throw UsageError("missing RESULTS.h5 (see ess plot --help)");
  output.check({input});
  const ResultsFile file = read_results(input);
  std::vector<const LayerResult*> layers;
  const auto wanted = split_names(layer_list);
  for (const auto& w : wanted)
    if (std::none_of(file.layers.begin(), file.layers.end(), [&](const LayerResult& R) { return R.name == w; }))
      throw UsageError("--layers: no layer named '" + w + "' in " + input);
  for (const auto& R : file.layers)
    if (wanted.empty() || std::find(wanted.begin(), wanted.end(), R.name) != wanted.end()) layers.push_back(&R);
  if (layers.empty()) throw InputError(input + ": the results file has no layers to plot");
  write_file_atomically(output.path(), ess_figure_svg(layers, o, "Effective state size — " + input));
  std::cout << "wrote " << output.path() << " (" << layers.size() << " layer(s))\n";
  return 0;
}

ESS_REGISTER_COMMAND("plot", "SVG figures: utilization overview, ESS profiles, heat maps", 50, run_plot);

}  // namespace ess::cli
