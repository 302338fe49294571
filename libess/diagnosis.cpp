#include "libess/diagnosis.h"

#include <algorithm>
#include <cmath>
#include <sstream>

namespace ess {

const char* to_string(ChannelClass c) {
  switch (c) {
    case ChannelClass::healthy: return "healthy";
    case ChannelClass::saturated: return "saturated";
    case ChannelClass::collapsed: return "collapsed";
    case ChannelClass::dead: return "dead";
  }
  return "?";
}

bool DiagnosisOptions::IsValid(std::string* error) const {
  auto fail = [&](const std::string& m) {
    if (error) *error = m;
    return false;
  };
  if (!(saturated >= 0 && saturated <= 1)) return fail("--saturated must be in [0, 1]");
  if (!(collapsed >= 0 && collapsed <= 1)) return fail("--collapsed must be in [0, 1]");
  if (collapsed >= saturated) return fail("--collapsed must be below --saturated");
  return true;
}

namespace {

std::string percent(double x) {
  std::ostringstream o;
  o << static_cast<int>(std::lround(100 * x)) << "%";
  return o.str();
}

std::string layer_label(const LayerDiagnosis& d) {
  return "layer " + std::to_string(d.layer_index) + " (" + d.name + ", " + d.family + ")";
}

std::string advice_for(const LayerDiagnosis& d, const DiagnosisOptions& o) {
  const int live = d.channels - d.dead;
  std::ostringstream a;
  const std::string who = layer_label(d);
  if (d.verdict == "dead") {
    a << who << " is dead: no channel carries anything across positions for this input. Check that the "
      << "input exercises it; otherwise the layer can be removed.";
    return a.str();
  }
  if (d.verdict == "saturated")
    a << who << " is saturated: " << percent(static_cast<double>(d.saturated) / live) << " of its live channels use ≥ "
      << percent(o.saturated) << " of the attainable state (mean utilization " << percent(d.utilization)
      << "). The state is too small for this input; a larger state, or attention, would help.";
  else if (d.verdict == "collapsed")
    a << who << " has collapsed: " << percent(static_cast<double>(d.collapsed) / live) << " of its live channels use ≤ "
      << percent(o.collapsed) << " of the attainable state (mean utilization " << percent(d.utilization)
      << "). Capacity is wasted; the layer could be distilled into a much smaller state (see `ess compress`).";
  else if (d.verdict == "healthy")
    a << who << " is healthy: mean utilization " << percent(d.utilization) << ", " << d.healthy << " of " << live
      << " live channels between the thresholds.";
  else
    a << who << " is mixed: " << d.saturated << " saturated, " << d.healthy << " healthy, " << d.collapsed
      << " collapsed channels (mean utilization " << percent(d.utilization)
      << "); look at the per-channel profile (`ess plot`).";
  if (d.dead > 0)
    a << " " << d.dead << " of " << d.channels << " channels are dead (ESS 0 everywhere) and can be pruned.";
  return a.str();
}

}  // namespace

LayerDiagnosis diagnose_layer(const LayerResult& R, const DiagnosisOptions& o) {
  LayerDiagnosis d;
  d.name = R.name;
  d.family = R.family;
  d.layer_index = R.layer_index;
  d.channels = R.channels;
  d.tss = R.tss.empty() ? 0 : *std::max_element(R.tss.begin(), R.tss.end());
  d.channel_utilization = channel_utilization(R, o.metric);
  double sum = 0;
  for (int c = 0; c < R.channels; ++c) {
    bool dead = true;
    for (int b = 0; b < R.batch && dead; ++b)
      for (int p = 0; p < R.num_indices() && dead; ++p) {
        const double v = block_ess(R, o.metric, b, c, p);
        if (!std::isnan(v) && v > 0) dead = false;
      }
    const double u = d.channel_utilization[c];
    ChannelClass k = dead                      ? ChannelClass::dead
                     : u >= o.saturated        ? ChannelClass::saturated
                     : u <= o.collapsed        ? ChannelClass::collapsed
                                               : ChannelClass::healthy;
    d.channel_class.push_back(k);
    switch (k) {
      case ChannelClass::dead: ++d.dead; break;
      case ChannelClass::saturated: ++d.saturated; break;
      case ChannelClass::collapsed: ++d.collapsed; break;
      case ChannelClass::healthy: ++d.healthy; break;
    }
    if (k != ChannelClass::dead && !std::isnan(u)) sum += u;
  }
  const int live = d.channels - d.dead;
  d.utilization = live > 0 ? sum / live : 0.0;
  if (live == 0)
    d.verdict = "dead";
  else if (2 * d.saturated >= live)
    d.verdict = "saturated";
  else if (2 * d.collapsed >= live)
    d.verdict = "collapsed";
  else if (2 * d.healthy >= live)
    d.verdict = "healthy";
  else
    d.verdict = "mixed";
  d.advice = advice_for(d, o);
  return d;
}

std::vector<LayerDiagnosis> diagnose(const ResultsFile& file, const DiagnosisOptions& options) {
  std::vector<LayerDiagnosis> out;
  for (const auto& R : file.layers) out.push_back(diagnose_layer(R, options));
  return out;
}

std::string model_summary(const std::vector<LayerDiagnosis>& layers) {
  std::vector<std::string> sat, col, dead;
  int dead_channels = 0;
  for (const auto& d : layers) {
    if (d.verdict == "saturated") sat.push_back(std::to_string(d.layer_index));
    if (d.verdict == "collapsed") col.push_back(std::to_string(d.layer_index));
    if (d.verdict == "dead") dead.push_back(std::to_string(d.layer_index));
    dead_channels += d.dead;
  }
  auto join = [](const std::vector<std::string>& v) {
    std::string s;
    for (size_t k = 0; k < v.size(); ++k) s += (k ? ", " : "") + v[k];
    return s;
  };
  std::ostringstream o;
  o << layers.size() << " layer(s): ";
  if (sat.empty() && col.empty() && dead.empty()) o << "no layer is saturated or collapsed.";
  if (!sat.empty()) o << "saturated: " << join(sat) << " (give these more state first). ";
  if (!col.empty()) o << "collapsed: " << join(col) << " (candidates for a smaller state). ";
  if (!dead.empty()) o << "dead: " << join(dead) << ". ";
  if (dead_channels) o << dead_channels << " dead channel(s) in total.";
  std::string s = o.str();
  while (!s.empty() && s.back() == ' ') s.pop_back();
  return s;
}

}  // namespace ess
