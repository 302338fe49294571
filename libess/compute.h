// EssOptions in, LayerResult out: ESS of every block of every channel of one layer.
#pragma once
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "libess/engine.h"
#include "libess/metrics.h"
#include "libess/operator.h"

namespace ess {

struct EssOptions {
  double tol = 1e-3;
  TolMode tol_mode = TolMode::absolute;
  EngineKind engine = EngineKind::automatic;
  std::string indices;        // "start:stop:step"; empty = every block
  int keep_sigma = 0;         // store the top-K singular values per block (0 = none)
  int threads = 0;            // 0 = all hardware threads
  double sweep_rtol = 1e-12;  // sweep truncation, relative to the running largest σ
  // Called from worker threads (serialized by the library) after each channel: (done, total).
  std::function<void(long done, long total)> progress;

  bool IsValid(std::string* error) const;
};

// Per-block status codes in LayerResult::status.
enum BlockStatus : std::uint8_t { block_ok = 0, block_not_converged = 1, block_non_finite = 2 };

struct LayerResult {
  std::string name, family;
  int layer_index = 0;
  ChannelKind channel_kind = ChannelKind::channel;
  int seq_len = 0, batch = 0, channels = 0;
  std::string engine;  // the engine actually used
  double tol = 0;
  TolMode tol_mode = TolMode::absolute;
  double sweep_rtol = 0;
  std::vector<int> indices;                 // [I]
  std::vector<int> tss;                     // [I]
  std::vector<int> attainable;              // [I] min(TSS_i, i, L−i)
  std::vector<std::int32_t> tolerance_ess;  // [B, C, I]
  std::vector<double> entropy_ess;          // [B, C, I]
  std::vector<double> frobenius;            // [B, C, I]  ‖H_i‖_F
  std::vector<double> error_bound;          // [B, C, I]  bound on σ error (sweep truncation)
  std::vector<std::uint8_t> status;         // [B, C, I]  BlockStatus
  std::vector<double> layer_sigma_max;      // [B]  largest σ_1 over blocks and channels
  int sigma_k = 0;                          // K of `sigma` (0 = not kept)
  std::vector<float> sigma;                 // [B, C, I, K]  top-K σ, zero-padded
  std::vector<double> sigma_tail;           // [B, C, I]  sqrt(Σ_{k>K} σ_k²)
  double seconds = 0;                       // wall time of compute_layer

  size_t at(int b, int c, int pos) const { return (static_cast<size_t>(b) * channels + c) * indices.size() + pos; }
  int num_indices() const { return static_cast<int>(indices.size()); }
};

// The engine `auto` resolves to for this operator and index set.
EngineKind choose_engine(const LayerOperator& op, EngineKind requested, const std::vector<int>& indices);

// Computes ESS for every (batch, channel) of a layer. Throws UsageError for an engine the
// family does not support, InputError when the result arrays and one worker's working set do not
// fit in memory (ess::check_memory; the message names --indices / --engine structured).
LayerResult compute_layer(const OperatorLayer& layer, const EssOptions& options);

// Bytes of memory this process may still use (ess::memory_limit_bytes: MemAvailable, the cgroup
// limit, RLIMIT_AS/RLIMIT_DATA or --max-memory), or 0 when unknown.
std::uint64_t available_memory_bytes();

}  // namespace ess
