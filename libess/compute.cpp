#include "libess/compute.h"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <exception>
#include <memory>
#include <mutex>
#include <sstream>
#include <thread>

#include "libess/checked.h"
#include "libess/error.h"
#include "libess/lane_kernels.h"
#include "libess/memory.h"
#include "libess/work_plan.h"

namespace ess {

void EssOptions::validate() const {
  if (!(tol >= 0) || !std::isfinite(tol)) throw UsageError({Option{"tol"}, " must be a finite number ≥ 0"});
  if (keep_sigma < 0) throw UsageError({Option{"keep_sigma"}, " must be ≥ 0"});
  if (blocks < 0) throw UsageError({Option{"blocks"}, " must be ≥ 1"});
  if (blocks > 0 && !indices.empty())
    throw UsageError({"give either ", Option{"blocks"}, " or ", Option{"indices"}, ", not both"});
  if (threads < 0) throw UsageError({Option{"threads"}, " must be ≥ 0 (0 = all cores)"});
  if (!(sweep_rtol >= 0) || sweep_rtol >= 1) throw UsageError({Option{"sweep_rtol"}, " must be in [0, 1)"});
  students.validate();
}

std::vector<int> EssOptions::block_indices(int L) const {
  if (blocks <= 0) return parse_indices(indices, L);
  if (L < 2) throw UsageError("sequence length " + std::to_string(L) + " has no blocks (need L ≥ 2)");
  return evenly_spaced_indices(std::min(blocks, L - 1), L);
}

long long EssOptions::block_count(int L) const {
  if (blocks <= 0) return count_indices(indices, L);
  return static_cast<long long>(block_indices(L).size());
}

bool EssOptions::IsValid(std::string* error) const {
  try {
    validate();
    return true;
  } catch (const UsageError& e) {
    if (error) *error = e.what();
    return false;
  }
}

std::uint64_t result_bytes(long long batch, long long channels, long long blocks, int keep_sigma) {
  const auto u = [](long long v) { return static_cast<std::uint64_t>(std::max(0LL, v)); };
  // Per block: tolerance-ESS 4, entropy-ESS 8, Frobenius 8, error bound 8, status 1 (+ top-K σ
  // as float and the tail norm); per index: i, TSS_i, attainable bound.
  const std::uint64_t per_block = 29 + (keep_sigma > 0 ? 8 + 4 * u(keep_sigma) : 0);
  return saturating_add(saturating_mul(saturating_mul(saturating_mul(u(batch), u(channels)), u(blocks)), per_block),
                        saturating_mul(12, u(blocks)));
}

namespace {
// An L×L T (and the engines' working copy of its size) fits in the memory available.
bool dense_T_fits(int L) {
  const std::uint64_t avail = available_memory_bytes();
  return avail == 0 || 8.0 * L * L * 1.8 <= 0.8 * static_cast<double>(avail);
}

// A state small enough against L for the recurrence to be the cheap path (structured engine,
// lanczos products).
bool small_state(int N, int L) { return N > 0 && 4 * N <= L; }
}  // namespace

bool lanczos_products_use_T(const LayerOperator& op) {
  if (op.has_block_products()) return false;
  const int N = op.realization_dim(), L = op.seq_len();
  return N == 0 || (!small_state(N, L) && dense_T_fits(L));
}

LanczosWork lanczos_work(const LayerOperator& op, const EssOptions& options) {
  return {lanczos_products_use_T(op), options.lanczos.max_block_bytes};
}

std::uint64_t worker_bytes(EngineKind engine, int L, int N, long long blocks, long long channels,
                           const LanczosWork& lanczos) {
  const std::uint64_t l = static_cast<std::uint64_t>(std::max(0, L)), n = static_cast<std::uint64_t>(std::max(0, N));
  const std::uint64_t l2 = saturating_mul(l, l);
  // Lanczos: a dense T only for families without products or a realization, the family's table of
  // the requested blocks (softmax: ≤ 8·L²) plus the largest H_i its dense SVD writes out, at most
  // max_block_bytes together, and the solver's blocks of vectors.
  if (engine == EngineKind::lanczos)
    return saturating_add(saturating_add(lanczos.needs_T ? saturating_mul(8, l2) : 0,
                                         std::min<std::uint64_t>(lanczos.max_block_bytes, saturating_mul(10, l2))),
                          saturating_mul(8 * 1024, l));
  if (engine != EngineKind::structured) return saturating_mul(16, l2);  // T + block copy / carry
  // Structured: up to kLanes channels at once, each with its realization (≈ 3 N L doubles), and
  // per lane the N×N factors of about √I checkpoints plus a few working ones
  // (libess/engine_structured.cpp).
  const auto checkpoints = static_cast<std::uint64_t>(std::ceil(std::sqrt(static_cast<double>(std::max(0LL, blocks)))));
  const auto group = static_cast<std::uint64_t>(std::clamp<long long>(channels, 1, lanes::kLanes));
  const std::uint64_t realizations = saturating_mul(group, saturating_mul(3 * n, l));
  const std::uint64_t factors =
      saturating_mul(lanes::kLanes, saturating_mul(saturating_mul(n, n), 2 * checkpoints + 16));
  return saturating_mul(8, saturating_add(realizations, factors));
}

EngineKind choose_engine(const LayerOperator& op, EngineKind requested, const std::vector<int>& indices) {
  if (requested != EngineKind::automatic) return requested;
  const int L = op.seq_len(), N = op.realization_dim();
  if (small_state(N, L)) return EngineKind::structured;
  // The sweep steps through every i between the first and last requested block; with a sparse
  // index set, SVDs of just the requested blocks are cheaper.
  if (indices.empty()) return EngineKind::dense;
  const long span = indices.back() - indices.front() + 1;
  const bool dense_set = 4L * static_cast<long>(indices.size()) >= span;
  // Without a usable realization, long sequences at a sparse set of blocks go matrix-free: a dense
  // SVD of H_i costs ~m·n·min(m, n), the lanczos engine ~m·n·(passes × block width) for the
  // low-rank blocks of real heads (and falls back to the dense SVD for high-rank blocks); a dense
  // T that does not fit in memory leaves lanczos as the only engine.
  if (N == 0) {
    if (!dense_T_fits(L) || (L >= kLanczosMinLength && !dense_set)) return EngineKind::lanczos;
  }
  return dense_set ? EngineKind::sweep : EngineKind::dense;
}

namespace {

// Turns one channel's block spectra into metrics stored in the LayerResult.
class ChannelAccumulator final : public SpectrumSink {
 public:
  ChannelAccumulator(LayerResult& result, int b, int c, std::vector<double>& retained,
                     std::vector<size_t>& retained_offsets, double& channel_max)
      : R_(result), b_(b), c_(c), retained_(retained), offsets_(retained_offsets), channel_max_(channel_max) {}

  void block(int pos, const double* sigma, int n, double error_bound, bool converged) override {
    record(pos, sigma, n, error_bound, converged);
  }

  bool count_decided(const double* sigma, int n, double error_bound) const override {
    return tolerance_count_decided(R_.tol_mode, R_.tol, sigma, n, error_bound, channel_max_);
  }

  // Lanczos blocks: as block(), then the entropy interval from the tail mass, the status when not
  // certified, and for a partial spectrum ‖H_i‖_F from the exact ‖H_i‖_F² and the kept-σ tail from
  // the tail mass.
  void partial_block(int pos, const Partial& p) override {
    const size_t k = R_.at(b_, c_, pos);
    record(pos, p.sigma, p.count, p.error_bound, p.converged);
    R_.sigma_count[k] = p.count;
    if (R_.status[k] == block_non_finite) {
      R_.entropy_ess_lower[k] = R_.entropy_ess_upper[k] = std::nan("");
      return;
    }
    if (R_.status[k] == block_ok && !p.certified) R_.status[k] = block_uncertified;
    const double f2 = std::max(p.frobenius2, 0.0);
    const EssInterval e = partial_entropy_interval(p.sigma, p.count, p.rank_bound, f2, p.error_bound);
    R_.entropy_ess_lower[k] = e.lower;
    R_.entropy_ess_upper[k] = e.upper;
    // With the whole spectrum, record() took ‖H_i‖_F and the kept-σ tail from the values, as the
    // dense engine does: ‖H_i‖_F² underflows to 0 below ‖H_i‖_F ≈ 10⁻¹⁵⁴ (a block behind a gate
    // of e^−700 stored ‖H_i‖_F = 0 beside its values of 10⁻³⁰¹ before 2026-12-03).
    if (p.count >= p.rank_bound) return;
    R_.frobenius[k] = std::sqrt(f2);
    R_.entropy_ess[k] = 0.5 * (e.lower + e.upper);
    if (R_.sigma_k > 0) {
      double kept2 = 0;
      for (int j = 0; j < std::min(R_.sigma_k, p.count); ++j) kept2 += p.sigma[j] * p.sigma[j];
      R_.sigma_tail[k] = std::sqrt(std::max(0.0, f2 - kept2));
    }
  }

 private:
  void record(int pos, const double* sigma, int n, double error_bound, bool converged) {
    const size_t k = R_.at(b_, c_, pos);
    bool finite = true;
    for (int j = 0; j < n; ++j) finite = finite && std::isfinite(sigma[j]);
    R_.status[k] = !finite ? block_non_finite : !converged ? block_not_converged : block_ok;
    R_.error_bound[k] = error_bound;
    if (!finite) {
      R_.tolerance_ess[k] = -1;
      R_.entropy_ess[k] = std::nan("");
      R_.frobenius[k] = std::nan("");
      if (R_.tol_mode == TolMode::layer) offsets_[pos + 1] = retained_.size();
      return;
    }
    const double s1 = n > 0 ? sigma[0] : 0.0;
    channel_max_ = std::max(channel_max_, s1);
    R_.entropy_ess[k] = entropy_ess(sigma, n);
    R_.frobenius[k] = frobenius_from_sigma(sigma, n);
    if (R_.tol_mode == TolMode::layer) {
      // Keep only σ that can still exceed τ·(layer max) ≥ τ·(running channel max).
      for (int j = 0; j < n && sigma[j] > R_.tol * channel_max_; ++j) retained_.push_back(sigma[j]);
      offsets_[pos + 1] = retained_.size();
    } else {
      R_.tolerance_ess[k] = count_above(sigma, n, tolerance_threshold(R_.tol_mode, R_.tol, s1, 0.0));
    }
    if (R_.sigma_k > 0) {
      const int K = R_.sigma_k;
      float* out = R_.sigma.data() + k * K;
      for (int j = 0; j < K; ++j) out[j] = j < n ? static_cast<float>(sigma[j]) : 0.0f;
      R_.sigma_tail[k] = n > K ? frobenius_from_sigma(sigma + K, n - K) : 0.0;
    }
  }

  LayerResult& R_;
  int b_, c_;
  std::vector<double>& retained_;
  std::vector<size_t>& offsets_;
  double& channel_max_;
};

int attainable_bound(int tss, int i, int L) { return std::min(tss, std::min(i, L - i)); }

}  // namespace

std::unique_ptr<BlockProducts> channel_products(const LayerOperator& op, int b, int c, DenseWorkspace& ws,
                                                bool prefer_realization) {
  if (auto own = op.block_products(b, c)) return own;
  if (op.realization_dim() > 0 && (prefer_realization || !lanczos_products_use_T(op)))
    return std::make_unique<RealizationBlockProducts>(op.realization(b, c));
  const int L = op.seq_len();
  if (ws.T.rows() != L) ws.T.resize(L, L);
  op.materialize(b, c, ws.T);
  return std::make_unique<DenseBlockProducts>(ws.T);
}

void channel_spectra(const LayerOperator& op, int b, int c, EngineKind engine, const std::vector<int>& indices,
                     double sweep_rtol, DenseWorkspace& ws, SpectrumSink& sink, const LanczosOptions& lanczos) {
  if (engine == EngineKind::lanczos) {
    lanczos_block_spectra(*channel_products(op, b, c, ws), indices, lanczos, sink);
    return;
  }
  if (engine == EngineKind::structured) {
    auto realization = op.realization(b, c);
    structured_block_spectra(*realization, indices, sink);
    return;
  }
  const int L = op.seq_len();
  if (ws.T.rows() != L) ws.T.resize(L, L);
  op.materialize(b, c, ws.T);
  if (engine == EngineKind::sweep)
    sweep_block_spectra(ws.T, indices, sweep_rtol, sink);
  else
    dense_block_spectra(ws.T, indices, ws, sink);
}

namespace {

// Refuses (ess::check_memory) when the result arrays plus one worker's working set for `engine`
// (`automatic`: the cheapest the family has) exceed the memory limit. The message names the work
// and the options that shrink it, not the layer (Pipeline adds that).
void guard_layer_memory(const LayerOperator& op, const EssOptions& options, EngineKind engine,
                        const std::string& engine_name) {
  const int L = op.seq_len(), B = op.batch(), C = op.channels(), N = op.realization_dim();
  const long long I_count = options.block_count(L);
  const long long channels = static_cast<long long>(B) * C;
  const std::uint64_t blocks =
      saturating_mul(static_cast<std::uint64_t>(channels), static_cast<std::uint64_t>(I_count));
  const LanczosWork lw = lanczos_work(op, options);
  const auto bytes = [&](EngineKind e) { return worker_bytes(e, L, N, I_count, channels, lw); };
  std::uint64_t per_worker = 0;
  EngineKind least = engine;
  if (engine == EngineKind::automatic) {
    // The cheapest engine auto may pick: structured with a realization, lanczos without one.
    const EngineKind fast = N > 0 ? EngineKind::structured : EngineKind::lanczos;
    least = bytes(fast) < bytes(EngineKind::dense) ? fast : EngineKind::dense;
  } else if (engine == EngineKind::structured && N == 0) {
    return;  // refused as a usage error instead
  }
  per_worker = bytes(least);
  std::ostringstream what;
  what << "measuring it (" << op.family() << ", L = " << L << ", " << blocks << " block(s) over " << B << " × " << C
       << " channel(s), " << engine_name << " engine)";
  std::vector<MessagePart> hint = {"measure fewer blocks with ", Option{"indices"}};
  if (least != EngineKind::structured && least != EngineKind::lanczos) {
    hint.emplace_back(" or set ");
    hint.emplace_back(Option{"engine"});
    hint.emplace_back(N > 0 ? " to structured" : " to lanczos (matrix-free)");
  }
  check_memory(saturating_add(result_bytes(B, C, I_count, options.keep_sigma), per_worker), what.str(), hint);
}

}  // namespace

void check_layer_memory(const LayerOperator& op, const EssOptions& options) {
  guard_layer_memory(op, options, options.engine, to_string(options.engine));
}

LayerResult compute_layer(const OperatorLayer& layer, const EssOptions& options, const ChannelProgressFn& progress,
                          const LayerShare& share) {
  options.validate();
  const auto t_start = std::chrono::steady_clock::now();
  const LayerOperator& op = *layer.op;
  const int L = op.seq_len(), B = op.batch(), C = op.channels();

  LayerResult R;
  R.name = layer.name;
  R.layer_index = layer.layer_index;
  R.family = op.family();
  R.channel_kind = op.channel_kind();
  R.head_dim = R.channel_kind == ChannelKind::head ? layer.head_dim : 0;
  R.seq_len = L;
  R.batch = B;
  R.channels = C;
  R.tol = options.tol;
  R.tol_mode = options.tol_mode;
  R.sweep_rtol = options.sweep_rtol;
  // Memory guard (docs/reliability.md), before allocating anything sized by L or the block count:
  // first with the cheapest engine the family has (before the block list exists), again once the
  // engine is chosen; the number of threads is then reduced to what fits.
  check_layer_memory(op, options);
  const long long I_count = options.block_count(L);
  const int N = op.realization_dim();
  const long long total_channels = static_cast<long long>(B) * C;
  const std::uint64_t blocks = saturating_mul(saturating_mul(B, C), static_cast<std::uint64_t>(I_count));
  const std::uint64_t results = result_bytes(B, C, I_count, options.keep_sigma);
  R.indices = options.block_indices(L);
  const EngineKind engine = choose_engine(op, options.engine, R.indices);
  if (engine == EngineKind::structured && op.realization_dim() == 0)
    throw UsageError(
        {"family " + op.family() + " has no state-space realization (the structured engine needs one); set ",
         Option{"engine"}, " to sweep, dense or auto"});
  R.engine = to_string(engine);
  const std::uint64_t per_thread = worker_bytes(engine, L, N, I_count, total_channels, lanczos_work(op, options));
  guard_layer_memory(op, options, engine, R.engine);

  const int I = R.num_indices();
  for (int i : R.indices) {
    R.tss.push_back(op.tss(i));
    R.attainable.push_back(attainable_bound(R.tss.back(), i, L));
  }
  const size_t n = static_cast<size_t>(blocks);
  R.tolerance_ess.assign(n, 0);
  R.entropy_ess.assign(n, 0.0);
  R.frobenius.assign(n, 0.0);
  R.error_bound.assign(n, 0.0);
  R.status.assign(n, block_ok);
  R.layer_sigma_max.assign(B, 0.0);
  if (engine == EngineKind::lanczos) {
    R.entropy_ess_lower.assign(n, 0.0);
    R.entropy_ess_upper.assign(n, 0.0);
    R.sigma_count.assign(n, 0);
  }
  R.sigma_k = options.keep_sigma;
  if (R.sigma_k > 0) {
    R.sigma.assign(n * R.sigma_k, 0.0f);
    R.sigma_tail.assign(n, 0.0);
  }

  // Threads: all cores by default, fewer when the working sets would not fit in memory.
  int threads = options.threads > 0 ? options.threads : static_cast<int>(std::thread::hardware_concurrency());
  threads = std::max(1, threads);
  const int requested_threads = threads;
  LanczosOptions lanczos = options.lanczos;
  lanczos.tol = options.tol;
  lanczos.tol_mode = options.tol_mode;
  const std::uint64_t avail = available_memory_bytes();
  if (avail > 0) {
    const std::uint64_t room = avail > results ? avail - results : 0;
    threads = static_cast<int>(std::max<std::uint64_t>(1, std::min<std::uint64_t>(threads, room / per_thread)));
  }

  const bool layer_mode = options.tol_mode == TolMode::layer;
  std::vector<std::vector<double>> retained(layer_mode ? static_cast<size_t>(B) * C : 0);
  std::vector<std::vector<size_t>> offsets(layer_mode ? static_cast<size_t>(B) * C : 0);
  std::vector<double> channel_max(static_cast<size_t>(B) * C, 0.0);

  // Work units: channel groups (the structured engine runs kLanes channels at once in SIMD lanes),
  // cut into block chunks when there are fewer groups than threads (libess/work_plan.h). A share
  // (LayerShare) plans only its items [first, first + total).
  const long layer_items = static_cast<long>(B) * C;
  const long first = std::clamp(share.begin, 0L, layer_items);
  const long total = (share.end < 0 ? layer_items : std::clamp(share.end, first, layer_items)) - first;
  const int group = engine == EngineKind::structured ? lanes::kLanes : 1;
  // Two cuts change a channel's bits, so both follow the whole layer and `cut_threads` (a share's
  // process: the threads a single process would run; EssOptions::cut_threads), not this process's
  // threads: a lanczos channel cut into block chunks (each chunk starts its k and block width from
  // scratch instead of from the previous block), and LAPACK's threads inside a sweep. Both take
  // the threads asked for, not those memory leaves (a rank's memory differs from one process's).
  const int cut = options.cut_threads > 0 ? options.cut_threads : requested_threads;
  std::vector<WorkUnit> units;
  if (engine == EngineKind::lanczos) {
    // The whole layer's plan, of which this share's units (one item each: never across a share);
    // fewer threads than `cut` take the chunks one after another.
    for (const WorkUnit& w : plan_work(layer_items, group, R.indices, L, cut, engine))
      if (w.first_item >= first && w.first_item < first + total) units.push_back(w);
  } else {
    // The structured and dense engines' chunks are bit-identical to whole channels; the sweep is
    // never cut.
    units = plan_work(total, group, R.indices, L, threads, engine);
    for (auto& w : units) w.first_item += first;
  }
  const bool split = static_cast<long>(units.size()) > (total + group - 1) / group;
  threads = std::max(1, std::min(threads, static_cast<int>(units.size())));
  // The sweep carries its factor from block to block, so a layer with fewer channels than threads
  // runs them one at a time and lets LAPACK use the threads inside each step's SVD.
  int blas_threads = 1;
  if (engine == EngineKind::sweep && cut > 1 && layer_items < cut) {
    blas_threads = cut;
    threads = 1;
  }
  // A cut channel's chunks keep their own running max and retained σ, merged in order afterwards.
  struct UnitState {
    std::vector<std::vector<double>> retained;
    std::vector<std::vector<size_t>> offsets;
    std::vector<double> channel_max;
  };
  std::vector<UnitState> unit_state(split ? units.size() : 0);

  set_blas_threads(blas_threads);
  std::atomic<long> next{0}, done_blocks{0};
  std::mutex progress_mutex;
  std::exception_ptr failure;
  std::mutex failure_mutex;

  auto worker = [&]() {
    DenseWorkspace ws;
    try {
      for (long u = next++; u < static_cast<long>(units.size()); u = next++) {
        {
          std::lock_guard<std::mutex> lock(failure_mutex);
          if (failure) return;
        }
        const WorkUnit& w = units[u];
        const std::vector<int> chunk(R.indices.begin() + w.pos_begin, R.indices.begin() + w.pos_end);
        UnitState local;
        UnitState& us = split ? unit_state[u] : local;
        us.retained.assign(w.items, {});
        us.offsets.assign(w.items, {});
        us.channel_max.assign(w.items, 0.0);
        std::vector<std::unique_ptr<ChannelAccumulator>> accumulators;
        std::vector<std::unique_ptr<OffsetSink>> sinks;
        std::vector<SpectrumSink*> sink_ptrs;
        for (long k = 0; k < w.items; ++k) {
          const long item = w.first_item + k;
          const int b = static_cast<int>(item / C), c = static_cast<int>(item % C);
          auto& ret = layer_mode && !split ? retained[item] : us.retained[k];
          auto& off = layer_mode && !split ? offsets[item] : us.offsets[k];
          if (layer_mode) off.assign(I + 1, 0);
          accumulators.push_back(
              std::make_unique<ChannelAccumulator>(R, b, c, ret, off, split ? us.channel_max[k] : channel_max[item]));
          sinks.push_back(std::make_unique<OffsetSink>(*accumulators.back(), w.pos_begin));
          sink_ptrs.push_back(sinks.back().get());
        }
        if (engine == EngineKind::structured) {
          std::vector<std::unique_ptr<Realization>> realizations;
          std::vector<const Realization*> ptrs;
          for (long k = 0; k < w.items; ++k) {
            const long item = w.first_item + k;
            realizations.push_back(op.realization(static_cast<int>(item / C), static_cast<int>(item % C)));
            ptrs.push_back(realizations.back().get());
          }
          structured_block_spectra(ptrs, chunk, sink_ptrs);
        } else if (engine == EngineKind::lanczos) {
          for (long k = 0; k < w.items; ++k) {
            const long item = w.first_item + k;
            const auto products = channel_products(op, static_cast<int>(item / C), static_cast<int>(item % C), ws);
            lanczos_block_spectra(*products, chunk, lanczos, *sink_ptrs[k]);
          }
        } else {
          for (long k = 0; k < w.items; ++k) {
            const long item = w.first_item + k;
            if (ws.T.rows() != L) ws.T.resize(L, L);
            op.materialize(static_cast<int>(item / C), static_cast<int>(item % C), ws.T);
            if (engine == EngineKind::dense)
              dense_block_spectra(ws.T, chunk, ws, *sink_ptrs[k]);
            else
              sweep_block_spectra(ws.T, chunk, options.sweep_rtol, *sink_ptrs[k]);
          }
        }
        const long d = (done_blocks += w.items * (w.pos_end - w.pos_begin));
        if (progress) {
          std::lock_guard<std::mutex> lock(progress_mutex);
          progress(I > 0 ? d / I : total, total);
        }
      }
    } catch (...) {
      std::lock_guard<std::mutex> lock(failure_mutex);
      if (!failure) failure = std::current_exception();
    }
  };
  std::vector<std::thread> pool;
  for (int t = 1; t < threads; ++t) pool.emplace_back(worker);
  worker();
  for (auto& th : pool) th.join();
  set_blas_single_threaded();
  if (failure) std::rethrow_exception(failure);

  if (split) {  // merge the chunks of each channel, in block order (units are ordered by chunk)
    for (auto& off : offsets) off.assign(I + 1, 0);
    for (size_t u = 0; u < units.size(); ++u) {
      const WorkUnit& w = units[u];
      for (long k = 0; k < w.items; ++k) {
        const long item = w.first_item + k;
        channel_max[item] = std::max(channel_max[item], unit_state[u].channel_max[k]);
        if (!layer_mode) continue;
        const size_t base = retained[item].size();
        const auto& part = unit_state[u].retained[k];
        retained[item].insert(retained[item].end(), part.begin(), part.end());
        for (int pos = w.pos_begin; pos < w.pos_end; ++pos)
          offsets[item][pos + 1] = base + unit_state[u].offsets[k][pos + 1];
      }
    }
  }

  for (int b = 0; b < B; ++b)
    for (int c = 0; c < C; ++c)
      R.layer_sigma_max[b] = std::max(R.layer_sigma_max[b], channel_max[static_cast<size_t>(b) * C + c]);
  if (share.reduce_max) share.reduce_max(R.layer_sigma_max);  // the maximum over every share
  if (layer_mode) {
    for (int b = 0; b < B; ++b)
      for (int c = 0; c < C; ++c) {
        const size_t item = static_cast<size_t>(b) * C + c;
        if (static_cast<long>(item) < first || static_cast<long>(item) >= first + total) continue;
        const double threshold = options.tol * R.layer_sigma_max[b];
        for (int pos = 0; pos < I; ++pos) {
          const size_t k = R.at(b, c, pos);
          if (R.status[k] == block_non_finite) continue;
          const auto& v = retained[item];
          R.tolerance_ess[k] = count_above(v.data() + offsets[item][pos],
                                           static_cast<int>(offsets[item][pos + 1] - offsets[item][pos]), threshold);
        }
      }
  }
  R.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t_start).count();
  return R;
}

}  // namespace ess
