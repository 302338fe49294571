#include "analysis/compressibility.h"

#include <algorithm>
#include <cmath>

#include "libess/error.h"
#include "libess/metrics.h"

namespace ess {

double eckart_young_tail(const float* sigma, int K, int state, double rest, double frobenius) {
  // tail² = Σ_{N_s<k≤K} σ_k² + Σ_{k>K} σ_k² (the second sum is stored as sigma_tail²), in double.
  double tail2 = rest * rest;
  for (int k = std::max(state, 0); k < K; ++k) tail2 += static_cast<double>(sigma[k]) * sigma[k];
  double norm = frobenius;
  if (!(norm > 0)) {  // ‖H_i‖_F² = Σ_k σ_k² when the file has no frobenius_norm
    double all2 = rest * rest;
    for (int k = 0; k < K; ++k) all2 += static_cast<double>(sigma[k]) * sigma[k];
    norm = std::sqrt(all2);
  }
  if (!(norm > 0)) return 0.0;  // a zero block is represented exactly by any state
  return std::min(1.0, std::sqrt(tail2) / norm);
}

double truncated_entropy_ess(const float* sigma, int K, int state) {
  const int n = std::min(std::max(state, 0), K);
  std::vector<double> s(sigma, sigma + n);
  return entropy_ess(s.data(), n);
}

LayerCompressibility compressibility(const LayerResult& R, const std::vector<int>& states, double max_error) {
  if (states.empty()) throw UsageError("compressibility needs at least one student state size");
  for (int state : states)
    if (state <= 0) throw UsageError("student state sizes must be positive, got " + std::to_string(state));
  if (!(max_error >= 0) || !std::isfinite(max_error))
    throw UsageError({Option{"max_error"}, " must be a finite number ≥ 0"});
  if (R.sigma_k <= 0 || R.sigma.empty())
    throw InputError({"layer '" + R.name + "': the results file has no singular values ('sigma'); measure again with ",
                      Option{"keep_sigma"}, " K (K ≥ the largest student state)"});
  const int K = R.sigma_k;
  const size_t blocks = static_cast<size_t>(R.batch) * R.channels * R.num_indices();
  if (R.sigma.size() != blocks * K)
    throw InputError("layer '" + R.name + "': 'sigma' has " + std::to_string(R.sigma.size()) + " values, expected " +
                     std::to_string(blocks * K) + " (B × C × I × K)");
  const int largest = *std::max_element(states.begin(), states.end());
  // rank(H_i) ≤ min(TSS_i, i, L−i): when K reaches that bound every nonzero σ is stored and any larger
  // student state is exact (tail 0).
  const int max_rank = R.attainable.empty() ? 0 : *std::max_element(R.attainable.begin(), R.attainable.end());
  if (largest > K && K < max_rank)
    throw InputError({"layer '" + R.name + "': the file keeps only K = " + std::to_string(K) +
                          " singular values per block, fewer than the student state " + std::to_string(largest) +
                          "; measure again with ",
                      Option{"keep_sigma"}, " " + std::to_string(largest) + " or more"});
  LayerCompressibility out;
  out.name = R.name;
  out.family = R.family;
  out.layer_index = R.layer_index;
  out.sigma_k = K;
  out.layer_state = R.tss.empty() ? 0 : *std::max_element(R.tss.begin(), R.tss.end());
  for (int state : states) {
    CompressTarget t;
    t.state = state;
    t.exceeds_layer_state = state > out.layer_state;
    long n = 0, exceeding = 0;
    double ent_full = 0;
    for (size_t k = 0; k < blocks; ++k) {
      if (!R.status.empty() && R.status[k] != block_ok) continue;
      const double rest = R.sigma_tail.empty() ? 0.0 : R.sigma_tail[k];
      const double fro = R.frobenius.empty() ? 0.0 : R.frobenius[k];
      const double tail = eckart_young_tail(R.sigma.data() + k * K, K, state, rest, fro);
      t.mean_tail += tail;
      t.max_tail = std::max(t.max_tail, tail);
      const double ent_trunc = truncated_entropy_ess(R.sigma.data() + k * K, K, state);
      t.truncated_entropy_ess += ent_trunc;
      ent_full += R.entropy_ess[k];
      t.entropy_ess_loss += std::max(0.0, R.entropy_ess[k] - ent_trunc);
      exceeding += R.tolerance_ess[k] > state;
      ++n;
    }
    out.blocks = n;
    if (n > 0) {
      t.mean_tail /= n;
      t.frac_exceeding = static_cast<double>(exceeding) / n;
      t.truncated_entropy_ess /= n;
      t.entropy_ess_loss /= n;
      t.relative_entropy_ess_loss = ent_full > 0 ? t.entropy_ess_loss / (ent_full / n) : 0.0;
    }
    out.targets.push_back(t);
  }
  std::vector<CompressTarget> sorted = out.targets;
  std::sort(sorted.begin(), sorted.end(), [](const auto& a, const auto& b) { return a.state < b.state; });
  for (const auto& t : sorted)
    if (t.mean_tail <= max_error) {
      out.recommended_state = t.state;
      break;
    }
  if (out.recommended_state && *out.recommended_state > out.layer_state) {
    out.recommended_exceeds_layer_state = true;
    out.note = "the recommended state " + std::to_string(*out.recommended_state) + " exceeds the layer's own state (" +
               std::to_string(out.layer_state) +
               "): the layer is already smaller than any requested student that meets the error, so there is "
               "nothing to compress at these sizes";
  }
  return out;
}

nlohmann::ordered_json to_json(const LayerCompressibility& l) {
  nlohmann::ordered_json targets = nlohmann::ordered_json::array();
  for (const auto& t : l.targets)
    targets.push_back({{"state", t.state},
                       {"mean_tail", t.mean_tail},
                       {"max_tail", t.max_tail},
                       {"frac_exceeding", t.frac_exceeding},
                       {"exceeds_layer_state", t.exceeds_layer_state},
                       {"truncated_entropy_ess", t.truncated_entropy_ess},
                       {"entropy_ess_loss", t.entropy_ess_loss},
                       {"relative_entropy_ess_loss", t.relative_entropy_ess_loss}});
  return {{"name", l.name},
          {"layer_index", l.layer_index},
          {"family", l.family},
          {"sigma_k", l.sigma_k},
          {"blocks", l.blocks},
          {"layer_state", l.layer_state},
          {"targets", targets},
          {"recommended_state", l.recommended_state ? nlohmann::ordered_json(*l.recommended_state) : nullptr},
          {"recommended_exceeds_layer_state", l.recommended_exceeds_layer_state},
          {"note", l.note}};
}

}  // namespace ess
