#include "libess/compressibility.h"

#include <algorithm>
#include <cmath>

#include "libess/error.h"

namespace ess {

double eckart_young_tail(const float* sigma, int K, int state, double rest, double frobenius) {
  double tail2 = rest * rest;
  for (int k = std::max(state, 0); k < K; ++k) tail2 += static_cast<double>(sigma[k]) * sigma[k];
  double norm = frobenius;
  if (!(norm > 0)) {
    double all2 = rest * rest;
    for (int k = 0; k < K; ++k) all2 += static_cast<double>(sigma[k]) * sigma[k];
    norm = std::sqrt(all2);
  }
  if (!(norm > 0)) return 0.0;  // a zero block is represented exactly by any state
  return std::min(1.0, std::sqrt(tail2) / norm);
}

LayerCompressibility compressibility(const LayerResult& R, const std::vector<int>& states, double max_error) {
  if (R.sigma_k <= 0)
    throw InputError("layer '" + R.name + "': the results file has no singular values ('sigma'); rerun `ess compute` "
                     "or `ess analyze` with --keep-sigma K (K ≥ the largest student state)");
  const int K = R.sigma_k;
  LayerCompressibility out;
  out.name = R.name;
  out.family = R.family;
  out.layer_index = R.layer_index;
  const size_t blocks = static_cast<size_t>(R.batch) * R.channels * R.num_indices();
  for (int state : states) {
    if (state > K) {
      // Fine only when every block's spectrum is complete within K (last kept σ is 0, no tail).
      for (size_t k = 0; k < blocks; ++k) {
        const bool complete = R.sigma[k * K + K - 1] == 0.0f && (R.sigma_tail.empty() || R.sigma_tail[k] == 0.0);
        if (!complete)
          throw InputError("layer '" + R.name + "': the file keeps only K = " + std::to_string(K) +
                           " singular values per block, fewer than the student state " + std::to_string(state) +
                           "; rerun with --keep-sigma " + std::to_string(state) + " or more");
      }
    }
    CompressTarget t;
    t.state = state;
    long n = 0, exceeding = 0;
    for (size_t k = 0; k < blocks; ++k) {
      if (!R.status.empty() && R.status[k] != block_ok) continue;
      const double rest = R.sigma_tail.empty() ? 0.0 : R.sigma_tail[k];
      const double fro = R.frobenius.empty() ? 0.0 : R.frobenius[k];
      const double tail = eckart_young_tail(R.sigma.data() + k * K, K, state, rest, fro);
      t.mean_tail += tail;
      t.max_tail = std::max(t.max_tail, tail);
      exceeding += R.tolerance_ess[k] > state;
      ++n;
    }
    if (n > 0) {
      t.mean_tail /= n;
      t.frac_exceeding = static_cast<double>(exceeding) / n;
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
  return out;
}

}  // namespace ess
