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
// entropy-ESS = exp(−Σ p_k log p_k), p_k = σ_k / Σ_j σ_j; 0 for a zero block.
double entropy_ess(const double* sigma, int n);
// ‖H‖_F from its singular values.
double frobenius_from_sigma(const double* sigma, int n);

// The i values (1 ≤ i ≤ L−1) of the blocks to measure, from "start:stop:step" (Python-style,
// every part optional, stop exclusive, negatives count from L). Empty spec = all.
std::vector<int> parse_indices(const std::string& spec, int seq_len);
// How many blocks parse_indices would select (same errors), without building the list.
long long count_indices(const std::string& spec, int seq_len);

}  // namespace ess
