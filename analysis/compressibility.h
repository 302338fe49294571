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
  bool exceeds_layer_state = false;    // state > the layer's own state (max TSS_i): nothing to compress
  // Entropy-ESS under truncation to `state` singular values (the best rank-N_s student, σ_1..σ_Ns
  // renormalised): its mean over blocks, and the mean loss against the layer's own entropy-ESS
  // (the file's entropy_ess, from the whole spectrum), absolute and relative to the mean of the latter.
  double truncated_entropy_ess = 0, entropy_ess_loss = 0, relative_entropy_ess_loss = 0;
};

struct LayerCompressibility {
  std::string name, family;
  int layer_index = 0;
  int sigma_k = 0;      // K: singular values kept per block in the file
  long blocks = 0;      // blocks averaged over (batch × channels × indices, status ok)
  int layer_state = 0;  // the layer's own state: max over i of TSS_i (attention: the longest KV cache)
  std::vector<CompressTarget> targets;
  std::optional<int> recommended_state;  // smallest state with mean_tail ≤ max_error
  // recommended_state > layer_state: the layer is already smaller than the recommendation (no
  // student of that size is a compression); `note` says so in words.
  bool recommended_exceeds_layer_state = false;
  std::string note;
};

// Relative tail of one block: σ (descending, K values, zero-padded), the energy beyond K
// (`rest`, 0 if none) and ‖H‖_F (≤ 0: computed from σ and rest).
double eckart_young_tail(const float* sigma, int K, int state, double rest, double frobenius);

// Entropy-ESS of the first `state` of K stored singular values (descending), renormalised: the
// entropy-ESS of the best rank-`state` approximation. 0 for a zero block.
double truncated_entropy_ess(const float* sigma, int K, int state);

// Per student state: mean / max tail over every usable block (status ok) of every batch element and
// channel, the fraction of those blocks whose tolerance-ESS exceeds the state, and the entropy-ESS
// of the truncated spectrum against the file's entropy-ESS. ‖H_i‖_F is the
// stored `frobenius` when present, else sqrt(Σ stored σ² + sigma_tail²); a zero block has tail 0.
// Throws UsageError for a state ≤ 0 or a negative / non-finite max_error; InputError (naming the
// layer and K) when the result has no `sigma`, or keeps fewer than a requested state (K < N_s) while
// fewer than the largest attainable rank max_i min(TSS_i, i, L−i).
LayerCompressibility compressibility(const LayerResult& R, const std::vector<int>& states, double max_error);

// The `ess compress --format json` entry of a layer (keys in docs/analysis.md).
nlohmann::ordered_json to_json(const LayerCompressibility& l);

}  // namespace ess
