// Saturation / collapse diagnosis (DESIGN §1): per channel, utilization = mean over (b, i) of
// ESS_i / TSS_i (default; or ESS_i / min(TSS_i, i, L−i)); channels classified dead / saturated /
// collapsed / healthy; per layer counts, mean utilization, a verdict and advice in plain language
// (docs/analysis.md). The defaults are calibrated on the MQAR zoo (docs/analysis.md "Calibration").
#pragma once
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "analysis/summary.h"
#include "libess/results_io.h"

namespace ess {

// unmeasured: no usable block (every block failed or uncertified): neither dead nor alive.
enum class ChannelClass { healthy, saturated, collapsed, dead, unmeasured };
const char* to_string(ChannelClass c);

// What a channel's utilization is measured against, per block i:
//   state       ESS_i / TSS_i: the share of the layer's own state the input uses (blocks with
//               TSS_i = 0 skipped). A state the input cannot fill (TSS_i > min(i, L−i)) reads low.
//   attainable  ESS_i / min(TSS_i, i, L−i): the share of the largest rank the block could have.
enum class UtilizationBasis { state, attainable };
const char* to_string(UtilizationBasis b);
UtilizationBasis parse_utilization_basis(const std::string& s);  // UsageError for anything else

// Defaults calibrated on the zoo (tools/reference/calibrate.py): against the layer's own state,
// the layers of models that fail for lack of state read 0.79–0.98 (each such model has a layer
// ≥ 0.82) and those of models that solve MQAR ≤ 0.74; layers with ≥ 4× more state than the task
// needs ≤ 0.25. The attainable basis reads ≥ 0.8 for almost every trained layer (tolerance-ESS ≈
// rank), so it cannot separate them.
struct DiagnosisOptions {
  Metric metric = Metric::tolerance;
  UtilizationBasis basis = UtilizationBasis::state;
  double saturated = 0.8;  // utilization ≥ this → saturated
  double collapsed = 0.3;  // utilization ≤ this → collapsed
  // Both in [0, 1] and collapsed < saturated; validate() throws UsageError naming the field.
  void validate() const;
  bool IsValid(std::string* error) const;
};

struct LayerDiagnosis {
  std::string name, family, channel_kind;
  int layer_index = 0;
  int tss = 0;  // max over i of TSS_i
  int channels = 0, seq_len = 0;
  double mean_ess = 0;          // mean over batch, channels and usable blocks of the metric's ESS_i
  bool input_limited = false;   // TSS_i > min(i, L−i) at every block: the input cannot fill the state
  double utilization = 0;       // mean over channels of their utilization (dead channels count 0); on the
                                // attainable basis the same number as `ess report`'s util column
  double live_utilization = 0;  // the same over live (non-dead) channels; 0 when every channel is dead
  int saturated = 0, healthy = 0, collapsed = 0, dead = 0;
  int unmeasured = 0;                       // channels without any usable block (not counted as dead or live)
  std::string verdict;                      // unmeasured | dead | partly dead | saturated | collapsed | healthy | mixed
  std::string advice;                       // one or two sentences: what the verdict means and what to do
  std::vector<double> channel_utilization;  // [C] on options.basis; NaN for a channel without any usable block
  std::vector<ChannelClass> channel_class;  // [C]
};

// Classes, checked in this order: dead (ESS 0 at every usable block of every batch element),
// saturated (u ≥ options.saturated), collapsed (u ≤ options.collapsed), healthy.
// A channel without any usable block is "unmeasured", in no other class. Verdicts, checked in this
// order: "unmeasured" (every channel); "dead" (every measured channel dead); "partly dead" (more
// than half of the measured channels dead); "saturated" / "collapsed" / "healthy" (more than half of the live channels
// in that class); otherwise "mixed". Throws UsageError for invalid options.
LayerDiagnosis diagnose_layer(const LayerResult& R, const DiagnosisOptions& options);
std::vector<LayerDiagnosis> diagnose(const ResultsFile& file, const DiagnosisOptions& options);
// One paragraph for the whole model: which layers to act on first.
std::string model_summary(const std::vector<LayerDiagnosis>& layers);

// The `ess diagnose --format json` entry of a layer (keys in docs/analysis.md; `summary` is the advice).
nlohmann::ordered_json to_json(const LayerDiagnosis& d);

}  // namespace ess
