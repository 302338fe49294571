// A per-layer replacement plan (issue 14, `ess plan`): for every layer the cheapest replacement
// whose error stays within a bound — keep it as it is ("full": the whole KV cache of attention, the
// layer's own state otherwise), a sliding window w with or without s sink tokens (the sparse
// students stored by compute / analyze, libess/students.h), or a recurrent state N (the
// Eckart–Young tail of the stored singular values, analysis/compressibility.h) — with its memory,
// and a model-level summary. Definitions and the memory accounting: docs/analysis.md ("ess plan").
#pragma once
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "libess/results_io.h"

namespace ess {

enum class WindowError { masked, renormalized };
WindowError parse_window_error(const std::string& s);  // masked|renormalized; throws UsageError
const char* to_string(WindowError e);

struct PlanOptions {
  double max_error = 1e-2;  // a candidate qualifies when its mean block error is at most this
  std::vector<int> states;  // recurrent state sizes to consider; empty: 1, 2, 4, … (powers of two)
  WindowError window_error = WindowError::masked;
  double state_weight = 4;  // a state dimension counts this many d_head numbers when ranking (see docs)
  // Numbers per key / value vector of a head: 0 = each layer's head_dim as recorded in the file
  // (ess analyze records it), kAssumedDHead where the file has none (ess compute, older files).
  int d_head = 0;
  double length_factor = 4;  // the summary's second length: this × the measured L
  void validate() const;     // throws UsageError naming the field
};

// d_head of a head layer whose file records none (and --d-head is not given).
constexpr int kAssumedDHead = 64;

enum class PlanKind { full, window, state };
const char* to_string(PlanKind k);

struct PlanCandidate {
  PlanKind kind = PlanKind::full;
  int size = 0;   // full: cache length at the measured L (or the layer's own state); window: w; state: N
  int sinks = 0;  // window: sink tokens kept besides the window
  double error = 0, max_error = 0;                  // mean / max over usable blocks of the plan's error for this kind
  double masked_error = 0, renormalized_error = 0;  // windows: mean block errors of both students
  bool qualifies = false;
  // Memory of one sequence, per head (channel), in numbers: at the measured L and at length_factor × L;
  // per token: at_L / L.
  double memory_per_token = 0, memory_at_L = 0, memory_at_long = 0;
  double cost = 0;  // what the plan ranks by: memory_at_L, × state_weight for states
};

struct LayerPlan {
  std::string name, family;
  int layer_index = 0, channels = 0, seq_len = 0;
  std::string channel_kind;
  int d_head = 1;             // numbers per key / value vector the memory counts (1 for channel layers)
  std::string d_head_source;  // head layers: "file", "--d-head" or "assumed" (kAssumedDHead); "" for channels
  bool cache_based = false;   // attention-like (a KV cache): full = the cache, windows make sense
  long blocks = 0;            // usable blocks averaged over (batch × channels × indices, status ok)
  std::vector<PlanCandidate> candidates;  // full, windows (ascending), states (ascending)
  PlanCandidate recommended;
  std::vector<std::string> notes;  // what was not considered and why
};

struct PlanSummary {
  int layers = 0, full = 0, window = 0, state = 0;
  int seq_len = 0;  // the longest measured L
  double long_factor = 4;
  // Memory of one sequence summed over layers and heads, in numbers: every layer kept as it is
  // ("original") and as planned, at the measured L and at long_factor × L.
  double original_at_L = 0, planned_at_L = 0, original_at_long = 0, planned_at_long = 0;
};

struct ModelPlan {
  std::string file;
  PlanOptions options;
  std::vector<LayerPlan> layers;
  PlanSummary summary;
};

// One layer's candidates and recommendation (options already validated).
LayerPlan plan_layer(const LayerResult& R, const PlanOptions& options);

// Throws UsageError for invalid options; InputError (naming the layer) only for inconsistent data.
ModelPlan make_plan(const ResultsFile& file, const PlanOptions& options);

// One stored sparse student of a layer, averaged over usable blocks (teacher status ok), batch and
// channels (operator errors: over batch and channels). ESS values are NaN when not stored.
struct StudentSummary {
  StudentPattern pattern;
  long blocks = 0;
  double mean_masked = 0, max_masked = 0, mean_renormalized = 0, max_renormalized = 0;
  double operator_masked = 0, operator_renormalized = 0;
  double mean_tolerance_ess = 0, mean_entropy_ess = 0;
};
std::vector<StudentSummary> summarize_students(const LayerResult& R);
// The `students` entry of `ess compress --format json` for one layer (keys in docs/analysis.md).
nlohmann::ordered_json to_json(const std::vector<StudentSummary>& students);

// `ess plan --format json` (keys in docs/analysis.md).
nlohmann::ordered_json to_json(const ModelPlan& plan);

// "window 64 + 4 sinks", "state 8", "full (cache 256)".
std::string describe(const PlanCandidate& c, const LayerPlan& layer);

}  // namespace ess
