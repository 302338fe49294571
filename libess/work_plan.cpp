#include "libess/work_plan.h"

#include <algorithm>

namespace ess {

std::vector<WorkUnit> plan_work(long items, int group, const std::vector<int>& indices, int seq_len, int threads,
                                EngineKind engine) {
  const int I = static_cast<int>(indices.size());
  group = std::max(group, 1);
  const long groups = (items + group - 1) / group;
  int chunks = 1;
  if (engine != EngineKind::sweep && groups > 0 && groups < threads)
    chunks = static_cast<int>(std::min<long>(std::max(I, 1), (threads + groups - 1) / groups));
  // Cut points at equal shares of the estimated cost: a structured block costs the same at every
  // i; a dense block is an SVD of (L−i)×i, about m·n·min(m, n).
  std::vector<int> cut = {0};
  if (chunks > 1) {
    std::vector<double> cum(I + 1, 0.0);
    for (int p = 0; p < I; ++p) {
      const double m = seq_len - indices[p], n = indices[p];
      cum[p + 1] = cum[p] + (engine == EngineKind::dense     ? m * n * std::min(m, n)
                             : engine == EngineKind::lanczos ? m * n
                                                             : 1.0);
    }
    for (int k = 1; k < chunks; ++k) {
      const double target = cum[I] * k / chunks;
      const int p = static_cast<int>(std::lower_bound(cum.begin(), cum.end(), target) - cum.begin());
      if (p > cut.back() && p < I) cut.push_back(p);
    }
  }
  cut.push_back(I);
  std::vector<WorkUnit> units;
  for (long g = 0; g < groups; ++g)
    for (size_t k = 0; k + 1 < cut.size(); ++k)
      units.push_back({g * group, std::min<long>(group, items - g * group), cut[k], cut[k + 1]});
  return units;
}

}  // namespace ess
