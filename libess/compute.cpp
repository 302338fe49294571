#include "libess/compute.h"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <exception>
#include <mutex>
#include <sstream>
#include <thread>

#include "libess/checked.h"
#include "libess/error.h"
#include "libess/memory.h"

namespace ess {

bool EssOptions::IsValid(std::string* error) const {
  auto fail = [&](const std::string& m) {
    if (error) *error = m;
    return false;
  };
  if (!(tol >= 0) || !std::isfinite(tol)) return fail("--tol must be a finite number ≥ 0");
  if (keep_sigma < 0) return fail("--keep-sigma must be ≥ 0");
  if (threads < 0) return fail("--threads must be ≥ 0 (0 = all cores)");
  if (!(sweep_rtol >= 0) || sweep_rtol >= 1) return fail("--sweep-rtol must be in [0, 1)");
  return true;
}

std::uint64_t available_memory_bytes() {
  const std::uint64_t limit = memory_limit_bytes();  // MemAvailable, cgroup, rlimits or --max-memory
  return limit == kUnlimitedMemory ? 0 : limit;
}

EngineKind choose_engine(const LayerOperator& op, EngineKind requested, const std::vector<int>& indices) {
  if (requested != EngineKind::automatic) return requested;
  const int L = op.seq_len(), N = op.realization_dim();
  if (N > 0 && 4 * N <= L) return EngineKind::structured;
  // The sweep steps through every i between the first and last requested block; with a sparse
  // index set, SVDs of just the requested blocks are cheaper.
  if (indices.empty()) return EngineKind::dense;
  const long span = indices.back() - indices.front() + 1;
  return 4L * static_cast<long>(indices.size()) >= span ? EngineKind::sweep : EngineKind::dense;
}

namespace {

// Turns one channel's block spectra into metrics stored in the LayerResult.
class ChannelAccumulator final : public SpectrumSink {
 public:
  ChannelAccumulator(LayerResult& result, int b, int c, std::vector<double>& retained,
                     std::vector<size_t>& retained_offsets, double& channel_max)
      : R_(result), b_(b), c_(c), retained_(retained), offsets_(retained_offsets), channel_max_(channel_max) {}

  void block(int pos, const double* sigma, int n, double error_bound, bool converged) override {
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

 private:
  LayerResult& R_;
  int b_, c_;
  std::vector<double>& retained_;
  std::vector<size_t>& offsets_;
  double& channel_max_;
};

int attainable_bound(int tss, int i, int L) { return std::min(tss, std::min(i, L - i)); }

}  // namespace

LayerResult compute_layer(const OperatorLayer& layer, const EssOptions& options) {
  std::string why;
  if (!options.IsValid(&why)) throw UsageError(why);
  const auto t_start = std::chrono::steady_clock::now();
  const LayerOperator& op = *layer.op;
  const int L = op.seq_len(), B = op.batch(), C = op.channels();

  LayerResult R;
  R.name = layer.name;
  R.layer_index = layer.layer_index;
  R.family = op.family();
  R.channel_kind = op.channel_kind();
  R.seq_len = L;
  R.batch = B;
  R.channels = C;
  R.tol = options.tol;
  R.tol_mode = options.tol_mode;
  R.sweep_rtol = options.sweep_rtol;
  // Memory guard (docs/reliability.md), before allocating anything sized by L or the block count:
  // the result arrays plus one worker's working set must fit (first with the cheapest engine the
  // family has, before the block list exists; again once the engine is chosen). The number of
  // threads is then reduced to what fits.
  long long I_count = 0;
  try {
    I_count = count_indices(options.indices, L);
  } catch (const UsageError& e) {
    throw UsageError("layer '" + layer.name + "': " + e.what());
  }
  const int N = op.realization_dim();
  const std::uint64_t blocks = saturating_mul(saturating_mul(B, C), static_cast<std::uint64_t>(I_count));
  // Per block: tolerance-ESS 4, entropy-ESS 8, Frobenius 8, error bound 8, status 1 (+ top-K σ);
  // per index: i, TSS_i, attainable bound.
  const std::uint64_t per_block = 29 + (options.keep_sigma > 0 ? 8 + 4 * std::uint64_t(options.keep_sigma) : 0);
  const std::uint64_t results =
      saturating_add(saturating_mul(blocks, per_block), saturating_mul(12, static_cast<std::uint64_t>(I_count)));
  // Dense and sweep: T and a block copy / carry (≤ 2 L² doubles); structured: the realization
  // (≈ 3 N L doubles) and the N×N factors kept for every requested block.
  const auto working_set = [&](EngineKind e) {
    return e == EngineKind::structured
               ? saturating_mul(8, saturating_add(saturating_mul(3 * std::uint64_t(N), L),
                                                  saturating_mul(saturating_mul(N, N), I_count)))
               : saturating_mul(16, saturating_mul(L, L));
  };
  const auto guard = [&](std::uint64_t per_worker, const std::string& engine_name, bool structured) {
    std::ostringstream what, hint;
    what << "layer '" << layer.name << "' (" << op.family() << ", L = " << L << ", " << blocks << " block(s) over " << B
         << " × " << C << " channel(s), " << engine_name << " engine)";
    hint << "measure fewer blocks with --indices";
    if (!structured && N > 0) hint << " or use --engine structured";
    check_memory(saturating_add(results, per_worker), what.str(), hint.str());
  };
  if (options.engine != EngineKind::automatic) {
    if (options.engine != EngineKind::structured || N > 0)
      guard(working_set(options.engine), to_string(options.engine), options.engine == EngineKind::structured);
  } else {
    const std::uint64_t dense = working_set(EngineKind::dense);
    const std::uint64_t least = N > 0 ? std::min(dense, working_set(EngineKind::structured)) : dense;
    guard(least, "auto", least != dense);
  }
  R.indices = parse_indices(options.indices, L);
  const EngineKind engine = choose_engine(op, options.engine, R.indices);
  if (engine == EngineKind::structured && op.realization_dim() == 0)
    throw UsageError("layer '" + layer.name + "' (family " + op.family() +
                     ") has no state-space realization; use --engine sweep, dense or auto");
  R.engine = to_string(engine);
  guard(working_set(engine), R.engine, engine == EngineKind::structured);
  const std::uint64_t per_thread = working_set(engine);

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
  R.sigma_k = options.keep_sigma;
  if (R.sigma_k > 0) {
    R.sigma.assign(n * R.sigma_k, 0.0f);
    R.sigma_tail.assign(n, 0.0);
  }

  // Threads: all cores by default, fewer when the working sets would not fit in memory.
  int threads = options.threads > 0 ? options.threads : static_cast<int>(std::thread::hardware_concurrency());
  threads = static_cast<int>(std::max<long long>(1, std::min<long long>(threads, static_cast<long long>(B) * C)));
  const std::uint64_t avail = available_memory_bytes();
  if (avail > 0) {
    const std::uint64_t room = avail > results ? avail - results : 0;
    threads = static_cast<int>(std::max<std::uint64_t>(1, std::min<std::uint64_t>(threads, room / per_thread)));
  }

  const bool layer_mode = options.tol_mode == TolMode::layer;
  std::vector<std::vector<double>> retained(layer_mode ? static_cast<size_t>(B) * C : 0);
  std::vector<std::vector<size_t>> offsets(layer_mode ? static_cast<size_t>(B) * C : 0);
  std::vector<double> channel_max(static_cast<size_t>(B) * C, 0.0);

  set_blas_single_threaded();
  std::atomic<long> next{0}, done{0};
  std::mutex progress_mutex;
  std::exception_ptr failure;
  std::mutex failure_mutex;
  const long total = static_cast<long>(B) * C;

  auto worker = [&]() {
    DenseWorkspace ws;
    try {
      for (long item = next++; item < total; item = next++) {
        {
          std::lock_guard<std::mutex> lock(failure_mutex);
          if (failure) return;
        }
        const int b = static_cast<int>(item / C), c = static_cast<int>(item % C);
        std::vector<double> dummy_retained;
        std::vector<size_t> dummy_offsets;
        auto& ret = layer_mode ? retained[item] : dummy_retained;
        auto& off = layer_mode ? offsets[item] : dummy_offsets;
        if (layer_mode) off.assign(I + 1, 0);
        ChannelAccumulator sink(R, b, c, ret, off, channel_max[item]);
        if (engine == EngineKind::structured) {
          auto realization = op.realization(b, c);
          structured_block_spectra(*realization, R.indices, sink);
        } else {
          if (ws.T.rows() != L) ws.T.resize(L, L);
          op.materialize(b, c, ws.T);
          if (engine == EngineKind::dense)
            dense_block_spectra(ws.T, R.indices, ws, sink);
          else
            sweep_block_spectra(ws.T, R.indices, options.sweep_rtol, sink);
        }
        const long d = ++done;
        if (options.progress) {
          std::lock_guard<std::mutex> lock(progress_mutex);
          options.progress(d, total);
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
  if (failure) std::rethrow_exception(failure);

  for (int b = 0; b < B; ++b)
    for (int c = 0; c < C; ++c)
      R.layer_sigma_max[b] = std::max(R.layer_sigma_max[b], channel_max[static_cast<size_t>(b) * C + c]);
  if (layer_mode) {
    for (int b = 0; b < B; ++b)
      for (int c = 0; c < C; ++c) {
        const size_t item = static_cast<size_t>(b) * C + c;
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
