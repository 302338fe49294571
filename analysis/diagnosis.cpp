#include "analysis/diagnosis.h"

#include <algorithm>
#include <cmath>
#include <map>
#include <sstream>

#include "libess/error.h"

namespace ess {

const char* to_string(ChannelClass c) {
  switch (c) {
    case ChannelClass::healthy:
      return "healthy";
    case ChannelClass::saturated:
      return "saturated";
    case ChannelClass::collapsed:
      return "collapsed";
    case ChannelClass::dead:
      return "dead";
    case ChannelClass::unmeasured:
      return "unmeasured";
  }
  return "?";
}

const char* to_string(UtilizationBasis b) { return b == UtilizationBasis::state ? "state" : "attainable"; }

UtilizationBasis parse_utilization_basis(const std::string& s) {
  if (s == "state") return UtilizationBasis::state;
  if (s == "attainable") return UtilizationBasis::attainable;
  throw UsageError({"unknown ", Option{"utilization"}, " basis '" + s + "' (expected state or attainable)"});
}

void DiagnosisOptions::validate() const {
  if (!(saturated >= 0 && saturated <= 1)) throw UsageError({Option{"saturated"}, " must be in [0, 1]"});
  if (!(collapsed >= 0 && collapsed <= 1)) throw UsageError({Option{"collapsed"}, " must be in [0, 1]"});
  if (!(collapsed < saturated)) throw UsageError({Option{"collapsed"}, " must be below ", Option{"saturated"}});
}

bool DiagnosisOptions::IsValid(std::string* error) const {
  try {
    validate();
    return true;
  } catch (const UsageError& e) {
    if (error) *error = e.what();
    return false;
  }
}

namespace {

// Per channel: mean over (b, i) of ESS_i / TSS_i, blocks with TSS_i = 0 or a bad status skipped.
std::vector<double> state_utilization(const LayerResult& R, Metric m) {
  std::vector<double> out(R.channels, std::nan(""));
  for (int c = 0; c < R.channels; ++c) {
    double sum = 0;
    long n = 0;
    for (int b = 0; b < R.batch; ++b)
      for (int p = 0; p < R.num_indices(); ++p) {
        if (R.tss[p] <= 0) continue;
        const double v = block_ess(R, m, b, c, p);
        if (std::isnan(v)) continue;
        sum += v / R.tss[p];
        ++n;
      }
    if (n) out[c] = sum / n;
  }
  return out;
}

std::string percent(double x) {
  std::ostringstream o;
  o << static_cast<long>(std::lround(100 * x)) << "%";
  return o.str();
}

// What kind of capacity TSS measures for this layer, for the advice.
enum class Capacity { state, window, kv_cache, filter, none };

Capacity capacity_of(const LayerResult& R) {
  const std::string& f = R.family;
  if (f == "softmax_attention") {
    for (int p = 0; p < R.num_indices(); ++p)
      if (R.tss[p] < R.indices[p]) return Capacity::window;  // sliding window or sparse mask
    return Capacity::kv_cache;
  }
  if (f == "conv") return Capacity::filter;
  if (f == "dense") return Capacity::none;
  return Capacity::state;  // linear attention, RetNet, GLA, DeltaNet, Mamba, Mamba2, S4D
}

std::string saturated_advice(Capacity c) {
  switch (c) {
    case Capacity::state:
      return "The state is full on this input: if the model falls short on it, a larger state (or attention) is "
             "where to look first.";
    case Capacity::window:
      return "The window is full on this input: if the model falls short on it, a wider window (or full attention) "
             "is where to look first.";
    case Capacity::kv_cache:
      return "The layer needs its whole KV cache for this input (a full-rank operator): a fixed-size recurrent state "
             "would lose information here.";
    case Capacity::filter:
      return "The filter is too short for this input: a longer filter would help.";
    case Capacity::none:
      return "The operator is full-rank: no smaller state realizes it without loss.";
  }
  return "";
}

std::string collapsed_advice(Capacity c) {
  switch (c) {
    case Capacity::window:
    case Capacity::kv_cache:
      return "The layer uses little of its KV cache: a short window or a small recurrent state could replace it "
             "(see `ess compress`).";
    case Capacity::filter:
      return "A much shorter filter or a small state-space realization would do (see `ess compress`).";
    default:
      return "Capacity is unused on this input: the layer could be distilled into a much smaller state (see "
             "`ess compress`).";
  }
}

std::string basis_text(const DiagnosisOptions& o) {
  return o.basis == UtilizationBasis::state ? "of their state (ESS_i / TSS_i)"
                                            : "of the attainable state min(TSS_i, i, L−i)";
}

std::string advice_for(const LayerDiagnosis& d, const DiagnosisOptions& o, Capacity cap) {
  const int live = d.channels - d.dead - d.unmeasured;
  const std::string who = "layer " + std::to_string(d.layer_index) + " (" + d.name + ", " + d.family + ")";
  const std::string kind = d.channel_kind.empty() ? "channel" : d.channel_kind;
  const std::string of_channels = d.dead ? " of its live " + kind + "s" : " of its " + kind + "s";
  std::ostringstream a;
  if (d.verdict == "unmeasured")
    return who + " could not be measured: no block of it is usable (see 'status' in the results: failed, " +
           "or lanczos could not certify its values). No verdict; try --engine dense or structured.";
  if (d.verdict == "dead")
    return who + " is dead: no " + kind +
           " carries anything across positions for this input (ESS 0 at every block). "
           "Check that the input exercises it; otherwise the layer can be removed.";
  if (d.verdict == "partly dead") {
    a << who << " is partly dead: " << d.dead << " of " << d.channels << " " << kind
      << "s have ESS 0 at every block; prune them (or check that this input exercises them). The " << live
      << " live ones: " << d.saturated << " saturated, " << d.healthy << " healthy, " << d.collapsed
      << " collapsed (mean utilization " << percent(d.live_utilization) << ").";
    return a.str();
  }
  if (d.verdict == "saturated")
    a << who << " is saturated: " << percent(static_cast<double>(d.saturated) / live) << of_channels << " use ≥ "
      << percent(o.saturated) << " " << basis_text(o) << " (mean utilization " << percent(d.live_utilization) << "). "
      << saturated_advice(cap);
  else if (d.verdict == "collapsed")
    a << who << " has collapsed: " << percent(static_cast<double>(d.collapsed) / live) << of_channels << " use ≤ "
      << percent(o.collapsed) << " " << basis_text(o) << " (mean utilization " << percent(d.live_utilization)
      << "; mean " << to_string(o.metric) << "-ESS " << std::lround(d.mean_ess * 10) / 10.0 << " of TSS " << d.tss
      << "). " << collapsed_advice(cap);
  else if (d.verdict == "healthy")
    a << who << " is healthy: " << d.healthy << " of " << live << " live " << kind
      << "s between the thresholds (mean utilization " << percent(d.live_utilization) << "). No action needed.";
  else
    a << who << " is mixed: " << d.saturated << " saturated, " << d.healthy << " healthy, " << d.collapsed
      << " collapsed " << kind << "s (mean utilization " << percent(d.live_utilization)
      << "). Look at the heat map (`ess plot`): the state could be sized per " << kind << ".";
  if (d.dead > 0)
    a << " " << d.dead << " of " << d.channels << " " << kind << "s " << (d.dead == 1 ? "is" : "are")
      << " dead (ESS 0 at every block) and can be pruned.";
  if (d.input_limited && cap == Capacity::state)
    a << " Note: this input (L = " << d.seq_len << ") is too short to fill the state (TSS " << d.tss
      << " > min(i, L−i) at every block); judge the state on longer inputs.";
  return a.str();
}

}  // namespace

LayerDiagnosis diagnose_layer(const LayerResult& R, const DiagnosisOptions& o) {
  o.validate();
  LayerDiagnosis d;
  d.name = R.name;
  d.family = R.family;
  d.channel_kind = to_string(R.channel_kind);
  d.layer_index = R.layer_index;
  d.channels = R.channels;
  d.tss = R.tss.empty() ? 0 : *std::max_element(R.tss.begin(), R.tss.end());
  d.seq_len = R.seq_len;
  d.input_limited = R.num_indices() > 0;
  for (int p = 0; p < R.num_indices(); ++p)
    if (R.tss[p] <= std::min(R.indices[p], R.seq_len - R.indices[p])) d.input_limited = false;
  {
    double sum = 0;
    long n = 0;
    for (int b = 0; b < R.batch; ++b)
      for (int c = 0; c < R.channels; ++c)
        for (int p = 0; p < R.num_indices(); ++p) {
          const double v = block_ess(R, o.metric, b, c, p);
          if (std::isnan(v)) continue;
          sum += v;
          ++n;
        }
    d.mean_ess = n ? sum / n : 0.0;
  }
  d.channel_utilization =
      o.basis == UtilizationBasis::state ? state_utilization(R, o.metric) : channel_utilization(R, o.metric);
  double sum_all = 0, sum_live = 0;
  long n_all = 0;
  for (int c = 0; c < R.channels; ++c) {
    bool dead = true, measured = false;  // no usable block with ESS > 0; any usable block
    for (int b = 0; b < R.batch && dead; ++b)
      for (int p = 0; p < R.num_indices() && dead; ++p) {
        const double v = block_ess(R, o.metric, b, c, p);
        measured = measured || !std::isnan(v);
        if (!std::isnan(v) && v > 0) dead = false;
      }
    const double u = d.channel_utilization[c];
    if (!measured) {  // every block failed or was uncertified: nothing is known, not "dead"
      d.channel_class.push_back(ChannelClass::unmeasured);
      ++d.unmeasured;
      continue;
    }
    const ChannelClass k = dead               ? ChannelClass::dead
                           : u >= o.saturated ? ChannelClass::saturated
                           : u <= o.collapsed ? ChannelClass::collapsed
                                              : ChannelClass::healthy;
    d.channel_class.push_back(k);
    switch (k) {
      case ChannelClass::dead:
        ++d.dead;
        break;
      case ChannelClass::saturated:
        ++d.saturated;
        break;
      case ChannelClass::collapsed:
        ++d.collapsed;
        break;
      case ChannelClass::healthy:
        ++d.healthy;
        break;
      case ChannelClass::unmeasured:
        break;
    }
    if (std::isnan(u)) continue;
    sum_all += dead ? 0.0 : u;
    ++n_all;
    if (!dead) sum_live += u;
  }
  const int live = d.channels - d.dead - d.unmeasured, measured = d.channels - d.unmeasured;
  // No usable block at all: no utilization (NaN, null in JSON), not 0 % (which reads as collapsed).
  d.utilization = n_all > 0 ? sum_all / n_all : measured == 0 ? std::nan("") : 0.0;
  d.live_utilization = live > 0 ? sum_live / live : measured == 0 ? std::nan("") : 0.0;
  if (measured == 0) d.mean_ess = std::nan("");
  if (measured == 0)
    d.verdict = "unmeasured";
  else if (live == 0)
    d.verdict = "dead";
  else if (2 * d.dead > measured)
    d.verdict = "partly dead";
  else if (2 * d.saturated > live)
    d.verdict = "saturated";
  else if (2 * d.collapsed > live)
    d.verdict = "collapsed";
  else if (2 * d.healthy > live)
    d.verdict = "healthy";
  else
    d.verdict = "mixed";
  d.advice = advice_for(d, o, capacity_of(R));
  return d;
}

std::vector<LayerDiagnosis> diagnose(const ResultsFile& file, const DiagnosisOptions& options) {
  std::vector<LayerDiagnosis> out;
  for (const auto& R : file.layers) out.push_back(diagnose_layer(R, options));
  return out;
}

std::string model_summary(const std::vector<LayerDiagnosis>& layers) {
  std::vector<std::string> sat, col, dead, mixed, unmeasured;
  long dead_channels = 0, channels = 0;
  std::map<int, int> mixers;  // hybrids: several mixers of one block share its index; name the family
  for (const auto& d : layers) ++mixers[d.layer_index];
  for (const auto& d : layers) {
    const std::string id =
        std::to_string(d.layer_index) + (mixers[d.layer_index] > 1 ? " (" + d.family + ")" : std::string());
    if (d.verdict == "saturated") sat.push_back(id);
    if (d.verdict == "collapsed") col.push_back(id);
    if (d.verdict == "dead" || d.verdict == "partly dead") dead.push_back(id);
    if (d.verdict == "mixed") mixed.push_back(id);
    if (d.verdict == "unmeasured") unmeasured.push_back(id);
    dead_channels += d.dead;
    channels += d.channels;
  }
  auto join = [](const std::vector<std::string>& v) {
    std::string s;
    for (size_t k = 0; k < v.size(); ++k) s += (k ? ", " : "") + v[k];
    return s;
  };
  std::ostringstream o;
  o << layers.size() << " layer(s). ";
  if (sat.empty() && col.empty() && dead.empty() && mixed.empty() && unmeasured.empty())
    o << "Every layer is healthy. ";
  if (!sat.empty())
    o << "Saturated layers: " << join(sat) << " (their state is full on this input: if the model falls short, give "
      << "these more state first). ";
  if (!col.empty()) o << "Collapsed layers: " << join(col) << " (candidates for a smaller state; see `ess compress`). ";
  if (!mixed.empty()) o << "Mixed layers: " << join(mixed) << ". ";
  if (!dead.empty()) o << "Dead or mostly dead layers: " << join(dead) << ". ";
  if (!unmeasured.empty()) o << "Layers without a usable block (no verdict): " << join(unmeasured) << ". ";
  if (dead_channels)
    o << dead_channels << " of " << channels << " channels/heads " << (dead_channels == 1 ? "is" : "are")
      << " dead (prune them).";
  std::string s = o.str();
  while (!s.empty() && s.back() == ' ') s.pop_back();
  return s;
}

nlohmann::ordered_json to_json(const LayerDiagnosis& d) {
  nlohmann::ordered_json j = {
      {"name", d.name},
      {"layer_index", d.layer_index},
      {"family", d.family},
      {"channel_kind", d.channel_kind},
      {"tss", d.tss},
      {"utilization", d.utilization},
      {"live_utilization", d.live_utilization},
      {"mean_ess", d.mean_ess},
      {"input_limited", d.input_limited},
      {"verdict", d.verdict},
      {"channels", {{"saturated", d.saturated}, {"healthy", d.healthy}, {"collapsed", d.collapsed}, {"dead", d.dead}}},
      {"summary", d.advice}};
  // Only where there are some: the four classes above are what readers have always seen.
  if (d.unmeasured > 0) j["channels"]["unmeasured"] = d.unmeasured;
  return j;
}

}  // namespace ess
