// Per-layer and per-channel aggregates of a LayerResult (DESIGN §2 "Aggregates").
#pragma once
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "libess/compute.h"
#include "libess/results_io.h"

namespace ess {

enum class Metric { tolerance, entropy };
Metric parse_metric(const std::string& s);  // "tolerance" | "entropy"; throws UsageError
const char* to_string(Metric m);

// ESS of block (b, c, pos) by metric; NaN for blocks whose status is not ok.
double block_ess(const LayerResult& R, Metric m, int b, int c, int pos);

// Per channel, averaged over batch and blocks: mean ESS. [C]
std::vector<double> channel_mean_ess(const LayerResult& R, Metric m);
// Per channel: mean over (batch, i) of ESS_i / min(TSS_i, i, L−i) (blocks with bound 0 skipped). [C]
std::vector<double> channel_utilization(const LayerResult& R, Metric m);
// Mean ESS profile over i, averaged over batch and channels. [I]
std::vector<double> mean_profile(const LayerResult& R, Metric m);

struct LayerSummary {
  std::string name, family, channel_kind, engine, tol_mode;
  int layer_index = 0, batch = 0, channels = 0, seq_len = 0, blocks = 0;
  double tol = 0;
  double mean_tolerance_ess = 0, max_tolerance_ess = 0, total_tolerance_ess = 0;
  double mean_entropy_ess = 0, max_entropy_ess = 0, total_entropy_ess = 0;
  double mean_tss = 0, max_tss = 0;
  double utilization = 0;          // mean over channels of channel_utilization (tolerance)
  double entropy_utilization = 0;  // same for entropy-ESS
  long bad_blocks = 0;             // status ≠ ok
  long uncertified_blocks = 0;     // lanczos: σ_k not certified below the threshold (in bad_blocks)
  long interval_blocks = 0;        // lanczos partial spectra: entropy-ESS is an interval's midpoint
  double max_interval_rel = 0;     // widest such interval, (upper − lower) / upper
  // Channels with at least one usable block (in any batch row); the totals sum over these only, and
  // are NaN (no value, not 0) when there is none.
  int measured_channels = 0;
};

LayerSummary summarize(const LayerResult& R);

// `report --interior`, `diagnose --interior`: the layer restricted to its interior blocks, those
// with min(i, L−i) ≥ TSS_i (away from the sequence's ends, where the input rather than the state
// bounds the rank). Every per-block array ([I], [B, C, I], sigma, the students' [P, B, C, I]) keeps
// only those blocks; a layer may be left with none. The file version applies it to every layer.
LayerResult interior_only(const LayerResult& R);
ResultsFile interior_only(const ResultsFile& file);

// Every layer of a results file, and the model totals (sums over layers of the per-channel means;
// a layer without a usable block is left out and counted in unmeasured_layers; NaN when every
// layer is).
struct ResultsSummary {
  std::vector<LayerSummary> layers;
  double total_tolerance_ess = 0, total_entropy_ess = 0;
  int unmeasured_layers = 0;
  long bad_blocks = 0, uncertified_blocks = 0, interval_blocks = 0;
  double max_interval_rel = 0;
};
ResultsSummary summarize(const ResultsFile& file);

// The `ess report --format json` entry of a layer (keys in docs/analysis.md).
nlohmann::ordered_json to_json(const LayerSummary& s);

// --- the model's predictions (/model, written by `ess analyze`) ---------------------------------

struct PredictionSummary {
  bool present = false;  // false: the file has no /model group (ess compute, or an ess before 1.1)
  int batch = 0, seq_len = 0;
  long scored = 0;                  // B·(L−1) predicted next tokens
  double loss = 0, perplexity = 0;  // nats/token over every scored position; exp(loss)
  double accuracy = 0;              // fraction of scored positions whose argmax is the next input token
  double mqar_accuracy = -1;        // analyze --mqar (provenance); < 0 = not measured
};
PredictionSummary summarize_predictions(const ResultsFile& file);
// `ess report --format json`'s "predictions" entry; null when there are none.
nlohmann::ordered_json to_json(const PredictionSummary& p);

// Per-position ESS beside per-position loss. Block index i pairs with the prediction of input token
// i from tokens 0..i−1: H_i = T[i:, :i] has exactly those tokens as its columns, so ESS_i measures
// the state the model carries into that prediction (docs/analysis.md, "Per-position ESS and loss").
struct PositionRow {
  int i = 0;
  double loss = 0;          // −mean over the batch of log p(token_i | tokens < i); NaN without /model
  double accuracy = 0;      // fraction of the batch whose argmax at position i−1 is token i; NaN without /model
  std::vector<double> ess;  // per layer: mean ESS_i over batch and channels; NaN where i was not measured
};
struct PerPosition {
  Metric metric = Metric::tolerance;
  std::vector<std::string> layers;  // layer names, the order of PositionRow::ess
  std::vector<PositionRow> rows;    // every block index measured in some layer, ascending
};
PerPosition per_position(const ResultsFile& file, Metric m);
nlohmann::ordered_json to_json(const PerPosition& p);

}  // namespace ess
