// Distillation compressibility (DESIGN §2): for a student state N_s, the best rank-N_s
// approximation of H_i leaves the relative error sqrt(Σ_{k>N_s} σ_k²) / ‖H_i‖_F (Eckart–Young), a
// lower bound on how well any student with state N_s can imitate that block.
#pragma once
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
  std::vector<CompressTarget> targets;
  std::optional<int> recommended_state;  // smallest state with mean_tail ≤ max_error
};

// Relative tail of one block: σ (descending, K values, zero-padded), the energy beyond K
// (`rest`, 0 if none) and ‖H‖_F (≤ 0: computed from σ and rest).
double eckart_young_tail(const float* sigma, int K, int state, double rest, double frobenius);

// Throws InputError when the file has no `sigma`, or fewer than `state` values where that matters.
LayerCompressibility compressibility(const LayerResult& R, const std::vector<int>& states, double max_error);

}  // namespace ess
