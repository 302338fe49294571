// The figure of `ess plot` (docs/analysis.md): utilization overview, ESS profiles, heat maps.
#include "analysis/figures.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <sstream>
#include <tuple>

#include "analysis/plan.h"
#include "analysis/svg.h"

namespace ess {

namespace {

constexpr double kWidth = 1100, kMargin = 72;
constexpr double kPanelHeight = 190;  // plotting area of the per-layer panels
constexpr double kRowHeight = 330;    // one layer: header, two panels, axis labels, legend
constexpr int kMaxHeatRows = 200, kMaxHeatCols = 400, kMaxDots = 256;

const char* kSaturatedColour = "#d62728";
const char* kHealthyColour = "#2ca02c";
const char* kCollapsedColour = "#1f77b4";
const char* kDeadColour = "#8c8c8c";
const char* kMixedColour = "#ff7f0e";

std::string class_colour(ChannelClass c) {
  switch (c) {
    case ChannelClass::saturated:
      return kSaturatedColour;
    case ChannelClass::collapsed:
      return kCollapsedColour;
    case ChannelClass::dead:
      return kDeadColour;
    default:
      return kHealthyColour;
  }
}

std::string verdict_colour(const std::string& v) {
  if (v == "saturated") return kSaturatedColour;
  if (v == "collapsed") return kCollapsedColour;
  if (v == "healthy") return kHealthyColour;
  if (v == "mixed") return kMixedColour;
  return kDeadColour;
}

std::string fmt(double v, int precision) {
  if (std::isnan(v)) return "nan";
  std::ostringstream o;
  o.setf(std::ios::fixed);
  o.precision(precision);
  o << v;
  return o.str();
}

std::string pct(double x, int digits = 0) { return std::isnan(x) ? "—" : fmt(100 * x, digits) + "%"; }

// Linear-interpolated quantile of sorted values.
double quantile(const std::vector<double>& sorted, double q) {
  if (sorted.empty()) return std::nan("");
  const double pos = q * (sorted.size() - 1);
  const size_t lo = static_cast<size_t>(std::floor(pos)), hi = std::min(lo + 1, sorted.size() - 1);
  return sorted[lo] + (pos - lo) * (sorted[hi] - sorted[lo]);
}

std::string counts_text(const LayerDiagnosis& d) {
  return std::to_string(d.saturated) + " saturated, " + std::to_string(d.healthy) + " healthy, " +
         std::to_string(d.collapsed) + " collapsed, " + std::to_string(d.dead) + " dead";
}

// Height of the overview panel (rotated layer labels and a second legend line beyond 8 layers).
double overview_height(size_t layers) { return layers > 8 ? 413 : 328; }

// (c) Utilization overview: per layer a box plot of channel utilizations over jittered dots
// coloured by class, the mean, the thresholds and the verdict.
void overview(svg::Document& doc, double top, const std::vector<const LayerResult*>& layers,
              const std::vector<LayerDiagnosis>& diag, Metric metric, const DiagnosisOptions& o) {
  const int n = static_cast<int>(layers.size());
  const bool rotate = n > 8;
  const double plot_h = 220, label_h = rotate ? 125 : 58;  // overview_height = 30 + these + legend
  double umax = 1;
  for (const auto& d : diag)
    for (double u : d.channel_utilization)
      if (std::isfinite(u)) umax = std::max(umax, u);
  // Headroom above 100%; synthetic files may even exceed the bound.
  const double ymax = umax > 1.001 ? std::ceil(umax * 10) * 10 + 4 : 104;
  svg::Axes ax(doc, kMargin, top + 30, kWidth - 2 * kMargin - 70, plot_h, -0.5, n - 0.5, 0, ymax);
  ax.frame("Utilization per layer: " + std::string(to_string(metric)) +
               "-ESS_i / min(TSS_i, i, L−i), averaged over i and batch, one dot per " +
               (n && layers[0]->channel_kind == ChannelKind::head ? "head" : "channel"),
           "", "utilization (%)", false);
  for (auto [v, name] : {std::pair<double, std::string>{o.saturated, "saturated ≥ " + pct(o.saturated)},
                         {o.collapsed, "collapsed ≤ " + pct(o.collapsed)}}) {
    doc.line(ax.x0(), ax.py(100 * v), ax.x0() + ax.width(), ax.py(100 * v), "#777", 1, "stroke-dasharray=\"6 4\"");
    doc.text(ax.x0() + ax.width() + 5, ax.py(100 * v) + 4, name, 10, "start", "fill=\"#555\"");
  }
  std::vector<double> at;
  std::vector<std::string> labels;
  const double unit = ax.px(1) - ax.px(0);  // pixels per layer slot
  for (int k = 0; k < n; ++k) {
    const LayerResult& R = *layers[k];
    const LayerDiagnosis& d = diag[k];
    doc.begin_group("layer " + std::to_string(R.layer_index) + " " + R.name + " (" + R.family + "): " + d.verdict +
                    "; mean utilization " + pct(d.utilization, 1) + "; " + counts_text(d));
    const int C = R.channels;
    const int step = std::max(1, (C + kMaxDots - 1) / kMaxDots);
    const double r = std::clamp(unit / 40, 1.5, 2.8);
    for (int c = 0; c < C; c += step) {
      const double u = d.channel_utilization[c];
      if (!std::isfinite(u)) continue;
      const double jitter = C > 1 ? (static_cast<double>((c * 7919L) % C) / (C - 1) - 0.5) * 0.55 : 0.0;
      doc.circle(ax.px(k + jitter), ax.py(100 * u), r, class_colour(d.channel_class[c]), "fill-opacity=\"0.55\"");
    }
    std::vector<double> u;
    for (double x : d.channel_utilization)
      if (std::isfinite(x)) u.push_back(100 * x);
    std::sort(u.begin(), u.end());
    if (!u.empty()) {
      const double q1 = quantile(u, 0.25), med = quantile(u, 0.5), q3 = quantile(u, 0.75);
      const double xl = ax.px(k - 0.3), xr = ax.px(k + 0.3), xc = ax.px(k);
      doc.line(xc, ax.py(u.front()), xc, ax.py(q1), "#333", 1);  // whiskers: min – max
      doc.line(xc, ax.py(q3), xc, ax.py(u.back()), "#333", 1);
      doc.line(ax.px(k - 0.12), ax.py(u.front()), ax.px(k + 0.12), ax.py(u.front()), "#333", 1);
      doc.line(ax.px(k - 0.12), ax.py(u.back()), ax.px(k + 0.12), ax.py(u.back()), "#333", 1);
      doc.rect(xl, ax.py(q3), xr - xl, std::max(ax.py(q1) - ax.py(q3), 1.0), "#ffffff",
               "fill-opacity=\"0.35\" stroke=\"#333\" stroke-width=\"1.2\"");
      doc.line(xl, ax.py(med), xr, ax.py(med), "#333", 2.2);
    }
    // Mean (dead channels count 0): a black diamond.
    // A layer without a usable block has no mean (and no diamond at 0 %, which would read as collapsed).
    const double mx = ax.px(k), s = 5;
    if (std::isfinite(d.utilization)) {
      const double my = ax.py(100 * d.utilization);
      doc.polygon({mx, mx + s, mx, mx - s}, {my - s, my, my + s, my}, "black", "stroke=\"white\" stroke-width=\"0.8\"");
    }
    // Verdict under the layer's label (coloured label when labels are rotated).
    if (!rotate)
      doc.text(mx, ax.y0() + ax.height() + 31, d.verdict, 11, "middle",
               "fill=\"" + verdict_colour(d.verdict) + "\" font-weight=\"bold\"");
    doc.end_group();
    at.push_back(k);
    labels.push_back(std::to_string(R.layer_index) + " " + R.family.substr(0, 18));
  }
  if (rotate) {  // labels coloured by verdict
    for (int k = 0; k < n; ++k) {
      const double x = ax.px(k);
      doc.line(x, ax.y0() + ax.height(), x, ax.y0() + ax.height() + 4, "#444", 1);
      doc.text(x + 4, ax.y0() + ax.height() + 14, labels[k], 11, "end",
               "fill=\"" + verdict_colour(diag[k].verdict) + "\" font-weight=\"bold\"", -45);
    }
  } else {
    ax.custom_xticks(at, labels, false);
  }
  // Legend.
  double lx = ax.x0(), ly = ax.y0() + ax.height() + label_h;
  for (auto [colour, name] : std::vector<std::pair<std::string, std::string>>{{kSaturatedColour, "saturated"},
                                                                              {kHealthyColour, "healthy"},
                                                                              {kCollapsedColour, "collapsed"},
                                                                              {kDeadColour, "dead"}}) {
    doc.circle(lx + 5, ly - 4, 4, colour, "fill-opacity=\"0.7\"");
    doc.text(lx + 14, ly, name, 11);
    lx += 26 + 7 * name.size();
  }
  doc.rect(lx, ly - 10, 14, 12, "#ffffff", "stroke=\"#333\"");
  doc.line(lx, ly - 4, lx + 14, ly - 4, "#333", 2);
  doc.text(lx + 20, ly, "quartiles and median; whiskers min–max", 11);
  lx += 270;
  doc.polygon({lx + 5, lx + 10, lx + 5, lx}, {ly - 9, ly - 4, ly + 1, ly - 4}, "black");
  doc.text(lx + 16, ly, "mean (dead count 0)", 11);
  if (rotate) {
    lx = ax.x0();
    ly += 18;
    doc.text(lx, ly, "layer labels coloured by verdict:", 11);
    lx += 190;
    for (const std::string v : {"saturated", "healthy", "collapsed", "mixed", "(partly) dead"}) {
      doc.text(lx, ly, v, 11, "start", "fill=\"" + verdict_colour(v) + "\" font-weight=\"bold\"");
      lx += 12 + 7 * v.size();
    }
  }
}

// (a) + (b): one layer's mean ESS profile and its channel × index heat map.
void layer_row(svg::Document& doc, double top, const LayerResult& R, const LayerDiagnosis& d, Metric metric) {
  const int I = R.num_indices(), C = R.channels;
  const std::string kind = to_string(R.channel_kind);
  const std::string mname = std::string(to_string(metric)) + "-ESS";
  doc.begin_group(d.advice, "layer-" + R.name);
  doc.text(kMargin - 40, top + 18,
           "layer " + std::to_string(R.layer_index) + " · " + R.name + " (" + R.family + ", " + std::to_string(C) +
               " " + kind + "s, L = " + std::to_string(R.seq_len) + ", batch " + std::to_string(R.batch) + ")",
           14, "start", "font-weight=\"bold\"");
  doc.text(kWidth - kMargin + 40, top + 18,
           d.verdict + " · mean utilization " + pct(d.utilization, 1) + " · max TSS " + std::to_string(d.tss), 12,
           "end", "fill=\"" + verdict_colour(d.verdict) + "\" font-weight=\"bold\"");

  // Profile: mean over (batch, channels), a 10–90% band, TSS_i and min(TSS_i, i, L−i).
  std::vector<double> xs(I), mean(I), lo(I), hi(I), tss(I), bound(I);
  const auto profile = mean_profile(R, metric);
  double ymax = 1;
  std::vector<double> vals;
  for (int p = 0; p < I; ++p) {
    xs[p] = R.indices[p];
    mean[p] = profile[p];
    tss[p] = R.tss[p];
    bound[p] = R.attainable[p];
    vals.clear();
    for (int b = 0; b < R.batch; ++b)
      for (int c = 0; c < C; ++c) {
        const double v = block_ess(R, metric, b, c, p);
        if (!std::isnan(v)) vals.push_back(v);
      }
    std::sort(vals.begin(), vals.end());
    lo[p] = quantile(vals, 0.1);
    hi[p] = quantile(vals, 0.9);
    if (std::isfinite(hi[p])) ymax = std::max(ymax, hi[p]);
    ymax = std::max(ymax, bound[p]);
  }
  // Show TSS fully unless it dwarfs the rest (full attention: TSS_i = i); then clip at 1.5× the rest.
  const double tss_max = I ? *std::max_element(tss.begin(), tss.end()) : 0;
  ymax = std::max(ymax * 1.08, std::min(tss_max * 1.05, ymax * 1.5));
  const bool clipped = tss_max > ymax;
  const double panel_w = (kWidth - 3 * kMargin) / 2, py0 = top + 50;
  // x range: the blocks; a lone block (or very few) is centred in a range of at least 4.
  double xlo = I ? xs.front() : 0, xhi = I ? xs.back() : 1;
  if (xhi - xlo < 4) {
    const double mid = (xlo + xhi) / 2;
    xlo = mid - 2;
    xhi = mid + 2;
  }
  svg::Axes ax(doc, kMargin, py0, panel_w, kPanelHeight, xlo, xhi, 0, ymax);
  ax.set_integer_x(true);
  ax.frame("mean " + mname + " profile", "block index i", "state size", true);
  // Lines are cut where they leave the axes (no misleading flat run along the top edge).
  auto draw = [&](const std::vector<double>& v, const std::string& colour, double width, const std::string& extra) {
    std::vector<double> X, Y;
    auto flush = [&] {
      if (X.size() > 1) doc.polyline(X, Y, colour, width, extra);
      X.clear();
      Y.clear();
    };
    for (int p = 0; p < I; ++p) {
      if (!std::isfinite(v[p])) {
        flush();
        continue;
      }
      const bool in = v[p] <= ymax;
      if (p > 0 && std::isfinite(v[p - 1]) && in != (v[p - 1] <= ymax)) {  // crossing: interpolate
        const double f = (ymax - v[p - 1]) / (v[p] - v[p - 1]);
        X.push_back(ax.px(xs[p - 1] + f * (xs[p] - xs[p - 1])));
        Y.push_back(ax.py(ymax));
        if (!in) flush();
      }
      if (in) {
        X.push_back(ax.px(xs[p]));
        Y.push_back(ax.py(v[p]));
      }
    }
    flush();
  };
  {  // 10–90% band over (batch, channels)
    std::vector<double> X, Y;
    for (int p = 0; p < I; ++p)
      if (std::isfinite(hi[p])) {
        X.push_back(ax.px(xs[p]));
        Y.push_back(ax.py(std::min(hi[p], ymax)));
      }
    for (int p = I - 1; p >= 0; --p)
      if (std::isfinite(lo[p])) {
        X.push_back(ax.px(xs[p]));
        Y.push_back(ax.py(std::min(lo[p], ymax)));
      }
    doc.polygon(X, Y, "#1f77b4", "fill-opacity=\"0.18\"");
  }
  draw(tss, "#ff7f0e", 1.6, "stroke-dasharray=\"7 3\"");
  draw(bound, "#555", 1.6, "stroke-dasharray=\"2 2\"");
  draw(mean, "#1f77b4", 2.2, "");
  // Few blocks: markers, so that even a single block shows.
  for (int p = 0; p < I && I <= 40; ++p) {
    if (I <= 12) {
      if (tss[p] <= ymax) doc.circle(ax.px(xs[p]), ax.py(tss[p]), 3, "#ff7f0e");
      doc.circle(ax.px(xs[p]), ax.py(bound[p]), 3.5, "none", "stroke=\"#555\" stroke-width=\"1.2\"");
    }
    if (std::isfinite(mean[p]) && mean[p] <= ymax) doc.circle(ax.px(xs[p]), ax.py(mean[p]), 2.5, "#1f77b4");
  }
  double lx = ax.x0() - 40, ly = ax.y0() + ax.height() + 52;
  for (auto [colour, name, dash, w] : std::vector<std::tuple<std::string, std::string, std::string, double>>{
           {"#1f77b4", "mean " + mname, "", 2.2},
           {"#1f77b4", "10–90% of " + kind + "s", "stroke-opacity=\"0.3\"", 8},
           {"#ff7f0e", clipped ? "TSS_i (up to " + std::to_string(static_cast<int>(tss_max)) + ", off scale)" : "TSS_i",
            "stroke-dasharray=\"7 3\"", 1.6},
           {"#555", "min(TSS_i, i, L−i)", "stroke-dasharray=\"2 2\"", 1.6}}) {
    doc.line(lx, ly - 4, lx + 20, ly - 4, colour, w, dash);
    doc.text(lx + 25, ly, name, 10.5);
    lx += 36 + 5.9 * name.size();
  }

  // Heat map: channels × blocks of the batch-averaged ESS, binned by averaging when large.
  const int rows = std::max(1, std::min(C, kMaxHeatRows)), cols = std::max(1, std::min(I, kMaxHeatCols));
  std::vector<double> cell(static_cast<size_t>(rows) * cols, 0.0), count(cell.size(), 0.0);
  for (int c = 0; c < C; ++c)
    for (int p = 0; p < I; ++p)
      for (int b = 0; b < R.batch; ++b) {
        const double v = block_ess(R, metric, b, c, p);
        if (std::isnan(v)) continue;
        const size_t k = static_cast<size_t>(static_cast<long>(c) * rows / C) * cols + static_cast<long>(p) * cols / I;
        cell[k] += v;
        count[k] += 1;
      }
  double vmax = 0;
  for (size_t k = 0; k < cell.size(); ++k)
    if (count[k] > 0) vmax = std::max(vmax, cell[k] /= count[k]);
  if (!(vmax > 0)) vmax = 1;
  const double hx = 2 * kMargin + panel_w, hw = panel_w - 45, hy = py0, hh = kPanelHeight;
  // Palette: 0..254 the colour map over [0, vmax], 255 grey for cells without a usable block.
  std::vector<svg::Rgb> palette;
  for (int k = 0; k < 255; ++k) palette.push_back(svg::colormap_rgb(k / 254.0));
  palette.push_back({204, 204, 204});
  // Replicate cells up to about the drawn size so every viewer shows crisp cells.
  const int rx = std::max(1, static_cast<int>(hw / cols)), ry = std::max(1, static_cast<int>(hh / rows));
  const int W = cols * rx, H = rows * ry;
  std::vector<std::uint8_t> pixels(static_cast<size_t>(W) * H);
  for (int r = 0; r < H; ++r)
    for (int x = 0; x < W; ++x) {
      const size_t k = static_cast<size_t>(r / ry) * cols + x / rx;
      pixels[static_cast<size_t>(r) * W + x] =
          count[k] > 0 ? static_cast<std::uint8_t>(std::lround(std::clamp(cell[k] / vmax, 0.0, 1.0) * 254)) : 255;
    }
  doc.image_png(hx, hy, hw, hh, svg::png_palette(W, H, pixels, palette));
  doc.rect(hx, hy, hw, hh, "none", "stroke=\"#444\"");
  doc.text(hx + hw / 2, hy - 8,
           mname + " per " + kind + " and block" + (R.batch > 1 ? " (batch mean)" : "") +
               (C > rows || I > cols ? ", binned" : ""),
           13, "middle", "font-weight=\"bold\"");
  // x ticks at the centres of the blocks' columns (indices are evenly spaced).
  const std::vector<double> hticks =
      I > 1 ? svg::integer_ticks(xs.front(), xs.back(), 5) : std::vector<double>(xs.begin(), xs.end());
  for (double t : hticks) {
    const double f = I > 1 ? (t - xs.front()) / (xs.back() - xs.front()) * (I - 1) : 0;
    const double x = hx + (f + 0.5) / std::max(I, 1) * hw;
    doc.line(x, hy + hh, x, hy + hh + 4, "#444");
    doc.text(x, hy + hh + 16, svg::format_tick(t), 11, "middle");
  }
  doc.text(hx + hw / 2, hy + hh + 32, "block index i", 12, "middle");
  for (double t : svg::integer_ticks(0, C - 1, 4)) {
    const double y = hy + (t + 0.5) / C * hh;
    doc.line(hx - 4, y, hx, y, "#444");
    doc.text(hx - 6, y + 4, svg::format_tick(t), 11, "end");
  }
  doc.text(hx - 42, hy + hh / 2, kind + " index", 12, "middle", "", -90);
  // Colour bar with a labelled scale.
  const double bx = hx + hw + 12;
  for (int s = 0; s < 64; ++s) doc.rect(bx, hy + hh - (s + 1) * hh / 64, 12, hh / 64 + 0.4, svg::colormap(s / 63.0));
  doc.rect(bx, hy, 12, hh, "none", "stroke=\"#444\"");
  for (double t : svg::nice_ticks(0, vmax, 4)) {
    const double y = hy + hh - t / vmax * hh;
    doc.line(bx + 12, y, bx + 16, y, "#444");
    doc.text(bx + 18, y + 4, svg::format_tick(t), 10);
  }
  doc.text(bx + 6, hy - 8, "ESS", 11, "middle");
  doc.end_group();
}

// (d) Replacement trade-off (ess plan): per layer the mean block error of each sliding-window
// student (solid; with sinks dotted) and of each recurrent state (Eckart–Young tail, dashed) against
// its size, on log axes, with the plan's choice at the default options marked. Only for layers
// with students or kept singular values.
constexpr double kPlanPanelHeight = 230, kPlanFloor = -6;  // log10 of the smallest error drawn

bool has_plan_data(const LayerResult& R) { return !R.students.empty() || R.sigma_k > 0; }

double plan_height(const std::vector<const LayerResult*>& layers) {
  int n = 0;
  for (const auto* R : layers) n += has_plan_data(*R);
  return n == 0 ? 0 : 30 + kPlanPanelHeight + 60 + 16 * ((n + 2) / 3);
}

void plan_panel(svg::Document& doc, double top, const std::vector<const LayerResult*>& layers) {
  static const char* palette[] = {"#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd",
                                  "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf"};
  const PlanOptions o;  // the defaults of `ess plan`
  std::vector<std::pair<const LayerResult*, LayerPlan>> plans;
  int max_size = 2;
  for (const auto* R : layers) {
    if (!has_plan_data(*R)) continue;
    plans.emplace_back(R, plan_layer(*R, o));
    for (const auto& c : plans.back().second.candidates)
      if (c.kind != PlanKind::full) max_size = std::max(max_size, c.size + c.sinks);
  }
  const double xmax = std::ceil(std::log2(max_size));
  svg::Axes ax(doc, kMargin, top + 30, kWidth - 2 * kMargin - 70, kPlanPanelHeight, 0, xmax, kPlanFloor, 0.3);
  char err[32];
  std::snprintf(err, sizeof err, "%g", o.max_error);
  ax.frame(std::string("Replacement trade-off (ess plan): mean block error against size — window w (solid; + sinks "
                       "dotted), state N (Eckart–Young, dashed); ● the plan at max error ") +
               err,
           "size: window length w (+ sinks) or state N", "log10 relative error", false);
  std::vector<double> at;
  std::vector<std::string> labels;
  for (int k = 0; k <= static_cast<int>(xmax); ++k) {
    at.push_back(k);
    labels.push_back(std::to_string(1L << k));
  }
  ax.custom_xticks(at, labels);
  const double ylim = std::log10(o.max_error);
  doc.line(ax.x0(), ax.py(ylim), ax.x0() + ax.width(), ax.py(ylim), "#777", 1, "stroke-dasharray=\"6 4\"");
  doc.text(ax.x0() + ax.width() + 5, ax.py(ylim) + 4, std::string("max error ") + err, 10, "start", "fill=\"#555\"");
  auto ly = [&](double e) { return ax.py(std::max(kPlanFloor, e > 0 ? std::log10(e) : kPlanFloor)); };
  for (size_t k = 0; k < plans.size(); ++k) {
    const auto& [R, lp] = plans[k];
    const std::string colour = palette[k % 10];
    doc.begin_group(R->name + ": " + describe(lp.recommended, lp));
    for (int kind = 0; kind < 3; ++kind) {  // window, window + sinks, state
      std::vector<double> X, Y;
      for (const auto& c : lp.candidates) {
        const bool match = kind == 0   ? c.kind == PlanKind::window && c.sinks == 0
                           : kind == 1 ? c.kind == PlanKind::window && c.sinks > 0
                                       : c.kind == PlanKind::state;
        if (!match) continue;
        X.push_back(ax.px(std::log2(c.size + c.sinks)));
        Y.push_back(ly(c.error));
        doc.circle(X.back(), Y.back(), 2.2, colour);
      }
      const char* dash[] = {"", "stroke-dasharray=\"2 3\"", "stroke-dasharray=\"7 4\""};
      if (X.size() > 1) doc.polyline(X, Y, colour, 1.6, dash[kind]);
    }
    const PlanCandidate& r = lp.recommended;
    if (r.kind != PlanKind::full)
      doc.circle(ax.px(std::log2(r.size + r.sinks)), ly(r.error), 5.5, colour, "stroke=\"#000\" stroke-width=\"1.5\"");
    doc.end_group();
    // legend: three entries per line under the axis
    const double lx = kMargin + (k % 3) * (kWidth - 2 * kMargin) / 3,
                 lyy = top + 30 + kPlanPanelHeight + 50 + 16 * (k / 3);
    doc.line(lx, lyy - 4, lx + 18, lyy - 4, colour, 2.5);
    doc.text(lx + 24, lyy, R->name + " → " + describe(r, lp), 11);
  }
}

}  // namespace

std::string ess_figure_svg(const std::vector<const LayerResult*>& layers, const DiagnosisOptions& o,
                           const std::string& title) {
  if (layers.empty()) throw std::invalid_argument("ess_figure_svg: no layers");
  std::vector<LayerDiagnosis> diag;
  for (const auto* R : layers) diag.push_back(diagnose_layer(*R, o));
  const double overview_h = overview_height(layers.size()) + 30, plan_h = plan_height(layers);
  svg::Document doc(kWidth, 60 + overview_h + plan_h + kRowHeight * layers.size());
  doc.text(kWidth / 2, 26, title, 17, "middle", "font-weight=\"bold\"");
  char tol[32];
  std::snprintf(tol, sizeof tol, "%g", layers[0]->tol);
  doc.text(kWidth / 2, 46,
           std::string(to_string(o.metric)) + "-ESS (tol " + tol + ", " + to_string(layers[0]->tol_mode) + "); " +
               std::to_string(layers.size()) + " layer(s); hover a layer for its diagnosis",
           11, "middle", "fill=\"#555\"");
  overview(doc, 60, layers, diag, o.metric, o);
  if (plan_h > 0) plan_panel(doc, 60 + overview_h, layers);
  for (size_t k = 0; k < layers.size(); ++k)
    layer_row(doc, 60 + overview_h + plan_h + k * kRowHeight, *layers[k], diag[k], o.metric);
  return doc.str();
}

}  // namespace ess
