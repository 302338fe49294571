#include "analysis/study.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <ctime>
#include <filesystem>
#include <numeric>
#include <random>
#include <sstream>

#include "analysis/summary.h"
#include "analysis/svg.h"
#include "libess/error.h"
#include "libess/pipeline.h"
#include "models/fingerprint.h"
#include "models/model.h"

namespace ess {

// --- statistics ---------------------------------------------------------------------------------

double pearson(const std::vector<double>& x, const std::vector<double>& y) {
  const size_t n = std::min(x.size(), y.size());
  if (n < 3) return std::nan("");
  double mx = 0, my = 0;
  for (size_t k = 0; k < n; ++k) {
    mx += x[k];
    my += y[k];
  }
  mx /= n;
  my /= n;
  double sxy = 0, sxx = 0, syy = 0;
  for (size_t k = 0; k < n; ++k) {
    sxy += (x[k] - mx) * (y[k] - my);
    sxx += (x[k] - mx) * (x[k] - mx);
    syy += (y[k] - my) * (y[k] - my);
  }
  if (!(sxx > 0) || !(syy > 0)) return std::nan("");
  return std::max(-1.0, std::min(1.0, sxy / std::sqrt(sxx * syy)));
}

std::vector<double> average_ranks(const std::vector<double>& x) {
  const size_t n = x.size();
  std::vector<size_t> order(n);
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(), [&](size_t a, size_t b) { return x[a] < x[b]; });
  std::vector<double> rank(n);
  for (size_t k = 0; k < n;) {
    size_t e = k;
    while (e + 1 < n && x[order[e + 1]] == x[order[k]]) ++e;
    const double r = 0.5 * (static_cast<double>(k) + static_cast<double>(e)) + 1.0;  // average of k+1 … e+1
    for (size_t m = k; m <= e; ++m) rank[order[m]] = r;
    k = e + 1;
  }
  return rank;
}

double spearman(const std::vector<double>& x, const std::vector<double>& y) {
  return pearson(average_ranks(x), average_ranks(y));
}

Interval bootstrap_interval(const std::vector<double>& x, const std::vector<double>& y, bool use_spearman,
                            int resamples, std::uint64_t seed, double level) {
  Interval out;
  const size_t n = std::min(x.size(), y.size());
  if (n < 3 || resamples <= 0) {
    out.lo = out.hi = std::nan("");
    return out;
  }
  std::mt19937_64 rng(seed);
  std::uniform_int_distribution<size_t> pick(0, n - 1);
  std::vector<double> stats, bx(n), by(n);
  stats.reserve(resamples);
  for (int r = 0; r < resamples; ++r) {
    for (size_t k = 0; k < n; ++k) {
      const size_t j = pick(rng);
      bx[k] = x[j];
      by[k] = y[j];
    }
    const double s = use_spearman ? spearman(bx, by) : pearson(bx, by);
    if (std::isfinite(s)) stats.push_back(s);
  }
  out.valid = static_cast<int>(stats.size());
  if (stats.empty()) {
    out.lo = out.hi = std::nan("");
    return out;
  }
  std::sort(stats.begin(), stats.end());
  auto quantile = [&](double q) {  // linear interpolation between order statistics (numpy's default)
    const double pos = q * (stats.size() - 1);
    const size_t lo = static_cast<size_t>(std::floor(pos));
    const size_t hi = std::min(lo + 1, stats.size() - 1);
    return stats[lo] + (pos - lo) * (stats[hi] - stats[lo]);
  };
  out.lo = quantile((1 - level) / 2);
  out.hi = quantile((1 + level) / 2);
  return out;
}

// --- rows ----------------------------------------------------------------------------------------

bool parse_mqar_input(const std::string& input, int* kv, int* len) {
  if (input.rfind("mqar ", 0) != 0) return false;
  int k = 0, l = 0;
  std::stringstream in(input.substr(5));
  std::string item;
  while (std::getline(in, item, ',')) {
    const auto eq = item.find('=');
    if (eq == std::string::npos) continue;
    const std::string key = item.substr(0, eq);
    try {
      if (key == "kv") k = std::stoi(item.substr(eq + 1));
      if (key == "len") l = std::stoi(item.substr(eq + 1));
    } catch (...) {
      return false;
    }
  }
  if (k <= 0 || l <= 0) return false;
  *kv = k;
  *len = l;
  return true;
}

namespace {

double nan_mean(const std::vector<double>& v) {
  double s = 0;
  long n = 0;
  for (double x : v)
    if (std::isfinite(x)) {
      s += x;
      ++n;
    }
  return n ? s / n : std::nan("");
}

}  // namespace

const std::vector<std::pair<std::string, std::string>>& study_predictors() {
  static const std::vector<std::pair<std::string, std::string>> p = {
      {"tolerance_ess/kv", "mean over layers and channels of the mean tolerance-ESS_i, divided by kv"},
      {"entropy_ess/kv", "the same with entropy-ESS"},
      {"total_tolerance_ess/kv", "mean over layers of the tolerance-ESS summed over channels, divided by kv"},
      {"total_entropy_ess/kv", "the same with entropy-ESS"},
      {"min_layer_tolerance_ess/kv", "the smallest layer's mean tolerance-ESS (the bottleneck), divided by kv"},
      {"min_layer_entropy_ess/kv", "the same with entropy-ESS"},
      {"tss/kv", "mean over layers of the mean TSS_i of one channel, divided by kv"},
      {"total_tss/kv", "mean over layers of TSS summed over channels, divided by kv"},
      {"utilization", "mean over layers and channels of tolerance-ESS_i / min(TSS_i, i, L−i)"},
      {"entropy_utilization", "the same with entropy-ESS"},
  };
  return p;
}

StudyRow study_row(const ResultsFile& file, const std::string& name) {
  StudyRow row;
  row.name = name;
  row.results = file.path;
  row.source = file.provenance.source;
  row.input = file.provenance.input;
  row.architecture = file.provenance.architecture;
  row.accuracy = file.provenance.mqar_accuracy;
  parse_mqar_input(row.input, &row.kv, &row.len);
  if (file.layers.empty()) throw InputError(file.path + ": no layers");
  std::vector<double> tol, ent, ttol, tent, tss, ttss, util, eutil;
  for (const auto& R : file.layers) {
    const LayerSummary S = summarize(R);
    StudyLayer L;
    L.name = R.name;
    L.family = R.family;
    L.layer_index = R.layer_index;
    L.channels = R.channels;
    L.tolerance_ess = S.mean_tolerance_ess;
    L.entropy_ess = S.mean_entropy_ess;
    L.total_tolerance_ess = S.total_tolerance_ess;
    L.total_entropy_ess = S.total_entropy_ess;
    L.tss = S.mean_tss;
    L.utilization = S.utilization;
    L.entropy_utilization = S.entropy_utilization;
    row.layers.push_back(L);
    tol.push_back(L.tolerance_ess);
    ent.push_back(L.entropy_ess);
    ttol.push_back(L.total_tolerance_ess);
    tent.push_back(L.total_entropy_ess);
    tss.push_back(L.tss);
    ttss.push_back(L.tss * L.channels);
    util.push_back(L.utilization);
    eutil.push_back(L.entropy_utilization);
  }
  row.tolerance_ess = nan_mean(tol);
  row.entropy_ess = nan_mean(ent);
  row.total_tolerance_ess = nan_mean(ttol);
  row.total_entropy_ess = nan_mean(tent);
  row.tss = nan_mean(tss);
  row.total_tss = nan_mean(ttss);
  row.utilization = nan_mean(util);
  row.entropy_utilization = nan_mean(eutil);
  row.min_layer_tolerance_ess = *std::min_element(tol.begin(), tol.end());
  row.min_layer_entropy_ess = *std::min_element(ent.begin(), ent.end());
  const double kv = row.kv > 0 ? row.kv : std::nan("");
  row.predictors = {{"tolerance_ess/kv", row.tolerance_ess / kv},
                    {"entropy_ess/kv", row.entropy_ess / kv},
                    {"total_tolerance_ess/kv", row.total_tolerance_ess / kv},
                    {"total_entropy_ess/kv", row.total_entropy_ess / kv},
                    {"min_layer_tolerance_ess/kv", row.min_layer_tolerance_ess / kv},
                    {"min_layer_entropy_ess/kv", row.min_layer_entropy_ess / kv},
                    {"tss/kv", row.tss / kv},
                    {"total_tss/kv", row.total_tss / kv},
                    {"utilization", row.utilization},
                    {"entropy_utilization", row.entropy_utilization}};
  return row;
}

std::vector<Correlation> correlate(const std::vector<StudyRow>& rows, const StudyOptions& o) {
  if (o.resamples < 0) throw UsageError("--bootstrap must be ≥ 0");
  if (!(o.level > 0 && o.level < 1)) throw UsageError("the interval level must lie in (0, 1)");
  std::vector<Correlation> out;
  for (const auto& [name, what] : study_predictors()) {
    (void)what;
    std::vector<double> x, y;
    for (const auto& r : rows) {
      auto it = r.predictors.find(name);
      if (r.accuracy < 0 || it == r.predictors.end() || !std::isfinite(it->second)) continue;
      x.push_back(it->second);
      y.push_back(r.accuracy);
    }
    Correlation c;
    c.predictor = name;
    c.n = static_cast<int>(x.size());
    c.pearson = pearson(x, y);
    c.spearman = spearman(x, y);
    c.pearson_ci = bootstrap_interval(x, y, false, o.resamples, o.seed, o.level);
    c.spearman_ci = bootstrap_interval(x, y, true, o.resamples, o.seed, o.level);
    out.push_back(c);
  }
  return out;
}

// --- analyze ---------------------------------------------------------------------------------------

ResultsFile analyze_mqar(const std::string& checkpoint, const MqarSpec& spec, const EssOptions& requested,
                         const std::string& command_line, const TokenWindows& at) {
  auto model = models::load_causal_lm(checkpoint);
  const TokenBatch batch = make_mqar(spec, model->vocab_size());
  EssOptions options = requested;
  if (at.active()) options.indices = indices_at_tokens(batch.tokens, at);
  models::ModelRun run = model->run(batch.tokens);
  ResultsFile file;
  file.command_line = command_line;
  Provenance& prov = file.provenance;
  prov.source = checkpoint;
  prov.source_sha256 = models::checkpoint_sha256(checkpoint);
  prov.input = batch.description;
  prov.architecture = model->architecture();
  prov.mqar_accuracy = mqar_accuracy(batch, run.argmax);
  const Pipeline pipeline(options);
  pipeline.check_memory(run.layers);  // every layer against the memory limit before the first is measured
  const int count = static_cast<int>(run.layers.size());
  for (int k = 0; k < count; ++k) {
    file.layers.push_back(pipeline.measure(run.layers[k], k, count));
    run.layers[k].op.reset();
  }
  return file;
}

// --- figure ------------------------------------------------------------------------------------------

std::string study_svg(const std::vector<StudyRow>& rows, const std::vector<Correlation>& correlations,
                      const std::vector<std::string>& predictors, const std::string& color_label) {
  const int panels = static_cast<int>(predictors.size());
  if (panels == 0) throw UsageError("the figure needs at least one predictor");
  for (const auto& p : predictors) {
    bool known = false;
    for (const auto& [name, what] : study_predictors()) known |= name == p;
    if (!known) throw UsageError("unknown predictor '" + p + "'");
  }
  // Colour classes: the distinct values of the label, in order of appearance.
  std::vector<std::string> classes;
  for (const auto& r : rows) {
    auto it = r.labels.find(color_label);
    const std::string c = it == r.labels.end() ? r.architecture : it->second;
    if (std::find(classes.begin(), classes.end(), c) == classes.end()) classes.push_back(c);
  }
  static const char* palette[] = {"#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd",
                                  "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf"};
  auto colour_of = [&](const StudyRow& r) {
    auto it = r.labels.find(color_label);
    const std::string c = it == r.labels.end() ? r.architecture : it->second;
    const size_t k = std::find(classes.begin(), classes.end(), c) - classes.begin();
    return std::string(palette[k % 10]);
  };
  const double pw = 330, ph = 260, left = 70, top = 60, gap = 80;
  svg::Document doc(left + panels * (pw + gap), top + ph + 110 + 18 * ((classes.size() + 3) / 4));
  doc.text(left, 24, "MQAR accuracy against each predictor (log x axis; one dot per model and input)", 15, "start",
           "font-weight=\"bold\"");
  for (int k = 0; k < panels; ++k) {
    const std::string& p = predictors[k];
    std::vector<double> xs;
    for (const auto& r : rows) {
      auto it = r.predictors.find(p);
      if (r.accuracy >= 0 && it != r.predictors.end() && std::isfinite(it->second) && it->second > 0)
        xs.push_back(std::log10(it->second));
    }
    double lo = xs.empty() ? -1 : *std::min_element(xs.begin(), xs.end());
    double hi = xs.empty() ? 1 : *std::max_element(xs.begin(), xs.end());
    if (hi - lo < 1) {
      lo = std::floor(lo);
      hi = lo + 1;
    }
    lo -= 0.05 * (hi - lo);
    hi += 0.05 * (hi - lo);
    const double x0 = left + k * (pw + gap);
    svg::Axes ax(doc, x0, top, pw, ph, lo, hi, 0, 1);
    std::string title = p;
    for (const auto& c : correlations)
      if (c.predictor == p) {
        char buf[160];
        std::snprintf(buf, sizeof buf, "%s: Spearman %.2f [%.2f, %.2f]", p.c_str(), c.spearman, c.spearman_ci.lo,
                      c.spearman_ci.hi);
        title = buf;
      }
    ax.frame(title, "", "accuracy", false);
    for (int e = static_cast<int>(std::floor(lo)); e <= static_cast<int>(std::ceil(hi)); ++e) {
      if (e < lo || e > hi) continue;
      const double x = ax.px(e);
      doc.line(x, top + ph, x, top + ph + 4, "#444", 1);
      doc.text(x, top + ph + 16, svg::format_tick(std::pow(10.0, e)), 11, "middle");
    }
    doc.text(x0 + pw / 2, top + ph + 34, p + " (log scale)", 12, "middle");
    for (const auto& r : rows) {
      auto it = r.predictors.find(p);
      if (r.accuracy < 0 || it == r.predictors.end() || !std::isfinite(it->second) || !(it->second > 0)) continue;
      doc.begin_group(r.name + ": accuracy " + std::to_string(r.accuracy) + ", " + p + " " +
                      std::to_string(it->second));
      doc.circle(ax.px(std::log10(it->second)), ax.py(r.accuracy), 3.5, colour_of(r),
                 "fill-opacity=\"0.75\" stroke=\"#222\" stroke-width=\"0.4\"");
      doc.end_group();
    }
  }
  const double ly = top + ph + 62;
  for (size_t c = 0; c < classes.size(); ++c) {
    const double x = left + (c % 4) * 200, y = ly + 18 * (c / 4);
    doc.circle(x, y - 4, 5, palette[c % 10]);
    doc.text(x + 10, y, color_label + " = " + classes[c], 12);
  }
  return doc.str();
}

}  // namespace ess
