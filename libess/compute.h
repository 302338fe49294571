// EssOptions in, LayerResult out: ESS of every block of every channel of one layer.
#pragma once
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "libess/engine.h"
#include "libess/metrics.h"
#include "libess/operator.h"
#include "libess/students.h"

namespace ess {

struct EssOptions {
  double tol = 1e-3;
  TolMode tol_mode = TolMode::absolute;
  EngineKind engine = EngineKind::automatic;
  std::string indices;        // "start:stop:step"; empty = every block
  int keep_sigma = 0;         // store the top-K singular values per block (0 = none)
  int threads = 0;            // 0 = all hardware threads
  double sweep_rtol = 1e-12;  // sweep truncation, relative to the running largest σ
  StudentOptions students;    // sparse students measured after each layer (Pipeline::measure)

  // Throws UsageError naming the offending field (as an Option) when a setting is out of range.
  void validate() const;
  // The same as a flag; `error` receives the message.
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
  StudentResults students;                  // sparse students (empty when not measured)

  size_t at(int b, int c, int pos) const { return (static_cast<size_t>(b) * channels + c) * indices.size() + pos; }
  int num_indices() const { return static_cast<int>(indices.size()); }
};

// The engine `auto` resolves to for this operator and index set.
EngineKind choose_engine(const LayerOperator& op, EngineKind requested, const std::vector<int>& indices);

// The singular values of the requested blocks of channel (b, c) by one engine (not `automatic`):
// structured on the operator's realization, dense or sweep on its materialized T (held in ws.T).
void channel_spectra(const LayerOperator& op, int b, int c, EngineKind engine, const std::vector<int>& indices,
                     double sweep_rtol, DenseWorkspace& ws, SpectrumSink& sink);

// Called after each channel, serialized by the library: channels done and total (batch × channels).
using ChannelProgressFn = std::function<void(long done, long total)>;

// Computes ESS for every (batch, channel) of one layer, threads over channels. Throws UsageError
// for invalid options or an engine the family does not support, InputError when the result arrays
// and one worker's working set do not fit in memory (ess::check_memory, before anything sized by
// the layer is allocated; the message names the options indices / engine that shrink the work);
// the number of threads is reduced to what fits. Messages do not name the layer;
// Pipeline::measure adds that.
LayerResult compute_layer(const OperatorLayer& layer, const EssOptions& options,
                          const ChannelProgressFn& progress = {});

// The first memory check compute_layer makes (with the requested engine; `auto`: the cheapest the
// family has): InputError when the result arrays and one worker's working set exceed the limit.
// Cheap (shapes only): Pipeline::measure_all runs it on every layer before measuring the first.
void check_layer_memory(const LayerOperator& op, const EssOptions& options);

// Memory estimates behind that guard (bytes, saturating): the result arrays of `blocks` blocks
// over batch × channels, and one worker's working set for an engine (not `automatic`) on a layer
// of length L and state size N with `channels` (batch × channels) in all (dense/sweep: 2 L²
// doubles; structured: the realizations of up to kLanes channels and N×N factors per lane).
std::uint64_t result_bytes(long long batch, long long channels, long long blocks, int keep_sigma);
std::uint64_t worker_bytes(EngineKind engine, int L, int N, long long blocks, long long channels);

}  // namespace ess
