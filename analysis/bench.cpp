#include "analysis/bench.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <ctime>
#include <memory>
#include <thread>

#include "analysis/bench_cases.h"
#include "libess/checked.h"
#include "libess/compute.h"
#include "libess/engine.h"
#include "libess/lane_kernels.h"
#include "libess/memory.h"
#include "libess/metrics.h"
#include "libess/pipeline.h"

namespace ess {

namespace {

using Clock = std::chrono::steady_clock;

double thread_seconds();  // CPU seconds of the calling thread (defined with the long benchmark below)

// CPU seconds of the whole process (every thread), user + system.
double process_seconds() {
  timespec ts{};
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
  return static_cast<double>(ts.tv_sec) + 1e-9 * static_cast<double>(ts.tv_nsec);
}

struct Spectra : SpectrumSink {
  std::vector<std::vector<double>> sigma;
  explicit Spectra(size_t n) : sigma(n) {}
  // Storage for n blocks of `width` values each, allocated and touched up front: the timed
  // region then charges the engine, not the benchmark's bookkeeping (a fresh page costs ~14 µs).
  Spectra(size_t n, size_t width) : sigma(n, std::vector<double>(width, 0.0)) {}
  void block(int pos, const double* s, int n, double, bool) override { sigma[pos].assign(s, s + n); }
};

double median(std::vector<double> v) {
  if (v.empty()) return std::nan("");
  std::sort(v.begin(), v.end());
  size_t n = v.size();
  return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

// One engine on one channel; CPU seconds of this thread (the engines and BLAS run single-threaded
// in it), materialization / realization included: a loaded machine slows the wall clock, not this.
double timed_spectra(const LayerOperator& op, int c, EngineKind engine, const std::vector<int>& idx, double rtol,
                     DenseWorkspace& ws, Spectra& out) {
  const double t0 = thread_seconds();
  channel_spectra(op, 0, c, engine, idx, rtol, ws, out);
  return thread_seconds() - t0;
}

// Structured engine on every channel, kLanes at a time as compute_layer runs it (a layer's
// channels share SIMD lanes); each channel is charged its share of its group's seconds. The first
// group runs once untimed: a layer runs thousands of channels through buffers that are touched
// once (fresh pages cost ~14 µs per 4 KiB on our VMs), so warm figures are the representative ones.
std::vector<Spectra> timed_structured(const LayerOperator& op, const std::vector<int>& idx, std::vector<double>& secs) {
  const int width = op.realization_dim();
  std::vector<Spectra> out(op.channels(), Spectra(idx.size(), static_cast<size_t>(width)));
  for (int c0 = -lanes::kLanes; c0 < op.channels(); c0 += lanes::kLanes) {
    const bool warmup = c0 < 0;
    if (warmup) c0 = 0;
    const int n = std::min(lanes::kLanes, op.channels() - c0);
    const double t0 = thread_seconds();
    std::vector<std::unique_ptr<Realization>> rs;
    std::vector<const Realization*> ptrs;
    std::vector<SpectrumSink*> sinks;
    for (int c = c0; c < c0 + n; ++c) {
      rs.push_back(op.realization(0, c));
      ptrs.push_back(rs.back().get());
      sinks.push_back(&out[c]);
    }
    structured_block_spectra(ptrs, idx, sinks);
    const double t = thread_seconds() - t0;
    if (warmup) {
      c0 = -lanes::kLanes;
      continue;
    }
    for (int c = 0; c < n; ++c) secs.push_back(t / n);
  }
  return out;
}

}  // namespace

BenchRow bench_case(const std::string& name, const BenchOptions& o, bool with_dense) {
  {
    // Memory guard (docs/reliability.md) before the operator is built: the operator (at most one
    // L×L matrix per channel), the spectra kept for every channel (≈ L²/4 σ each, fast and dense)
    // and one dense working set.
    const std::uint64_t L = static_cast<std::uint64_t>(std::max(0, o.seq_len));
    const std::uint64_t channels = static_cast<std::uint64_t>(std::max(o.channels, lanes::kLanes));
    const std::uint64_t per_channel = saturating_mul(saturating_mul(L, L), 8 + (with_dense ? 4 : 2));
    check_memory(saturating_add(saturating_mul(channels, per_channel),
                                worker_bytes(EngineKind::dense, o.seq_len, o.state, o.seq_len, 1)),
                 "bench case '" + name + "' (L = " + std::to_string(o.seq_len) + ", " + std::to_string(channels) +
                     " channel(s))",
                 std::vector<MessagePart>{"use a smaller ", Option{"L"}, " or fewer ", Option{"channels"}});
  }
  BenchCase bc = make_bench_case(name, o.seq_len, o.channels, o.state, o.seed);
  const std::vector<int> idx = parse_indices("", o.seq_len);
  const EngineKind fast = choose_engine(*bc.op, EngineKind::automatic, idx);
  // The structured engine runs a layer's channels kLanes at a time: time full groups (the dense
  // baseline still runs on the first o.channels of them).
  if (fast == EngineKind::structured && o.channels < lanes::kLanes)
    bc = make_bench_case(name, o.seq_len, lanes::kLanes, o.state, o.seed);
  const LayerOperator& op = *bc.op;
  BenchRow row;
  row.name = name;
  row.description = bc.description;
  row.seq_len = o.seq_len;
  row.state = o.state;
  row.channels = op.channels();
  row.dense_seconds = std::nan("");
  row.max_deviation = std::nan("");
  row.fast_engine = to_string(fast);
  set_blas_single_threaded();
  DenseWorkspace ws;
  std::vector<double> fast_t, dense_t;
  double dev = 0, ess_sum = 0;
  std::vector<Spectra> structured;
  if (fast == EngineKind::structured) structured = timed_structured(op, idx, fast_t);
  for (int c = 0; c < op.channels(); ++c) {
    Spectra f(idx.size());
    if (fast == EngineKind::structured)
      f = structured[c];
    else
      fast_t.push_back(timed_spectra(op, c, fast, idx, o.sweep_rtol, ws, f));
    for (auto& s : f.sigma) ess_sum += count_above(s.data(), static_cast<int>(s.size()), o.tol);
    if (!with_dense || c >= o.channels) continue;
    Spectra d(idx.size());
    dense_t.push_back(timed_spectra(op, c, EngineKind::dense, idx, o.sweep_rtol, ws, d));
    for (size_t p = 0; p < idx.size(); ++p) {
      const auto& a = f.sigma[p];
      const auto& b = d.sigma[p];
      const double s1 = b.empty() ? 0.0 : b[0];
      const size_t n = std::max(a.size(), b.size());
      double block_dev = 0;
      for (size_t k = 0; k < n; ++k) {
        const double x = k < a.size() ? a[k] : 0.0, y = k < b.size() ? b[k] : 0.0;
        block_dev = std::max(block_dev, std::abs(x - y));
      }
      if (s1 > 0) dev = std::max(dev, block_dev / s1);
      const int ea = count_above(a.data(), static_cast<int>(a.size()), o.tol);
      const int eb = count_above(b.data(), static_cast<int>(b.size()), o.tol);
      bool near = false;
      for (double y : b) near = near || std::abs(y - o.tol) <= 1e-9 * o.tol;
      ++row.blocks_compared;
      row.near_threshold += near;
      row.ess_mismatches += (ea != eb) && !near;
    }
  }
  row.fast_seconds = median(fast_t);
  row.mean_tolerance_ess = ess_sum / (static_cast<double>(op.channels()) * idx.size());
  if (with_dense) {
    row.dense_seconds = median(dense_t);
    row.max_deviation = dev;
    row.dense_run = true;
  }
  return row;
}

std::vector<BenchRow> bench_scaling(const std::vector<std::string>& names, const std::vector<int>& lengths,
                                    const BenchOptions& options, double budget_seconds, bool with_dense,
                                    const std::function<void(const BenchRow&)>& done) {
  std::vector<BenchRow> rows;
  const int channels = options.channels;
  for (const auto& name : names) {
    double dense_per_L4 = std::nan("");  // measured dense seconds / L⁴, to predict the next length
    // Fast engine: predict the next length from the growth exponent of the last two points
    // (high-rank attention makes the sweep as costly as dense, ~L⁴) and skip past the budget.
    std::vector<std::pair<int, double>> fast_points;
    for (int len : lengths) {
      if (!fast_points.empty()) {
        const auto [l1, t1] = fast_points.back();
        double p = 2.0;
        if (fast_points.size() >= 2) {
          const auto [l0, t0] = fast_points[fast_points.size() - 2];
          p = std::clamp(std::log(t1 / t0) / std::log(static_cast<double>(l1) / l0), 1.0, 4.0);
        }
        if (t1 * std::pow(static_cast<double>(len) / l1, p) * channels > budget_seconds) {
          BenchRow skipped;
          skipped.name = name;
          skipped.seq_len = len;
          skipped.state = options.state;
          skipped.channels = channels;
          skipped.fast_engine = "skipped";
          skipped.fast_seconds = skipped.dense_seconds = skipped.max_deviation = std::nan("");
          rows.push_back(skipped);
          continue;
        }
      }
      const bool dense =
          with_dense &&
          (std::isnan(dense_per_L4) ? len <= 1024 : dense_per_L4 * std::pow(len, 4.0) * channels <= budget_seconds);
      BenchOptions o = options;
      o.seq_len = len;
      BenchRow r = bench_case(name, o, dense);
      if (r.dense_run) dense_per_L4 = r.dense_seconds / std::pow(len, 4.0);
      fast_points.emplace_back(len, r.fast_seconds);
      rows.push_back(r);
      if (done) done(r);
    }
  }
  return rows;
}

StackResult bench_stack(int layers, const BenchOptions& options, int threads,
                        const std::function<void(int, double, const std::string&)>& layer_done) {
  EssOptions o;
  o.threads = threads;
  o.tol = options.tol;
  o.students.enabled = false;  // the stack times the ESS engines alone
  const Pipeline pipeline(o);
  StackResult out;
  out.layers = layers;
  out.channels = options.channels;
  out.seq_len = options.seq_len;
  out.state = options.state;
  out.case_name = options.stack_case;
  out.threads = threads > 0 ? threads : static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  double total_ess = 0;
  for (int l = 0; l < layers; ++l) {
    // Generating the random operator is not part of the measurement (a model's forward pass is).
    BenchCase bc =
        make_bench_case(options.stack_case, options.seq_len, options.channels, options.state, options.seed + 1000 * l);
    const auto t0 = Clock::now();
    const double c0 = process_seconds();
    const LayerResult R =
        pipeline.measure(OperatorLayer{"layers." + std::to_string(l), l, std::move(bc.op)}, l, layers);
    out.cpu_seconds += process_seconds() - c0;
    out.seconds += std::chrono::duration<double>(Clock::now() - t0).count();
    double s = 0;
    for (int v : R.tolerance_ess) s += v;
    total_ess += s / R.tolerance_ess.size();
    if (layer_done) layer_done(l, R.seconds, R.engine);
  }
  out.mean_tolerance_ess = total_ess / layers;
  const double channels = static_cast<double>(layers) * options.channels;
  out.thread_seconds_per_channel = out.seconds * out.threads / channels;
  out.cpu_seconds_per_channel = out.cpu_seconds / channels;
  return out;
}

namespace {

// CPU seconds of the calling thread (both engines run single-threaded in it, BLAS included), so a
// loaded machine slows the wall clock but not the comparison.
double thread_seconds() {
  timespec ts{};
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return static_cast<double>(ts.tv_sec) + 1e-9 * static_cast<double>(ts.tv_nsec);
}

// Records the lanczos engine's partial spectra.
struct PartialSpectra : SpectrumSink {
  std::vector<std::vector<double>> sigma;
  std::vector<Partial> parts;
  explicit PartialSpectra(size_t n) : sigma(n), parts(n) {}
  void block(int pos, const double* s, int n, double, bool) override { sigma[pos].assign(s, s + n); }
  void partial_block(int pos, const Partial& p) override {
    sigma[pos].assign(p.sigma, p.sigma + p.count);
    parts[pos] = p;
    parts[pos].sigma = nullptr;
  }
};

}  // namespace

LongBenchRow bench_long_case(const std::string& name, int L, int blocks, unsigned seed, double tol, bool with_dense) {
  const BenchCase bc = make_bench_case(name, L, 1, 64, seed);
  const std::vector<int> idx = evenly_spaced_indices(blocks, L);
  LongBenchRow row;
  row.name = name;
  row.description = bc.description;
  row.seq_len = L;
  row.blocks = static_cast<int>(idx.size());
  row.dense_seconds = std::nan("");
  set_blas_single_threaded();
  DenseWorkspace ws;
  LanczosOptions lo;
  lo.tol = tol;
  PartialSpectra fast(idx.size());
  if (with_dense) {
    // Steady state, as in a model run where earlier heads have touched this thread's buffers (the
    // softmax table, the Krylov solver's, the dense engine's T and LAPACK work): each engine runs
    // once untimed first — lanczos on every block, dense on the middle one (its buffers are those
    // of any block). Fresh pages cost 11–14 µs per 4 KiB on our VMs: cold, the first head of a
    // process takes ≈ 0.2–0.4 s longer at L = 4096. Without the dense baseline (the longest L)
    // the figure is the cold one.
    PartialSpectra warm(idx.size());
    channel_spectra(*bc.op, 0, 0, EngineKind::lanczos, idx, 0.0, ws, warm, lo);
    Spectra one(1);
    channel_spectra(*bc.op, 0, 0, EngineKind::dense, {idx[idx.size() / 2]}, 0.0, ws, one);
  }
  double t0 = thread_seconds();
  channel_spectra(*bc.op, 0, 0, EngineKind::lanczos, idx, 0.0, ws, fast, lo);
  row.lanczos_seconds = thread_seconds() - t0;
  double ess = 0, count = 0;
  for (size_t p = 0; p < idx.size(); ++p) {
    const auto& part = fast.parts[p];
    const auto& s = fast.sigma[p];
    row.not_converged += !part.converged;
    row.certified += part.converged && part.certified;
    row.uncertified += part.converged && !part.certified;
    row.whole += part.count >= part.rank_bound;
    count += part.count;
    ess += count_above(s.data(), part.count, tol);
    const EssInterval e =
        partial_entropy_interval(s.data(), part.count, part.rank_bound, part.frobenius2, part.error_bound);
    if (e.upper > 0) row.max_interval = std::max(row.max_interval, (e.upper - e.lower) / e.upper);
  }
  row.mean_sigma_count = count / idx.size();
  row.mean_tolerance_ess = ess / idx.size();
  if (!with_dense) return row;
  Spectra dense(idx.size());
  t0 = thread_seconds();
  channel_spectra(*bc.op, 0, 0, EngineKind::dense, idx, 0.0, ws, dense);
  row.dense_seconds = thread_seconds() - t0;
  row.dense_run = true;
  for (size_t p = 0; p < idx.size(); ++p) {
    const auto& part = fast.parts[p];
    const auto& s = fast.sigma[p];
    const auto& d = dense.sigma[p];
    bool near = false;
    for (double y : d) near = near || std::abs(y - tol) <= 1e-9 * tol;
    if (part.certified && !near &&
        count_above(s.data(), part.count, tol) != count_above(d.data(), static_cast<int>(d.size()), tol))
      ++row.ess_mismatches;
    const EssInterval e =
        partial_entropy_interval(s.data(), part.count, part.rank_bound, part.frobenius2, part.error_bound);
    const double h = entropy_ess(d.data(), static_cast<int>(d.size()));
    if (h < e.lower * (1 - 1e-8) || h > e.upper * (1 + 1e-8)) ++row.entropy_outside;
  }
  return row;
}

nlohmann::ordered_json to_json(const LongBenchRow& r) {
  return {{"case", r.name},
          {"L", r.seq_len},
          {"blocks", r.blocks},
          {"lanczos_cpu_seconds", r.lanczos_seconds},
          {"dense_cpu_seconds", r.dense_run ? nlohmann::ordered_json(r.dense_seconds) : nullptr},
          {"speedup", r.dense_run ? nlohmann::ordered_json(r.dense_seconds / r.lanczos_seconds) : nullptr},
          {"certified_blocks", r.certified},
          {"uncertified_blocks", r.uncertified},
          {"not_converged_blocks", r.not_converged},
          {"whole_spectrum_blocks", r.whole},
          {"mean_sigma_computed", r.mean_sigma_count},
          {"mean_tolerance_ess", r.mean_tolerance_ess},
          {"max_entropy_interval_rel", r.max_interval},
          {"ess_mismatches", r.dense_run ? nlohmann::ordered_json(r.ess_mismatches) : nullptr},
          {"entropy_outside_interval", r.dense_run ? nlohmann::ordered_json(r.entropy_outside) : nullptr}};
}

nlohmann::ordered_json to_json(const BenchRow& r) {
  return {{"case", r.name},
          {"L", r.seq_len},
          {"state", r.state},
          {"channels", r.channels},
          {"engine", r.fast_engine},
          {"fast_seconds_per_channel", r.fast_seconds},
          {"dense_seconds_per_channel", r.dense_seconds},
          {"speedup", r.dense_run ? r.dense_seconds / r.fast_seconds : std::nan("")},
          {"max_sigma_deviation_rel", r.max_deviation},
          {"tolerance_ess_identical", r.dense_run ? nlohmann::ordered_json(r.ess_mismatches == 0) : nullptr},
          {"blocks_compared", r.blocks_compared},
          {"ess_mismatches", r.ess_mismatches},
          {"near_threshold_blocks", r.near_threshold},
          {"mean_tolerance_ess", r.mean_tolerance_ess}};
}

nlohmann::ordered_json to_json(const StackResult& s) {
  return {{"case", s.case_name},
          {"layers", s.layers},
          {"channels", s.channels},
          {"L", s.seq_len},
          {"state", s.state},
          {"threads", s.threads},
          {"seconds", s.seconds},
          {"thread_seconds_per_channel", s.thread_seconds_per_channel},
          {"cpu_seconds", s.cpu_seconds},
          {"cpu_seconds_per_channel", s.cpu_seconds_per_channel},
          {"mean_tolerance_ess", s.mean_tolerance_ess}};
}

}  // namespace ess
