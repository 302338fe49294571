// Saturation / collapse diagnosis (DESIGN §1): per channel, utilization = mean over i of
// ESS_i / min(TSS_i, i, L−i); channels classified dead / saturated / collapsed / healthy; per layer
// counts, mean utilization, a verdict and advice in plain language.
#pragma once
#include <string>
#include <vector>

#include "libess/results_io.h"
#include "libess/summary.h"

namespace ess {

enum class ChannelClass { healthy, saturated, collapsed, dead };
const char* to_string(ChannelClass c);

struct DiagnosisOptions {
  Metric metric = Metric::tolerance;
  double saturated = 0.9;  // utilization ≥ this → saturated
  double collapsed = 0.1;  // utilization ≤ this → collapsed
  bool IsValid(std::string* error) const;
};

struct LayerDiagnosis {
  std::string name, family, verdict, advice;
  int layer_index = 0, tss = 0, channels = 0;
  double utilization = 0;  // mean over live (non-dead) channels; 0 when all are dead
  int saturated = 0, healthy = 0, collapsed = 0, dead = 0;
  std::vector<double> channel_utilization;  // [C]
  std::vector<ChannelClass> channel_class;  // [C]
};

// Verdicts: "dead" (every channel dead), "saturated" / "collapsed" / "healthy" when at least half of
// the live channels are in that class, otherwise "mixed".
LayerDiagnosis diagnose_layer(const LayerResult& R, const DiagnosisOptions& options);
std::vector<LayerDiagnosis> diagnose(const ResultsFile& file, const DiagnosisOptions& options);
// One paragraph for the whole model: which layers to act on first.
std::string model_summary(const std::vector<LayerDiagnosis>& layers);

}  // namespace ess
