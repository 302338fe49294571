#include "analysis/plan.h"

#include <algorithm>
#include <cmath>
#include <limits>

#include "analysis/compressibility.h"
#include "libess/error.h"

namespace ess {

WindowError parse_window_error(const std::string& s) {
  if (s == "masked") return WindowError::masked;
  if (s == "renormalized") return WindowError::renormalized;
  throw UsageError({Option{"window_error"}, " '" + s + "' (expected masked or renormalized)"});
}

const char* to_string(WindowError e) { return e == WindowError::masked ? "masked" : "renormalized"; }

const char* to_string(PlanKind k) {
  switch (k) {
    case PlanKind::full:
      return "full";
    case PlanKind::window:
      return "window";
    case PlanKind::state:
      return "state";
  }
  return "?";
}

void PlanOptions::validate() const {
  if (!(max_error >= 0) || !std::isfinite(max_error))
    throw UsageError({Option{"max_error"}, " must be a finite number ≥ 0"});
  for (int s : states)
    if (s <= 0) throw UsageError({Option{"states"}, " must be positive, got " + std::to_string(s)});
  if (!(state_weight > 0) || !std::isfinite(state_weight))
    throw UsageError({Option{"state_weight"}, " must be a finite number > 0"});
  if (d_head < 0) throw UsageError({Option{"d_head"}, " must be ≥ 1 (or 0: from the file)"});
  if (!(length_factor >= 1) || !std::isfinite(length_factor))
    throw UsageError({Option{"length_factor"}, " must be a finite number ≥ 1"});
}

namespace {

bool is_cache_based(const std::string& family) { return family == "softmax_attention" || family == "dense"; }

// Ranking: lower cost first; on a tie the simpler kind (full, then window, then state), then the
// smaller size and fewer sinks.
bool better(const PlanCandidate& a, const PlanCandidate& b) {
  const double tol = 1e-12 * std::max(std::abs(a.cost), std::abs(b.cost));
  if (std::abs(a.cost - b.cost) > tol) return a.cost < b.cost;
  if (a.kind != b.kind) return static_cast<int>(a.kind) < static_cast<int>(b.kind);
  if (a.size != b.size) return a.size < b.size;
  return a.sinks < b.sinks;
}

}  // namespace

LayerPlan plan_layer(const LayerResult& R, const PlanOptions& o) {
  LayerPlan lp;
  lp.name = R.name;
  lp.family = R.family;
  lp.layer_index = R.layer_index;
  lp.channels = R.channels;
  lp.seq_len = R.seq_len;
  lp.channel_kind = to_string(R.channel_kind);
  lp.cache_based = is_cache_based(R.family);
  const int L = R.seq_len;
  const double long_L = o.length_factor * L;
  // Numbers per key / value vector: a head's d_head (--d-head, else the file's head_dim, else
  // assumed), a single channel's 1.
  if (R.channel_kind == ChannelKind::head) {
    if (o.d_head > 0) {
      lp.d_head = o.d_head;
      lp.d_head_source = "--d-head";
    } else if (R.head_dim > 0) {
      lp.d_head = R.head_dim;
      lp.d_head_source = "file";
    } else {
      lp.d_head = kAssumedDHead;
      lp.d_head_source = "assumed";
      lp.notes.push_back(
          "the file records no head dimension (ess compute from an operator file, or an older ess): memory "
          "assumes d_head = " +
          std::to_string(kAssumedDHead) + "; give --d-head to set it");
    }
  }
  const double d = lp.d_head;
  const size_t n = static_cast<size_t>(R.batch) * R.channels * R.num_indices();
  auto usable = [&](size_t k) { return R.status.empty() || R.status[k] == block_ok; };
  for (size_t k = 0; k < n; ++k) lp.blocks += usable(k);

  auto finish = [&](PlanCandidate& c, double at_L, double at_long, bool is_state) {
    c.memory_at_L = at_L;
    c.memory_at_long = at_long;
    c.memory_per_token = L > 0 ? at_L / L : 0.0;
    c.cost = is_state ? o.state_weight * at_L : at_L;
    c.qualifies = c.error <= o.max_error;
  };

  // Keep the layer as it is.
  const int max_tss = R.tss.empty() ? 0 : *std::max_element(R.tss.begin(), R.tss.end());
  {
    PlanCandidate c;
    c.kind = PlanKind::full;
    if (lp.cache_based) {
      // Full causal attention has TSS_i = i (a cache of every past token, L at the end of the
      // sequence, growing with it); a windowed teacher min(i, w − 1): a constant cache of w.
      bool full_cache = true;
      for (int p = 0; p < R.num_indices(); ++p) full_cache = full_cache && R.tss[p] == R.indices[p];
      const double entries_L = full_cache ? L : std::min(max_tss + 1, L);
      const double entries_long = full_cache ? long_L : entries_L;
      c.size = static_cast<int>(entries_L);
      finish(c, 2 * entries_L * d, 2 * entries_long * d, false);
    } else {
      c.size = max_tss;  // the layer's own state
      finish(c, max_tss * d, max_tss * d, true);
    }
    lp.candidates.push_back(c);
  }

  // Sliding windows (with or without sinks) from the stored sparse students.
  const StudentResults& S = R.students;
  const int I = R.num_indices();
  bool any_window = false;
  for (size_t p = 0; p < S.patterns.size(); ++p) {
    const StudentPattern& pat = S.patterns[p];
    if (pat.topk > 0 || pat.window <= 0) continue;  // top-k keeps the whole cache: no memory saving
    PlanCandidate c;
    c.kind = PlanKind::window;
    c.size = pat.window;
    c.sinks = pat.sinks;
    long count = 0;
    double max_masked = 0, max_renorm = 0;
    for (int b = 0; b < R.batch; ++b)
      for (int ch = 0; ch < R.channels; ++ch)
        for (int pos = 0; pos < I; ++pos) {
          if (!usable(R.at(b, ch, pos))) continue;
          const size_t k = S.at(static_cast<int>(p), b, ch, pos, I);
          c.masked_error += S.masked_error[k];
          c.renormalized_error += S.renormalized_error[k];
          max_masked = std::max(max_masked, S.masked_error[k]);
          max_renorm = std::max(max_renorm, S.renormalized_error[k]);
          ++count;
        }
    if (count > 0) {
      c.masked_error /= count;
      c.renormalized_error /= count;
    }
    const bool masked = o.window_error == WindowError::masked;
    c.error = masked ? c.masked_error : c.renormalized_error;
    c.max_error = masked ? max_masked : max_renorm;
    const double entries = std::min(pat.window + pat.sinks, L);
    finish(c, 2 * entries * d, 2 * (pat.window + pat.sinks) * d, false);
    lp.candidates.push_back(c);
    any_window = true;
  }
  if (!any_window && lp.cache_based) {
    lp.notes.push_back(S.empty() ? "no sparse students in the file (measured by ess compute / analyze unless "
                                   "--students off): sliding windows not considered"
                                 : "no window student shorter than L in the file: sliding windows not considered");
  }

  // Recurrent states from the stored singular values (Eckart–Young tails).
  if (R.sigma_k <= 0 || R.sigma.empty()) {
    lp.notes.push_back("no singular values in the file (compute with --keep-sigma K): recurrent states not considered");
  } else {
    const int K = R.sigma_k;
    const int max_rank = R.attainable.empty() ? 0 : *std::max_element(R.attainable.begin(), R.attainable.end());
    std::vector<int> grid = o.states;
    if (grid.empty())
      for (long s = 1; s < max_rank; s *= 2) grid.push_back(static_cast<int>(s));
    std::sort(grid.begin(), grid.end());
    grid.erase(std::unique(grid.begin(), grid.end()), grid.end());
    // A state of the largest attainable rank max_i min(TSS_i, i, L−i) reproduces every block
    // exactly, whatever the operator: no compression (for full attention it is L/2 and grows with L).
    std::vector<int> states;
    int skipped = 0, trivial = 0;
    for (int s : grid) {
      if (s >= max_rank)
        ++trivial;
      else if (s <= K)
        states.push_back(s);
      else
        ++skipped;
    }
    if (trivial > 0)
      lp.notes.push_back(std::to_string(trivial) + " state size(s) ≥ the largest attainable rank " +
                         std::to_string(max_rank) + " not considered (they reproduce any operator at this length)");
    if (skipped > 0)
      lp.notes.push_back(std::to_string(skipped) + " state size(s) above K = " + std::to_string(K) +
                         " (the singular values kept per block) not considered; compute with a larger --keep-sigma");
    if (!states.empty()) {
      const LayerCompressibility comp = compressibility(R, states, o.max_error);
      for (const CompressTarget& t : comp.targets) {
        PlanCandidate c;
        c.kind = PlanKind::state;
        c.size = t.state;
        c.error = t.mean_tail;
        c.max_error = t.max_tail;
        finish(c, t.state * d, t.state * d, true);
        lp.candidates.push_back(c);
      }
    }
  }

  lp.recommended = lp.candidates.front();  // full always qualifies (error 0)
  for (const PlanCandidate& c : lp.candidates)
    if (c.qualifies && better(c, lp.recommended)) lp.recommended = c;
  return lp;
}

namespace {

nlohmann::ordered_json candidate_json(const PlanCandidate& c) {
  nlohmann::ordered_json j;
  j["kind"] = to_string(c.kind);
  j["size"] = c.size;
  if (c.kind == PlanKind::window) j["sinks"] = c.sinks;
  j["error"] = c.error;
  j["max_error"] = c.max_error;
  if (c.kind == PlanKind::window) {
    j["masked_error"] = c.masked_error;
    j["renormalized_error"] = c.renormalized_error;
  }
  j["qualifies"] = c.qualifies;
  j["memory_per_token"] = c.memory_per_token;
  j["memory_per_sequence"] = c.memory_at_L;
  j["memory_per_sequence_long"] = c.memory_at_long;
  j["cost"] = c.cost;
  return j;
}

}  // namespace

ModelPlan make_plan(const ResultsFile& file, const PlanOptions& options) {
  options.validate();
  ModelPlan plan;
  plan.file = file.path;
  plan.options = options;
  PlanSummary& s = plan.summary;
  s.long_factor = options.length_factor;
  for (const LayerResult& R : file.layers) {
    try {
      plan.layers.push_back(plan_layer(R, options));
    } catch (Error& e) {
      e.prepend("layer '" + R.name + "': ");
      throw;
    }
    const LayerPlan& lp = plan.layers.back();
    ++s.layers;
    s.full += lp.recommended.kind == PlanKind::full;
    s.window += lp.recommended.kind == PlanKind::window;
    s.state += lp.recommended.kind == PlanKind::state;
    s.seq_len = std::max(s.seq_len, lp.seq_len);
    const PlanCandidate& keep = lp.candidates.front();
    s.original_at_L += keep.memory_at_L * lp.channels;
    s.original_at_long += keep.memory_at_long * lp.channels;
    s.planned_at_L += lp.recommended.memory_at_L * lp.channels;
    s.planned_at_long += lp.recommended.memory_at_long * lp.channels;
  }
  return plan;
}

nlohmann::ordered_json to_json(const ModelPlan& plan) {
  using J = nlohmann::ordered_json;
  J layers = J::array();
  for (const LayerPlan& lp : plan.layers) {
    J cands = J::array();
    for (const auto& c : lp.candidates) cands.push_back(candidate_json(c));
    J notes = J::array();
    for (const auto& n : lp.notes) notes.push_back(n);
    layers.push_back(J{{"name", lp.name},
                       {"layer_index", lp.layer_index},
                       {"family", lp.family},
                       {"channel_kind", lp.channel_kind},
                       {"d_head", lp.d_head},
                       {"d_head_source", lp.d_head_source},
                       {"channels", lp.channels},
                       {"seq_len", lp.seq_len},
                       {"blocks", lp.blocks},
                       {"recommended", candidate_json(lp.recommended)},
                       {"candidates", cands},
                       {"notes", notes}});
  }
  const PlanSummary& s = plan.summary;
  const int replaced = s.window + s.state;
  auto saved_fraction = [](double orig, double planned) {
    return orig > 0 ? (orig - planned) / orig : std::numeric_limits<double>::quiet_NaN();
  };
  J summary{{"layers", s.layers},
            {"full", s.full},
            {"window", s.window},
            {"state", s.state},
            {"hybrid", std::to_string(replaced) + ":" + std::to_string(s.full)},
            {"hybrid_ratio", s.full > 0 ? J(static_cast<double>(replaced) / s.full) : J(nullptr)},
            {"seq_len", s.seq_len},
            {"long_seq_len", static_cast<long>(std::lround(s.long_factor * s.seq_len))},
            {"memory",
             {{"original_per_sequence", s.original_at_L},
              {"planned_per_sequence", s.planned_at_L},
              {"saved_per_sequence", s.original_at_L - s.planned_at_L},
              {"saved_fraction", saved_fraction(s.original_at_L, s.planned_at_L)},
              {"original_per_sequence_long", s.original_at_long},
              {"planned_per_sequence_long", s.planned_at_long},
              {"saved_per_sequence_long", s.original_at_long - s.planned_at_long},
              {"saved_fraction_long", saved_fraction(s.original_at_long, s.planned_at_long)}}}};
  const PlanOptions& o = plan.options;
  return J{{"file", plan.file},
           {"max_error", o.max_error},
           {"window_error", to_string(o.window_error)},
           {"state_weight", o.state_weight},
           {"d_head", o.d_head},
           {"layers", layers},
           {"summary", summary}};
}

std::vector<StudentSummary> summarize_students(const LayerResult& R) {
  std::vector<StudentSummary> out;
  const StudentResults& S = R.students;
  const int I = R.num_indices();
  const double nan = std::numeric_limits<double>::quiet_NaN();
  for (size_t p = 0; p < S.patterns.size(); ++p) {
    StudentSummary t;
    t.pattern = S.patterns[p];
    long ess_blocks = 0;
    for (int b = 0; b < R.batch; ++b)
      for (int c = 0; c < R.channels; ++c) {
        const size_t o = S.at(static_cast<int>(p), b, c, 0, 1);
        t.operator_masked += S.operator_masked_error[o];
        t.operator_renormalized += S.operator_renormalized_error[o];
        for (int pos = 0; pos < I; ++pos) {
          if (!R.status.empty() && R.status[R.at(b, c, pos)] != block_ok) continue;
          const size_t k = S.at(static_cast<int>(p), b, c, pos, I);
          t.mean_masked += S.masked_error[k];
          t.mean_renormalized += S.renormalized_error[k];
          t.max_masked = std::max(t.max_masked, S.masked_error[k]);
          t.max_renormalized = std::max(t.max_renormalized, S.renormalized_error[k]);
          ++t.blocks;
          if (S.has_ess && S.tolerance_ess[k] >= 0) {
            t.mean_tolerance_ess += S.tolerance_ess[k];
            t.mean_entropy_ess += S.entropy_ess[k];
            ++ess_blocks;
          }
        }
      }
    const double bc = static_cast<double>(R.batch) * R.channels;
    if (bc > 0) t.operator_masked /= bc, t.operator_renormalized /= bc;
    if (t.blocks > 0) t.mean_masked /= t.blocks, t.mean_renormalized /= t.blocks;
    if (ess_blocks > 0) {
      t.mean_tolerance_ess /= ess_blocks;
      t.mean_entropy_ess /= ess_blocks;
    } else {
      t.mean_tolerance_ess = t.mean_entropy_ess = nan;
    }
    out.push_back(t);
  }
  return out;
}

nlohmann::ordered_json to_json(const std::vector<StudentSummary>& students) {
  nlohmann::ordered_json a = nlohmann::ordered_json::array();
  for (const auto& t : students)
    a.push_back({{"pattern", to_string(t.pattern)},
                 {"window", t.pattern.window},
                 {"sinks", t.pattern.sinks},
                 {"topk", t.pattern.topk},
                 {"blocks", t.blocks},
                 {"mean_masked_error", t.mean_masked},
                 {"max_masked_error", t.max_masked},
                 {"mean_renormalized_error", t.mean_renormalized},
                 {"max_renormalized_error", t.max_renormalized},
                 {"operator_masked_error", t.operator_masked},
                 {"operator_renormalized_error", t.operator_renormalized},
                 {"mean_tolerance_ess", t.mean_tolerance_ess},
                 {"mean_entropy_ess", t.mean_entropy_ess}});
  return a;
}

std::string describe(const PlanCandidate& c, const LayerPlan& layer) {
  switch (c.kind) {
    case PlanKind::full:
      return layer.cache_based ? "full (cache " + std::to_string(c.size) + ")"
                               : "keep (state " + std::to_string(c.size) + ")";
    case PlanKind::window:
      return "window " + std::to_string(c.size) + (c.sinks > 0 ? " + " + std::to_string(c.sinks) + " sinks" : "");
    case PlanKind::state:
      return "state " + std::to_string(c.size);
  }
  return "?";
}

}  // namespace ess
