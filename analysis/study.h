// Studies across many models (docs/analysis.md "ess study"): one row per (checkpoint, input) with
// the model's MQAR accuracy and its ESS aggregates, and correlations (Pearson, Spearman, bootstrap
// percentile intervals) of accuracy with each candidate predictor (ESS/kv, TSS/kv, utilization …).
#pragma once
#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "libess/compute.h"
#include "libess/results_io.h"
#include "models/tokens.h"

namespace ess {

// --- statistics ---------------------------------------------------------------------------------

// Pearson's r of paired samples; NaN when n < 3 or either sample has zero variance.
double pearson(const std::vector<double>& x, const std::vector<double>& y);
// Ranks 1..n with ties given their average rank (as scipy.stats.rankdata(method="average")).
std::vector<double> average_ranks(const std::vector<double>& x);
// Spearman's ρ = Pearson's r of the average ranks (scipy.stats.spearmanr).
double spearman(const std::vector<double>& x, const std::vector<double>& y);

struct Interval {
  double lo = 0, hi = 0;
  int valid = 0;  // resamples where the statistic was defined
};
// Percentile bootstrap interval of pearson (spearman = false) or spearman (true): `resamples`
// resamples of the n pairs with replacement (std::mt19937_64 seeded with `seed`), the
// (1−level)/2 and (1+level)/2 quantiles (linear interpolation) of the defined values.
Interval bootstrap_interval(const std::vector<double>& x, const std::vector<double>& y, bool spearman, int resamples,
                            std::uint64_t seed, double level = 0.95);

// --- one row per model and input -----------------------------------------------------------------

struct StudyLayer {
  std::string name, family;
  int layer_index = 0, channels = 0;
  double tolerance_ess = 0, entropy_ess = 0;              // mean over channels of the channel's mean ESS_i
  double total_tolerance_ess = 0, total_entropy_ess = 0;  // sum over channels of the channel's mean ESS_i
  double tss = 0;                                         // mean over i of TSS_i (one channel)
  double utilization = 0, entropy_utilization = 0;        // mean over channels of ESS_i / min(TSS_i, i, L−i)
};

struct StudyRow {
  std::string name;                           // model name (manifest entry, list name or file stem)
  std::string results;                        // results file the row was computed from
  std::string source, input, architecture;    // from the results' provenance
  std::map<std::string, std::string> labels;  // free labels (family, state, seed, difficulty, split …)
  int kv = 0, len = 0;                        // MQAR input (0 when the input is not MQAR)
  double accuracy = -1;                       // MQAR accuracy; < 0 = not measured
  std::vector<StudyLayer> layers;
  // Model aggregates: the mean over layers of the per-layer quantities above (tss_total: channels × tss).
  double tolerance_ess = 0, entropy_ess = 0, total_tolerance_ess = 0, total_entropy_ess = 0;
  double tss = 0, total_tss = 0, utilization = 0, entropy_utilization = 0;
  double min_layer_tolerance_ess = 0, min_layer_entropy_ess = 0;  // the smallest layer mean (the bottleneck)
  std::map<std::string, double> predictors;                       // name → value (see study_predictor_names)
};

// Parses "mqar kv=16,len=256,n=8,seed=0,vocab=V" (the `input` analyze records); false otherwise.
bool parse_mqar_input(const std::string& input, int* kv, int* len);

// The row of one results file. kv and len come from the recorded MQAR input (0 if none), accuracy
// from its mqar_accuracy.
StudyRow study_row(const ResultsFile& file, const std::string& name);

// Candidate predictors, in the order they are reported, with a one-line definition each.
const std::vector<std::pair<std::string, std::string>>& study_predictors();

struct Correlation {
  std::string predictor;
  int n = 0;  // rows with a finite predictor and a measured accuracy
  double pearson = 0, spearman = 0;
  Interval pearson_ci, spearman_ci;
};

struct StudyOptions {
  int resamples = 2000;
  std::uint64_t seed = 0;
  double level = 0.95;
};

// Correlations of accuracy with every predictor over the rows with a measured accuracy.
std::vector<Correlation> correlate(const std::vector<StudyRow>& rows, const StudyOptions& options);

// One SVG: per predictor a panel of accuracy against log10(predictor), dots coloured by the row
// label `color_label` (the architecture where a row lacks it), Spearman ρ and its interval in the
// title. UsageError for an unknown predictor.
std::string study_svg(const std::vector<StudyRow>& rows, const std::vector<Correlation>& correlations,
                      const std::vector<std::string>& predictors, const std::string& color_label);

// --- running analyze on a checkpoint ----------------------------------------------------------------

// Loads the checkpoint, draws the MQAR batch, runs the model and computes every mixer's ESS
// (what `ess analyze CKPT --mqar SPEC` does), returning the results in memory (path empty). With
// `at` active, the blocks are those around the given tokens of the batch (indices_at_tokens).
ResultsFile analyze_mqar(const std::string& checkpoint, const MqarSpec& spec, const EssOptions& options,
                         const std::string& command_line, const TokenWindows& at = {});

}  // namespace ess
