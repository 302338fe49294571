// The engine benchmark behind `ess bench`: on synthetic operators (analysis/bench_cases.h), the
// engine `auto` picks and the dense LAPACK baseline run on the same channels in the same run,
// single-threaded; per case the median seconds per channel, the largest singular-value deviation
// relative to σ_1 of its block, and whether every tolerance-ESS value agrees.
#pragma once
#include <functional>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

namespace ess {

struct BenchOptions {
  int seq_len = 1024;
  int channels = 2;
  int state = 16;  // N (d_k for attention-like cases)
  unsigned seed = 0;
  double tol = 1e-3;  // absolute tolerance of the tolerance-ESS comparison
  double sweep_rtol = 1e-12;
  std::string stack_case = "mamba";  // bench_stack's case
};

struct BenchRow {
  std::string name, description, fast_engine;  // fast_engine "skipped": predicted past the budget
  int seq_len = 0, state = 0, channels = 0;
  double fast_seconds = 0, dense_seconds = 0;  // medians per channel; NaN when not run
  double max_deviation = 0;                    // max |σ_fast − σ_dense| / σ_1(H_i); NaN without dense
  long blocks_compared = 0, ess_mismatches = 0, near_threshold = 0;  // σ within 1e-9·τ of τ: ties, not counted
  double mean_tolerance_ess = 0;
  bool dense_run = false;
};

// One case at options.seq_len; the dense baseline too when `with_dense`.
BenchRow bench_case(const std::string& name, const BenchOptions& options, bool with_dense);

// Every case over `lengths`: the dense baseline only while its time predicted from the last
// measured length (∝ L⁴) fits `budget_seconds` for the case (and L ≤ 1024 before any measurement),
// the fast engine only while its time predicted from its measured growth does; a skipped length
// gives a row with fast_engine "skipped". `done` is called after each row.
std::vector<BenchRow> bench_scaling(const std::vector<std::string>& names, const std::vector<int>& lengths,
                                    const BenchOptions& options, double budget_seconds, bool with_dense,
                                    const std::function<void(const BenchRow&)>& done = {});

// A whole model of one case: `layers` × options.channels random channels of options.stack_case
// (N = options.state) at options.seq_len, every block of every channel, the engine `auto` picks,
// `threads` threads (0 = all cores).
struct StackResult {
  std::string case_name;
  int layers = 0, channels = 0, seq_len = 0, state = 0, threads = 0;
  double seconds = 0, mean_tolerance_ess = 0;  // seconds: wall clock of the measurements (ESS only)
  double thread_seconds_per_channel = 0;       // seconds × threads / (layers × channels)
  // CPU seconds of the process (all threads) over the measurements, and per channel: what the
  // stack costs on an idle machine, whatever the load while it ran.
  double cpu_seconds = 0, cpu_seconds_per_channel = 0;
};
// `layer_done(l, seconds, engine)` is called after each layer.
StackResult bench_stack(
    int layers, const BenchOptions& options, int threads,
    const std::function<void(int layer, double seconds, const std::string& engine)>& layer_done = {});

// `ess bench --long`: one softmax head of a long case (analysis/bench_cases.h) at `blocks` evenly
// spaced interior blocks, the lanczos engine against the dense engine on the same blocks in the
// same run (dense only when `with_dense`), single-threaded.
struct LongBenchRow {
  std::string name, description;
  int seq_len = 0, blocks = 0;
  double lanczos_seconds = 0, dense_seconds = 0;  // CPU seconds of the thread; dense NaN when not run
  long certified = 0, uncertified = 0, not_converged = 0;
  long whole = 0;                 // blocks whose whole spectrum was computed
  double mean_sigma_count = 0;    // σ computed per block
  double mean_tolerance_ess = 0;  // lanczos
  double max_interval = 0;        // largest (upper − lower) / upper of the entropy intervals
  long ess_mismatches = 0;        // certified blocks whose tolerance-ESS differs from dense
  long entropy_outside = 0;       // blocks whose dense entropy-ESS lies outside the interval
  bool dense_run = false;
};
LongBenchRow bench_long_case(const std::string& name, int seq_len, int blocks, unsigned seed, double tol,
                             bool with_dense);

// The `ess bench --json` entries (keys in docs/analysis.md, "JSON output").
nlohmann::ordered_json to_json(const BenchRow& row);
nlohmann::ordered_json to_json(const StackResult& stack);
nlohmann::ordered_json to_json(const LongBenchRow& row);

}  // namespace ess
