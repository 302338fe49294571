#include "analysis/summary.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <map>

#include "libess/error.h"

namespace ess {

Metric parse_metric(const std::string& s) {
  if (s == "tolerance") return Metric::tolerance;
  if (s == "entropy") return Metric::entropy;
  throw UsageError({"unknown ", Option{"metric"}, " '" + s + "' (expected tolerance or entropy)"});
}

const char* to_string(Metric m) { return m == Metric::tolerance ? "tolerance" : "entropy"; }

double block_ess(const LayerResult& R, Metric m, int b, int c, int pos) {
  const size_t k = R.at(b, c, pos);
  if (!R.status.empty() && R.status[k] != block_ok) return std::nan("");
  return m == Metric::tolerance ? static_cast<double>(R.tolerance_ess[k]) : R.entropy_ess[k];
}

std::vector<double> channel_mean_ess(const LayerResult& R, Metric m) {
  std::vector<double> out(R.channels, 0.0);
  for (int c = 0; c < R.channels; ++c) {
    double sum = 0;
    long n = 0;
    for (int b = 0; b < R.batch; ++b)
      for (int p = 0; p < R.num_indices(); ++p) {
        double v = block_ess(R, m, b, c, p);
        if (std::isnan(v)) continue;
        sum += v;
        ++n;
      }
    out[c] = n ? sum / n : std::nan("");
  }
  return out;
}

std::vector<double> channel_utilization(const LayerResult& R, Metric m) {
  std::vector<double> out(R.channels, 0.0);
  for (int c = 0; c < R.channels; ++c) {
    double sum = 0;
    long n = 0;
    for (int b = 0; b < R.batch; ++b)
      for (int p = 0; p < R.num_indices(); ++p) {
        if (R.attainable[p] <= 0) continue;
        double v = block_ess(R, m, b, c, p);
        if (std::isnan(v)) continue;
        sum += v / R.attainable[p];
        ++n;
      }
    out[c] = n ? sum / n : std::nan("");
  }
  return out;
}

std::vector<double> mean_profile(const LayerResult& R, Metric m) {
  std::vector<double> out(R.num_indices(), 0.0);
  for (int p = 0; p < R.num_indices(); ++p) {
    double sum = 0;
    long n = 0;
    for (int b = 0; b < R.batch; ++b)
      for (int c = 0; c < R.channels; ++c) {
        double v = block_ess(R, m, b, c, p);
        if (std::isnan(v)) continue;
        sum += v;
        ++n;
      }
    out[p] = n ? sum / n : std::nan("");
  }
  return out;
}

namespace {
double mean_of(const std::vector<double>& v) {
  double s = 0;
  long n = 0;
  for (double x : v)
    if (!std::isnan(x)) {
      s += x;
      ++n;
    }
  return n ? s / n : std::nan("");
}
double sum_of(const std::vector<double>& v) {
  double s = 0;
  for (double x : v)
    if (!std::isnan(x)) s += x;
  return s;
}
}  // namespace

namespace {

// Keeps entries [outer, I, inner] of `v` at the kept positions (`keep` of length I).
template <class T>
void keep_blocks(std::vector<T>& v, const std::vector<int>& keep, size_t I, size_t inner = 1) {
  if (v.empty() || I == 0) return;
  const size_t outer = v.size() / (I * inner);
  std::vector<T> out;
  out.reserve(outer * keep.size() * inner);
  for (size_t o = 0; o < outer; ++o)
    for (int p : keep)
      for (size_t k = 0; k < inner; ++k) out.push_back(v[(o * I + static_cast<size_t>(p)) * inner + k]);
  v = std::move(out);
}

}  // namespace

LayerResult interior_only(const LayerResult& R) {
  std::vector<int> keep;
  for (int p = 0; p < R.num_indices(); ++p) {
    const int i = R.indices[p];
    if (std::min(i, R.seq_len - i) >= R.tss[p]) keep.push_back(p);
  }
  LayerResult S = R;
  const size_t I = R.indices.size();
  if (keep.size() == I) return S;
  for (auto* v : {&S.indices, &S.tss, &S.attainable}) keep_blocks(*v, keep, I);
  keep_blocks(S.tolerance_ess, keep, I);
  keep_blocks(S.sigma_count, keep, I);
  for (auto* v :
       {&S.entropy_ess, &S.entropy_ess_lower, &S.entropy_ess_upper, &S.frobenius, &S.error_bound, &S.sigma_tail})
    keep_blocks(*v, keep, I);
  keep_blocks(S.status, keep, I);
  keep_blocks(S.sigma, keep, I, static_cast<size_t>(S.sigma_k));
  StudentResults& st = S.students;
  if (!st.empty()) {
    keep_blocks(st.masked_error, keep, I);
    keep_blocks(st.renormalized_error, keep, I);
    keep_blocks(st.tolerance_ess, keep, I);
    keep_blocks(st.entropy_ess, keep, I);
  }
  return S;
}

ResultsFile interior_only(const ResultsFile& file) {
  ResultsFile f = file;
  for (auto& R : f.layers) R = interior_only(R);
  return f;
}

LayerSummary summarize(const LayerResult& R) {
  LayerSummary S;
  S.name = R.name;
  S.family = R.family;
  S.channel_kind = to_string(R.channel_kind);
  S.engine = R.engine;
  S.tol_mode = to_string(R.tol_mode);
  S.tol = R.tol;
  S.layer_index = R.layer_index;
  S.batch = R.batch;
  S.channels = R.channels;
  S.seq_len = R.seq_len;
  S.blocks = R.num_indices();
  const auto tol_means = channel_mean_ess(R, Metric::tolerance);
  const auto ent_means = channel_mean_ess(R, Metric::entropy);
  S.mean_tolerance_ess = mean_of(tol_means);
  S.mean_entropy_ess = mean_of(ent_means);
  for (double x : tol_means) S.measured_channels += !std::isnan(x);
  S.total_tolerance_ess = S.measured_channels ? sum_of(tol_means) : std::nan("");
  S.total_entropy_ess = S.measured_channels ? sum_of(ent_means) : std::nan("");
  S.max_tolerance_ess = 0;
  S.max_entropy_ess = 0;
  for (int b = 0; b < R.batch; ++b)
    for (int c = 0; c < R.channels; ++c)
      for (int p = 0; p < R.num_indices(); ++p) {
        double t = block_ess(R, Metric::tolerance, b, c, p), e = block_ess(R, Metric::entropy, b, c, p);
        if (std::isnan(t)) {
          ++S.bad_blocks;
          continue;
        }
        S.max_tolerance_ess = std::max(S.max_tolerance_ess, t);
        S.max_entropy_ess = std::max(S.max_entropy_ess, e);
      }
  // No usable block (failed or uncertified everywhere): no maximum either, as there is no mean.
  if (S.bad_blocks == static_cast<long>(R.batch) * R.channels * R.num_indices() && S.bad_blocks > 0)
    S.max_tolerance_ess = S.max_entropy_ess = std::nan("");
  for (std::uint8_t st : R.status) S.uncertified_blocks += st == block_uncertified;
  for (size_t k = 0; k < R.entropy_ess_lower.size(); ++k) {
    const double lo = R.entropy_ess_lower[k], hi = R.entropy_ess_upper[k];
    if (!(hi > lo)) continue;
    ++S.interval_blocks;
    S.max_interval_rel = std::max(S.max_interval_rel, (hi - lo) / hi);
  }
  double tss_sum = 0;
  for (int p = 0; p < R.num_indices(); ++p) {
    tss_sum += R.tss[p];
    S.max_tss = std::max<double>(S.max_tss, R.tss[p]);
  }
  S.mean_tss = R.num_indices() ? tss_sum / R.num_indices() : 0;
  S.utilization = mean_of(channel_utilization(R, Metric::tolerance));
  S.entropy_utilization = mean_of(channel_utilization(R, Metric::entropy));
  return S;
}

ResultsSummary summarize(const ResultsFile& file) {
  ResultsSummary out;
  for (const auto& R : file.layers) {
    out.layers.push_back(summarize(R));
    if (out.layers.back().measured_channels == 0) {
      ++out.unmeasured_layers;
    } else {
      out.total_tolerance_ess += out.layers.back().total_tolerance_ess;
      out.total_entropy_ess += out.layers.back().total_entropy_ess;
    }
    out.bad_blocks += out.layers.back().bad_blocks;
    out.uncertified_blocks += out.layers.back().uncertified_blocks;
    out.interval_blocks += out.layers.back().interval_blocks;
    out.max_interval_rel = std::max(out.max_interval_rel, out.layers.back().max_interval_rel);
  }
  if (!out.layers.empty() && out.unmeasured_layers == static_cast<int>(out.layers.size()))
    out.total_tolerance_ess = out.total_entropy_ess = std::nan("");
  return out;
}

nlohmann::ordered_json to_json(const LayerSummary& s) {
  return {{"name", s.name},
          {"layer_index", s.layer_index},
          {"family", s.family},
          {"channel_kind", s.channel_kind},
          {"batch", s.batch},
          {"channels", s.channels},
          {"measured_channels", s.measured_channels},
          {"seq_len", s.seq_len},
          {"blocks", s.blocks},
          {"engine", s.engine},
          {"tol", s.tol},
          {"tol_mode", s.tol_mode},
          {"mean_tolerance_ess", s.mean_tolerance_ess},
          {"max_tolerance_ess", s.max_tolerance_ess},
          {"total_tolerance_ess", s.total_tolerance_ess},
          {"mean_entropy_ess", s.mean_entropy_ess},
          {"max_entropy_ess", s.max_entropy_ess},
          {"total_entropy_ess", s.total_entropy_ess},
          {"mean_tss", s.mean_tss},
          {"max_tss", s.max_tss},
          {"utilization", s.utilization},
          {"entropy_utilization", s.entropy_utilization},
          {"bad_blocks", s.bad_blocks},
          {"uncertified_blocks", s.uncertified_blocks},
          {"entropy_interval_blocks", s.interval_blocks},
          {"max_entropy_interval_rel", s.max_interval_rel}};
}

PredictionSummary summarize_predictions(const ResultsFile& file) {
  PredictionSummary S;
  S.mqar_accuracy = file.provenance.mqar_accuracy;
  const Predictions& p = file.predictions;
  if (!p.present()) return S;
  S.present = true;
  S.batch = p.batch;
  S.seq_len = p.seq_len;
  S.scored = p.scored();
  S.loss = p.loss;
  S.perplexity = p.perplexity;
  long right = 0;
  for (int b = 0; b < p.batch; ++b)
    for (int t = 0; t + 1 < p.seq_len; ++t) right += p.argmax[p.at(b, t)] == p.input_ids[p.at(b, t + 1)];
  S.accuracy = S.scored ? static_cast<double>(right) / S.scored : std::nan("");
  return S;
}

nlohmann::ordered_json to_json(const PredictionSummary& p) {
  if (!p.present) return nullptr;
  nlohmann::ordered_json j{{"batch", p.batch}, {"seq_len", p.seq_len},       {"scored_tokens", p.scored},
                           {"loss", p.loss},   {"perplexity", p.perplexity}, {"next_token_accuracy", p.accuracy}};
  if (p.mqar_accuracy >= 0) j["mqar_accuracy"] = p.mqar_accuracy;
  return j;
}

PerPosition per_position(const ResultsFile& file, Metric m) {
  PerPosition out;
  out.metric = m;
  std::map<int, PositionRow> rows;
  const double nan = std::numeric_limits<double>::quiet_NaN();
  const size_t n_layers = file.layers.size();
  for (size_t l = 0; l < n_layers; ++l) {
    const LayerResult& R = file.layers[l];
    out.layers.push_back(R.name);
    const std::vector<double> profile = mean_profile(R, m);
    for (int k = 0; k < R.num_indices(); ++k) {
      PositionRow& row = rows[R.indices[k]];
      if (row.ess.empty()) row.ess.assign(n_layers, nan);
      row.ess[l] = profile[k];
    }
  }
  const Predictions& p = file.predictions;
  for (auto& [i, row] : rows) {
    row.i = i;
    row.loss = row.accuracy = nan;
    if (p.present() && i >= 1 && i < p.seq_len) {
      double sum = 0;
      long right = 0;
      for (int b = 0; b < p.batch; ++b) {
        sum += p.logprobs[p.at(b, i - 1)];
        right += p.argmax[p.at(b, i - 1)] == p.input_ids[p.at(b, i)];
      }
      row.loss = -sum / p.batch;
      row.accuracy = static_cast<double>(right) / p.batch;
    }
    out.rows.push_back(std::move(row));
  }
  return out;
}

nlohmann::ordered_json to_json(const PerPosition& p) {
  nlohmann::ordered_json rows = nlohmann::ordered_json::array();
  for (const PositionRow& r : p.rows)
    rows.push_back({{"i", r.i}, {"loss", r.loss}, {"next_token_accuracy", r.accuracy}, {"ess", r.ess}});
  return {{"metric", to_string(p.metric)}, {"layers", p.layers}, {"positions", rows}};
}

}  // namespace ess
