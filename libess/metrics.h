// ESS metrics of one block's singular values (DESIGN §2).
#pragma once
#include <string>
#include <vector>

namespace ess {

enum class TolMode { absolute, block, layer };
TolMode parse_tol_mode(const std::string& s);  // throws UsageError
const char* to_string(TolMode m);

// tolerance-ESS: number of σ strictly above `threshold`.
int count_above(const double* sigma, int n, double threshold);
// The threshold a block's σ are compared with: τ (absolute), τ·σ_1(H_i) (block),
// τ·max σ_1 over the layer (layer).
double tolerance_threshold(TolMode mode, double tol, double block_sigma1, double layer_sigma1);
// Whether the tolerance-ESS of a block is decided by its computed σ (descending, n of them), when
// each lies within `error` of an exact singular value and every value not computed is at most
// `error` (a truncating engine's bound): no value not computed can pass the threshold, and no
// computed σ_k lies within `error` of it (then every exact σ is on the side its σ_k is). The block
// threshold τ·σ_1 moves with σ_1's error; in layer mode the threshold is only known to be at least
// τ·layer_sigma1_floor (the channel's largest σ so far), so only the first condition is checked.
// error == 0: always decided.
bool tolerance_count_decided(TolMode mode, double tol, const double* sigma, int n, double error,
                             double layer_sigma1_floor);
// entropy-ESS = exp(−Σ p_k log p_k), p_k = σ_k / Σ_j σ_j; 0 for a zero block.
double entropy_ess(const double* sigma, int n);
// Certified bounds on entropy-ESS when only the `count` largest σ (descending, σ_count > 0) of a
// block with at most `rank_bound` nonzero σ are known, and the σ not computed have Σ σ² = tail_mass
// (± tail_slack): each is ≤ σ_count and there are at most rank_bound − count of them. Exact
// (lower == upper) when the tail is empty.
struct EssInterval {
  double lower = 0, upper = 0;
};
EssInterval entropy_ess_bounds(const double* sigma, int count, int rank_bound, double tail_mass, double tail_slack);
// The entropy-ESS interval of a partial spectrum as the lanczos engine stores it: the tail mass
// from ‖H‖_F² (frobenius2) minus Σ σ_k², entropy_ess_bounds, widened for an error of up to
// error_bound on each computed σ (|Δ(−p log p)| ≤ max(−δ log δ, δ) for a shift δ of p: concave,
// subadditive). Exact to rounding when count == rank_bound and error_bound == 0.
EssInterval partial_entropy_interval(const double* sigma, int count, int rank_bound, double frobenius2,
                                     double error_bound);
// ‖H‖_F from its singular values.
double frobenius_from_sigma(const double* sigma, int n);

// The i values (1 ≤ i ≤ L−1) of the blocks to measure, from "start:stop:step" (Python-style,
// every part optional, stop exclusive, negatives count from L) or an explicit list "i,j,k" (a spec
// with a comma; negatives count from L; every entry must lie in 1..L−1; returned sorted, duplicates
// dropped). Empty spec = all.
std::vector<int> parse_indices(const std::string& spec, int seq_len);
// How many blocks parse_indices would select (same errors), without building the list.
long long count_indices(const std::string& spec, int seq_len);
// `count` evenly spaced interior blocks: i_j = round((j + 1)·L / (count + 1)), j < count (fewer
// when L is short; duplicates dropped).
std::vector<int> evenly_spaced_indices(int count, int seq_len);

}  // namespace ess
