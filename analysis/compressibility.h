// Distillation compressibility (DESIGN §2): for a student state N_s, the best rank-N_s
// approximation of H_i leaves the relative error sqrt(Σ_{k>N_s} σ_k²) / ‖H_i‖_F (Eckart–Young), a
// lower bound on how well any student with state N_s can imitate that block.
#pragma once
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "libess/results_io.h"

namespace ess {

struct CompressTarget {
  int state = 0;
  double mean_tail = 0, max_tail = 0;  // over blocks, batch and channels
  double frac_exceeding = 0;           // fraction of blocks with tolerance-ESS > state
};

struct LayerCompressibility {
  std::string name, family;
  int layer_index = 0;
  int sigma_k = 0;  // K: singular values kept per block in the file
  long blocks = 0;  // blocks averaged over (batch × channels × indices, status ok)
  std::vector<CompressTarget> targets;
  std::optional<int> recommended_state;  // smallest state with mean_tail ≤ max_error
};

// Relative tail of one block: σ (descending, K values, zero-padded), the energy beyond K
// (`rest`, 0 if none) and ‖H‖_F (≤ 0: computed from σ and rest).
double eckart_young_tail(const float* sigma, int K, int state, double rest, double frobenius);

// Per student state: mean / max tail over every usable block (status ok) of every batch element and
// channel, and the fraction of those blocks whose tolerance-ESS exceeds the state. ‖H_i‖_F is the
// stored `frobenius` when present, else sqrt(Σ stored σ² + sigma_tail²); a zero block has tail 0.
// Throws UsageError for a state ≤ 0 or a negative / non-finite max_error; InputError (naming the
// layer and K) when the result has no `sigma`, or keeps fewer than a requested state (K < N_s).
LayerCompressibility compressibility(const LayerResult& R, const std::vector<int>& states, double max_error);

// The `ess compress --format json` entry of a layer (keys in docs/analysis.md).
nlohmann::ordered_json to_json(const LayerCompressibility& l);

}  // namespace ess
