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
  std::string indices;  // "start:stop:step" or "i,j,k" (parse_indices); empty = every block
  int blocks = 0;       // > 0: that many evenly spaced interior blocks instead (not with indices)
  int keep_sigma = 0;   // store the top-K singular values per block (0 = none)
  int threads = 0;      // 0 = all hardware threads
  // The thread count that decides the two cuts that change a channel's bits (a lanczos channel cut
  // into block chunks, LAPACK's threads inside a sweep) when a layer has fewer channels than
  // threads; 0 = `threads`. A process measuring a share of the layer (LayerShare: an MPI rank)
  // sets the count a single process would run, so that its values are that process's bit for bit.
  int cut_threads = 0;
  double sweep_rtol = 1e-12;  // sweep truncation, relative to the running largest σ
  StudentOptions students;    // sparse students measured after each layer (Pipeline::measure)
  LanczosOptions lanczos;     // lanczos engine settings (tol and tol_mode are taken from above)

  // The blocks i to measure on a layer of length L (blocks > 0: evenly_spaced_indices, else
  // parse_indices(indices)); block_count is the same number without building the list (the
  // memory guard). UsageError when the selection is empty or malformed.
  std::vector<int> block_indices(int seq_len) const;
  long long block_count(int seq_len) const;
  // Throws UsageError naming the offending field (as an Option) when a setting is out of range.
  void validate() const;
  // The same as a flag; `error` receives the message.
  bool IsValid(std::string* error) const;
};

// Per-block status codes in LayerResult::status.
// block_uncertified (lanczos engine): σ_k of the largest k computed could not be certified below
// the threshold within the engine's limits (the dense fallback's H_i did not fit); tolerance-ESS is
// then a lower bound and the entropy interval is still certified.
enum BlockStatus : std::uint8_t { block_ok = 0, block_not_converged = 1, block_non_finite = 2, block_uncertified = 3 };

struct LayerResult {
  std::string name, family;
  int layer_index = 0;
  ChannelKind channel_kind = ChannelKind::channel;
  int head_dim = 0;  // head layers: numbers per value vector (OperatorLayer::head_dim); 0 = not recorded
  int seq_len = 0, batch = 0, channels = 0;
  std::string engine;  // the engine actually used
  double tol = 0;
  TolMode tol_mode = TolMode::absolute;
  double sweep_rtol = 0;
  std::vector<int> indices;                 // [I]
  std::vector<int> tss;                     // [I]
  std::vector<int> attainable;              // [I] min(TSS_i, i, L−i)
  std::vector<std::int32_t> tolerance_ess;  // [B, C, I]
  std::vector<double> entropy_ess;          // [B, C, I]  (lanczos, partial spectrum: interval midpoint)
  std::vector<double> entropy_ess_lower;    // [B, C, I]  certified interval (lanczos engine only;
  std::vector<double> entropy_ess_upper;    // [B, C, I]  equal to entropy_ess where the spectrum is whole)
  std::vector<std::int32_t> sigma_count;    // [B, C, I]  σ computed (lanczos; min(i, L−i) = whole)
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

// The engine `auto` resolves to for this operator and index set: structured for realizations with
// 4N ≤ L; otherwise sweep for dense index sets, lanczos from kLanczosMinLength on (or when a dense
// T would not fit in memory), dense below. Measured (`ess bench --long`, 32 blocks, one thread):
// at L = 2048 lanczos is 5–19× faster than dense on sink, diffuse, induction and window heads and
// as fast (1.1×, dense fallback) on local and random high-rank heads; at L = 1024 the local head
// is 0.6–0.7× (the table and failed Krylov attempts do not pay for themselves yet).
constexpr int kLanczosMinLength = 2048;
EngineKind choose_engine(const LayerOperator& op, EngineKind requested, const std::vector<int>& indices);

// The singular values of the requested blocks of channel (b, c) by one engine (not `automatic`):
// structured on the operator's realization, dense or sweep on its materialized T (held in ws.T).
// lanczos: products from the family's block_products(), else its realization, else its T.
void channel_spectra(const LayerOperator& op, int b, int c, EngineKind engine, const std::vector<int>& indices,
                     double sweep_rtol, DenseWorkspace& ws, SpectrumSink& sink,
                     const LanczosOptions& lanczos = LanczosOptions{});

// The products the lanczos engine uses for channel (b, c): the family's own, its realization's
// when the state is small (4N ≤ L, where `auto` picks the structured engine) or an L×L T would not
// fit in memory, otherwise a dense T materialized into ws.T. A large state makes every product
// cost O(L·N) per vector and writing a block out O(i·(L−i)·N): a long convolution (N = K ≈ L) at
// L = 2048 took 237 s for 16 blocks through its realization, against 11.7 s for the dense engine.
// prefer_realization: the realization whenever there is one (tests of its products).
std::unique_ptr<BlockProducts> channel_products(const LayerOperator& op, int b, int c, DenseWorkspace& ws,
                                                bool prefer_realization = false);
// Whether those products go through a materialized T (memory estimates).
bool lanczos_products_use_T(const LayerOperator& op);

// Called after each channel, serialized by the library: channels done and total (batch × channels).
using ChannelProgressFn = std::function<void(long done, long total)>;

// One process's share of a layer when several cooperating processes divide its (batch, channel)
// items b·C + c among themselves (ess under MPI, tools/ess/mpi.cpp; the library itself knows no
// MPI). Only the items [begin, end) are measured; the result arrays keep their whole-layer shape
// and the other items stay zero. `reduce_max` receives this share's layer_sigma_max [B] and must
// replace it with the maximum over all shares (tolerance mode `layer` needs the layer-wide σ_1
// before it counts). Decisions that could change a channel's bits (cutting a lanczos channel into
// block chunks, threaded LAPACK inside a sweep) follow the whole layer and EssOptions::cut_threads,
// so each item's values are those of a run over the whole layer with that many threads.
struct LayerShare {
  long begin = 0, end = -1;  // end < 0: every item
  std::function<void(std::vector<double>& layer_sigma_max)> reduce_max;
  bool whole() const { return begin == 0 && end < 0; }
};

// Computes ESS for every (batch, channel) of one layer, threads over channels. Throws UsageError
// for invalid options or an engine the family does not support, InputError when the result arrays
// and one worker's working set do not fit in memory (ess::check_memory, before anything sized by
// the layer is allocated; the message names the options indices / engine that shrink the work);
// the number of threads is reduced to what fits. Messages do not name the layer;
// Pipeline::measure adds that.
// With a `share`, only its items (progress counts those).
LayerResult compute_layer(const OperatorLayer& layer, const EssOptions& options, const ChannelProgressFn& progress = {},
                          const LayerShare& share = {});

// The first memory check compute_layer makes (with the requested engine; `auto`: the cheapest the
// family has): InputError when the result arrays and one worker's working set exceed the limit.
// Cheap (shapes only): Pipeline::measure_all runs it on every layer before measuring the first.
void check_layer_memory(const LayerOperator& op, const EssOptions& options);

// Memory estimates behind that guard (bytes, saturating): the result arrays of `blocks` blocks
// over batch × channels, and one worker's working set for an engine (not `automatic`) on a layer
// of length L and state size N with `channels` (batch × channels) in all (dense/sweep: 2 L²
// doubles; structured: the realizations of up to kLanes channels and N×N factors per lane;
// lanczos: a dense T only when the family has neither products nor a realization, the largest H_i
// its dense fallback writes out, and the solver's vectors).
struct LanczosWork {
  bool needs_T = false;  // products go through T (lanczos_products_use_T)
  double max_block_bytes = LanczosOptions{}.max_block_bytes;
};
LanczosWork lanczos_work(const LayerOperator& op, const EssOptions& options);
std::uint64_t result_bytes(long long batch, long long channels, long long blocks, int keep_sigma);
std::uint64_t worker_bytes(EngineKind engine, int L, int N, long long blocks, long long channels,
                           const LanczosWork& lanczos = {});

}  // namespace ess
