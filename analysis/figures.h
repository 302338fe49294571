// The figure `ess plot` writes (docs/analysis.md): one self-contained SVG with a utilization
// overview of the given layers (box plot of channel utilizations, thresholds, verdicts), then per
// layer the mean ESS profile with TSS_i and the attainable bound, and a channel × index heat map.
#pragma once
#include <string>
#include <vector>

#include "analysis/diagnosis.h"
#include "libess/compute.h"

namespace ess {

// The SVG document for `layers` (at least one; std::invalid_argument otherwise), diagnosed with
// `options` (its metric is the one drawn); `title` heads the page.
std::string ess_figure_svg(const std::vector<const LayerResult*>& layers, const DiagnosisOptions& options,
                           const std::string& title);

}  // namespace ess
