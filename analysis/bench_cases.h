// Synthetic operators for the engine benchmark (analysis/bench.h): random but shaped like the
// layers of real models.
#pragma once
#include <memory>
#include <string>
#include <vector>

#include "libess/operator.h"

namespace ess {

struct BenchCase {
  std::string name;         // e.g. "mamba"
  std::string description;  // one line for humans
  std::unique_ptr<LayerOperator> op;
};

// Known case names, in the order `bench` runs them by default.
std::vector<std::string> bench_case_names();
// The softmax heads of `bench --long` (d_k = 64; local, sink-dominated, diffuse, induction-like;
// docs/engines.md describes them). make_bench_case builds them too (N is ignored).
std::vector<std::string> long_bench_case_names();
// Builds `channels` channels of the named case at sequence length L with state size N
// (d_k for attention-like cases). Throws UsageError for an unknown name.
BenchCase make_bench_case(const std::string& name, int L, int channels, int N, unsigned seed);

}  // namespace ess
