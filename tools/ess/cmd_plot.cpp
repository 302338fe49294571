// ess plot RESULTS.h5 -o FILE.svg: one self-contained SVG with a utilization overview of all
// layers, and per layer the mean ESS profile (with TSS and the attainable bound) and a
// channel × index heat map.
#include <algorithm>
#include <cmath>
#include <fstream>
#include <iostream>
#include <set>
#include <sstream>

#include <unistd.h>

#include "libess/diagnosis.h"
#include "libess/error.h"
#include "libess/svg.h"
#include "tools/ess/cli.h"

namespace ess::cli {

namespace {

constexpr double kWidth = 1100, kMargin = 70, kRowHeight = 330, kOverviewHeight = 350;

void overview(svg::Document& doc, double top, const std::vector<const LayerResult*>& layers, Metric metric,
              const DiagnosisOptions& o) {
  const int n = static_cast<int>(layers.size());
  svg::Axes ax(doc, kMargin, top + 40, kWidth - 2 * kMargin, kOverviewHeight - 110, -0.5, n - 0.5, 0, 100);
  ax.frame("Utilization per layer: each dot a channel (" + std::string(to_string(metric)) + "-ESS / min(TSS_i, i, L−i))",
           "", "utilization (%)", false);
  std::vector<double> at;
  std::vector<std::string> labels;
  for (int k = 0; k < n; ++k) {
    const LayerResult& R = *layers[k];
    const LayerDiagnosis d = diagnose_layer(R, o);
    at.push_back(k);
    labels.push_back(std::to_string(R.layer_index) + " " + R.family.substr(0, 18));
    const int C = R.channels;
    for (int c = 0; c < C; ++c) {
      const double u = d.channel_utilization[c];
      if (std::isnan(u)) continue;
      const double jitter = C > 1 ? (static_cast<double>((c * 7919) % C) / (C - 1) - 0.5) * 0.5 : 0.0;
      const std::string colour = d.channel_class[c] == ChannelClass::dead        ? "#999999"
                                 : d.channel_class[c] == ChannelClass::saturated ? "#d62728"
                                 : d.channel_class[c] == ChannelClass::collapsed ? "#1f77b4"
                                                                                 : "#2ca02c";
      doc.circle(ax.px(k + jitter), ax.py(100 * u), C > 200 ? 1.5 : 2.5, colour, "fill-opacity=\"0.6\"");
    }
    // Mean over live channels.
    doc.line(ax.px(k - 0.32), ax.py(100 * d.utilization), ax.px(k + 0.32), ax.py(100 * d.utilization), "black", 2.5);
    doc.text(ax.px(k), ax.y0() + ax.height() + 30, d.verdict, 11, "middle", "fill=\"#555\" font-style=\"italic\"");
  }
  ax.custom_xticks(at, labels);
  for (auto [v, name] : {std::pair<double, const char*>{o.saturated, "saturated"}, {o.collapsed, "collapsed"}}) {
    doc.line(ax.x0(), ax.py(100 * v), ax.x0() + ax.width(), ax.py(100 * v), "#888", 1, "stroke-dasharray=\"6 4\"");
    doc.text(ax.x0() + ax.width() + 4, ax.py(100 * v) + 4, name, 10, "start", "fill=\"#666\"");
  }
  // Legend.
  double lx = ax.x0(), ly = top + kOverviewHeight - 18;
  for (auto [colour, name] : std::vector<std::pair<std::string, std::string>>{
           {"#d62728", "saturated"}, {"#2ca02c", "healthy"}, {"#1f77b4", "collapsed"}, {"#999999", "dead"}}) {
    doc.circle(lx + 5, ly - 4, 4, colour);
    doc.text(lx + 14, ly, name, 11);
    lx += 90;
  }
  doc.line(lx + 2, ly - 4, lx + 22, ly - 4, "black", 2.5);
  doc.text(lx + 28, ly, "mean over live channels", 11);
}

void layer_row(svg::Document& doc, double top, const LayerResult& R, Metric metric) {
  const int I = R.num_indices();
  const auto profile = mean_profile(R, metric);
  std::vector<double> xs(I), ess(I), tss(I), bound(I);
  double ymax = 1;
  for (int p = 0; p < I; ++p) {
    xs[p] = R.indices[p];
    ess[p] = profile[p];
    tss[p] = R.tss[p];
    bound[p] = R.attainable[p];
    if (std::isfinite(ess[p])) ymax = std::max(ymax, ess[p]);
    ymax = std::max(ymax, bound[p]);
  }
  // Show TSS fully unless it dwarfs the rest (attention: TSS_i = i); then clip at 1.5× the bound.
  double tss_max = *std::max_element(tss.begin(), tss.end());
  ymax = std::max(ymax * 1.1, std::min(tss_max * 1.05, ymax * 1.5));
  const double left_w = (kWidth - 3 * kMargin) * 0.5;
  const std::string title = "layer " + std::to_string(R.layer_index) + " " + R.name + " (" + R.family + ")";
  svg::Axes ax(doc, kMargin, top + 40, left_w, kRowHeight - 130, xs.front(), std::max(xs.back(), xs.front() + 1), 0, ymax);
  ax.frame(title + ": mean ESS profile", "block index i", "state size", true);
  auto line = [&](const std::vector<double>& v, const std::string& colour, double w, const std::string& extra) {
    std::vector<double> px(I), py(I);
    for (int p = 0; p < I; ++p) {
      px[p] = ax.px(xs[p]);
      py[p] = ax.py(std::min(v[p], ymax));
    }
    doc.polyline(px, py, colour, w, extra);
  };
  line(tss, "#ff7f0e", 1.5, "stroke-dasharray=\"6 3\"");
  line(bound, "#7f7f7f", 1.5, "stroke-dasharray=\"2 2\"");
  line(ess, "#1f77b4", 2.2, "");
  // Legend in one row under the axis label.
  double lx = ax.x0(), ly = ax.y0() + ax.height() + 52;
  for (auto [colour, name, dash] : std::vector<std::tuple<std::string, std::string, std::string>>{
           {"#1f77b4", std::string("mean ") + to_string(metric) + "-ESS", ""},
           {"#ff7f0e", "TSS_i", "stroke-dasharray=\"6 3\""},
           {"#7f7f7f", "min(TSS_i, i, L−i)", "stroke-dasharray=\"2 2\""}}) {
    doc.line(lx, ly - 4, lx + 22, ly - 4, colour, 2, dash);
    doc.text(lx + 28, ly, name, 11);
    lx += 40 + 6.5 * name.size();
  }

  // Heat map: channels × blocks (batch-averaged), downsampled by averaging.
  const int C = R.channels;
  const int rows = std::min(C, 128), cols = std::min(I, 256);
  std::vector<double> cell(static_cast<size_t>(rows) * cols, 0.0), count(cell.size(), 0.0);
  double vmax = 0;
  for (int c = 0; c < C; ++c)
    for (int p = 0; p < I; ++p)
      for (int b = 0; b < R.batch; ++b) {
        const double v = block_ess(R, metric, b, c, p);
        if (std::isnan(v)) continue;
        const size_t k = static_cast<size_t>(static_cast<long>(c) * rows / C) * cols + static_cast<long>(p) * cols / I;
        cell[k] += v;
        count[k] += 1;
      }
  for (size_t k = 0; k < cell.size(); ++k)
    if (count[k] > 0) vmax = std::max(vmax, cell[k] /= count[k]);
  if (!(vmax > 0)) vmax = 1;
  const double hx = 2 * kMargin + left_w + 10, hw = left_w - 40, hy = top + 40, hh = kRowHeight - 130;
  const double cw = hw / cols, ch = hh / rows;
  for (int r = 0; r < rows; ++r)
    for (int k = 0; k < cols; ++k) {
      const size_t idx = static_cast<size_t>(r) * cols + k;
      const std::string colour = count[idx] > 0 ? svg::colormap(cell[idx] / vmax) : "#cccccc";
      doc.rect(hx + k * cw, hy + r * ch, cw + 0.3, ch + 0.3, colour);
    }
  svg::Axes hax(doc, hx, hy, hw, hh, xs.front(), std::max(xs.back(), xs.front() + 1), 0, 1);
  doc.rect(hx, hy, hw, hh, "none", "stroke=\"#444\"");
  doc.text(hx + hw / 2, hy - 8, "ESS per " + std::string(to_string(R.channel_kind)) + " and block", 13, "middle",
           "font-weight=\"bold\"");
  for (double t : svg::nice_ticks(xs.front(), xs.back(), 5)) {
    doc.line(hax.px(t), hy + hh, hax.px(t), hy + hh + 4, "#444");
    doc.text(hax.px(t), hy + hh + 16, svg::format_tick(t), 11, "middle");
  }
  doc.text(hx + hw / 2, hy + hh + 32, "block index i", 12, "middle");
  doc.text(hx - 8, hy + 10, "0", 11, "end");
  doc.text(hx - 8, hy + hh, std::to_string(C - 1), 11, "end");
  const double lyc = hy + hh / 2;
  doc.text(hx - 30, lyc, std::string(to_string(R.channel_kind)) + (C > rows ? " (binned)" : ""), 12, "middle",
           "transform=\"rotate(-90 " + std::to_string(hx - 30) + " " + std::to_string(lyc) + ")\"");
  // Colour bar.
  const double bx = hx + hw + 12;
  for (int s = 0; s < 50; ++s) doc.rect(bx, hy + hh - (s + 1) * hh / 50, 12, hh / 50 + 0.3, svg::colormap(s / 49.0));
  doc.rect(bx, hy, 12, hh, "none", "stroke=\"#444\"");
  for (double t : svg::nice_ticks(0, vmax, 4)) {
    const double y = hy + hh - t / vmax * hh;
    doc.line(bx + 12, y, bx + 16, y, "#444");
    doc.text(bx + 18, y + 4, svg::format_tick(t), 10);
  }
  doc.text(bx + 6, hy - 8, "ESS", 11, "middle");
}

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
  std::string input, output, metric, layer_list;
  DiagnosisOptions o;
  opts.add_options()("results", po::value(&input), "results file (format ess-results)")(
      "output,o", po::value(&output)->required(), "SVG file to write")(
      "metric", po::value(&metric)->default_value("tolerance"), "tolerance or entropy")(
      "layers", po::value(&layer_list)->default_value(""), "comma-separated layer names (default: all)")(
      "saturated", po::value(&o.saturated)->default_value(0.9), "saturation threshold drawn in the overview")(
      "collapsed", po::value(&o.collapsed)->default_value(0.1), "collapse threshold drawn in the overview");
  po::variables_map vm;
  if (!parse(argc, argv,
             "ess plot RESULTS.h5 -o FILE.svg [--metric tolerance|entropy] [--layers a,b]\n\n"
             "Writes one self-contained SVG: a utilization overview of all layers (one dot per channel,\n"
             "coloured by diagnosis), then per layer the mean ESS profile over i with TSS_i and the\n"
             "attainable bound min(TSS_i, i, L−i), and a channel × index heat map of ESS.",
             opts, {"results"}, vm))
    return 0;
  const Metric m = parse_metric(metric);
  o.metric = m;
  std::string why;
  if (!o.IsValid(&why)) throw UsageError(why);
  check_output_path(output);
  const ResultsFile file = read_results(input);
  std::vector<const LayerResult*> layers;
  const auto wanted = split_names(layer_list);
  for (const auto& R : file.layers)
    if (wanted.empty() || std::find(wanted.begin(), wanted.end(), R.name) != wanted.end()) layers.push_back(&R);
  for (const auto& w : wanted)
    if (std::none_of(file.layers.begin(), file.layers.end(), [&](const LayerResult& R) { return R.name == w; }))
      throw UsageError("--layers: no layer named '" + w + "' in " + input);

  const double height = 50 + kOverviewHeight + kRowHeight * layers.size() + 20;
  svg::Document doc(kWidth, height);
  doc.text(kWidth / 2, 28, "Effective state size: " + input, 16, "middle", "font-weight=\"bold\"");
  overview(doc, 40, layers, m, o);
  for (size_t k = 0; k < layers.size(); ++k) layer_row(doc, 50 + kOverviewHeight + k * kRowHeight, *layers[k], m);

  const std::string tmp = output + ".tmp" + std::to_string(::getpid());
  {
    std::ofstream out(tmp);
    out << doc.str();
    if (!out) {
      std::remove(tmp.c_str());
      throw InputError(output + ": cannot write the SVG file");
    }
  }
  if (std::rename(tmp.c_str(), output.c_str()) != 0) {
    std::remove(tmp.c_str());
    throw InputError(output + ": cannot move the SVG into place");
  }
  std::cout << "wrote " << output << " (" << layers.size() << " layer(s))\n";
  return 0;
}

ESS_REGISTER_COMMAND("plot", "SVG figures: utilization overview, ESS profiles, heat maps", 50, run_plot);

}  // namespace ess::cli
