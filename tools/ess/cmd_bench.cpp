// ess bench: fast engines against the dense baseline on the same synthetic operators, one run.
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstring>
#include <iostream>
#include <memory>
#include <sstream>
#include <thread>
#include <utility>

#include "libess/compute.h"
#include "libess/engine.h"
#include "libess/error.h"
#include "libess/lane_kernels.h"
#include "libess/metrics.h"
#include "tools/ess/bench_cases.h"
#include "tools/ess/cli.h"

namespace ess::cli {

namespace {

using Clock = std::chrono::steady_clock;

struct Spectra : SpectrumSink {
  std::vector<std::vector<double>> sigma;
  std::vector<double> bound;
  explicit Spectra(size_t n) : sigma(n), bound(n, 0.0) {}
  void block(int pos, const double* s, int n, double error_bound, bool) override {
    sigma[pos].assign(s, s + n);
    bound[pos] = error_bound;
  }
};

double median(std::vector<double> v) {
  if (v.empty()) return std::nan("");
  std::sort(v.begin(), v.end());
  size_t n = v.size();
  return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

// Runs one engine on one channel; returns seconds (materialization / realization included).
double run_engine(const LayerOperator& op, int c, EngineKind engine, const std::vector<int>& idx, double rtol,
                  DenseWorkspace& ws, Spectra& out) {
  auto t0 = Clock::now();
  if (engine == EngineKind::structured) {
    auto r = op.realization(0, c);
    structured_block_spectra(*r, idx, out);
  } else {
    const int L = op.seq_len();
    if (ws.T.rows() != L) ws.T.resize(L, L);
    op.materialize(0, c, ws.T);
    if (engine == EngineKind::dense)
      dense_block_spectra(ws.T, idx, ws, out);
    else
      sweep_block_spectra(ws.T, idx, rtol, out);
  }
  return std::chrono::duration<double>(Clock::now() - t0).count();
}

// Structured engine on every channel, kLanes at a time as compute_layer runs it (a layer's
// channels share SIMD lanes); each channel is charged its share of its group's seconds. The first
// group runs once untimed: a layer runs thousands of channels through buffers that are touched
// once (fresh pages cost ~14 µs per 4 KiB on our VMs), so warm figures are the representative ones.
std::vector<Spectra> run_structured(const LayerOperator& op, const std::vector<int>& idx, std::vector<double>& secs) {
  std::vector<Spectra> out(op.channels(), Spectra(idx.size()));
  for (int c0 = -lanes::kLanes; c0 < op.channels(); c0 += lanes::kLanes) {
    const bool warmup = c0 < 0;
    if (warmup) c0 = 0;
    const int n = std::min(lanes::kLanes, op.channels() - c0);
    auto t0 = Clock::now();
    std::vector<std::unique_ptr<Realization>> rs;
    std::vector<const Realization*> ptrs;
    std::vector<SpectrumSink*> sinks;
    for (int c = c0; c < c0 + n; ++c) {
      rs.push_back(op.realization(0, c));
      ptrs.push_back(rs.back().get());
      sinks.push_back(&out[c]);
    }
    structured_block_spectra(ptrs, idx, sinks);
    const double t = std::chrono::duration<double>(Clock::now() - t0).count();
    if (warmup) {
      c0 = -lanes::kLanes;
      continue;
    }
    for (int c = 0; c < n; ++c) secs.push_back(t / n);
  }
  return out;
}

struct Row {
  std::string name, description, fast_engine;
  int L = 0, N = 0, channels = 0;
  double fast_s = 0, dense_s = std::nan("");
  double max_dev = std::nan("");  // max |σ_fast − σ_dense| / σ_1(H_i)
  long ess_blocks = 0, ess_mismatch = 0, near_threshold = 0;
  double mean_ess = 0;
  bool dense_run = false;
};

Row bench_one(const std::string& name, int L, int channels, int N, unsigned seed, double tol, bool with_dense,
              double rtol) {
  BenchCase bc = make_bench_case(name, L, channels, N, seed);
  const std::vector<int> idx = parse_indices("", L);
  const EngineKind fast = choose_engine(*bc.op, EngineKind::automatic, idx);
  // The structured engine runs a layer's channels kLanes at a time: time full groups.
  if (fast == EngineKind::structured && channels < lanes::kLanes) bc = make_bench_case(name, L, lanes::kLanes, N, seed);
  const LayerOperator& op = *bc.op;
  Row row;
  row.name = name;
  row.description = bc.description;
  row.L = L;
  row.N = N;
  row.channels = op.channels();
  row.fast_engine = to_string(fast);
  DenseWorkspace ws;
  std::vector<double> fast_t, dense_t;
  double dev = 0;
  double ess_sum = 0;
  std::vector<Spectra> structured;
  if (fast == EngineKind::structured) structured = run_structured(op, idx, fast_t);
  for (int c = 0; c < op.channels(); ++c) {
    Spectra f(idx.size());
    if (fast == EngineKind::structured)
      f = structured[c];
    else
      fast_t.push_back(run_engine(op, c, fast, idx, rtol, ws, f));
    for (auto& s : f.sigma) ess_sum += count_above(s.data(), static_cast<int>(s.size()), tol);
    if (!with_dense || c >= channels) continue;
    Spectra d(idx.size());
    dense_t.push_back(run_engine(op, c, EngineKind::dense, idx, rtol, ws, d));
    for (size_t p = 0; p < idx.size(); ++p) {
      const auto& a = f.sigma[p];
      const auto& b = d.sigma[p];
      const double s1 = b.empty() ? 0.0 : b[0];
      const size_t n = std::max(a.size(), b.size());
      double block_dev = 0;
      for (size_t k = 0; k < n; ++k) {
        double x = k < a.size() ? a[k] : 0.0, y = k < b.size() ? b[k] : 0.0;
        block_dev = std::max(block_dev, std::abs(x - y));
      }
      if (s1 > 0) dev = std::max(dev, block_dev / s1);
      const int ea = count_above(a.data(), static_cast<int>(a.size()), tol);
      const int eb = count_above(b.data(), static_cast<int>(b.size()), tol);
      bool near = false;
      for (double y : b) near = near || std::abs(y - tol) <= 1e-9 * tol;
      ++row.ess_blocks;
      row.near_threshold += near;
      row.ess_mismatch += (ea != eb) && !near;
    }
  }
  row.fast_s = median(fast_t);
  row.mean_ess = ess_sum / (static_cast<double>(op.channels()) * idx.size());
  if (with_dense) {
    row.dense_s = median(dense_t);
    row.max_dev = dev;
    row.dense_run = true;
  }
  return row;
}

std::string sci(double v) {
  if (std::isnan(v)) return "—";
  std::ostringstream o;
  o.precision(2);
  o << std::scientific << v;
  return o.str();
}

void print_rows(const std::vector<Row>& rows, bool json, std::ostream& out) {
  if (json) {
    out << "{\"results\": [";
    for (size_t k = 0; k < rows.size(); ++k) {
      const Row& r = rows[k];
      auto num = [](double v) {
        if (std::isnan(v)) return std::string("null");
        std::ostringstream o;
        o.precision(6);
        o << v;
        return o.str();
      };
      out << (k ? "," : "") << "\n  {\"case\": " << json_escape(r.name) << ", \"L\": " << r.L << ", \"state\": " << r.N
          << ", \"channels\": " << r.channels << ", \"engine\": " << json_escape(r.fast_engine)
          << ", \"fast_seconds_per_channel\": " << num(r.fast_s)
          << ", \"dense_seconds_per_channel\": " << num(r.dense_s)
          << ", \"speedup\": " << num(r.dense_run ? r.dense_s / r.fast_s : std::nan(""))
          << ", \"max_sigma_deviation_rel\": " << num(r.max_dev)
          << ", \"tolerance_ess_identical\": " << (r.dense_run ? (r.ess_mismatch == 0 ? "true" : "false") : "null")
          << ", \"blocks_compared\": " << r.ess_blocks << ", \"ess_mismatches\": " << r.ess_mismatch
          << ", \"near_threshold_blocks\": " << r.near_threshold << ", \"mean_tolerance_ess\": " << num(r.mean_ess)
          << "}";
    }
    out << "\n]}\n";
    return;
  }
  char buf[512];
  std::snprintf(buf, sizeof buf, "%-16s %5s %5s %4s %-10s %12s %12s %9s %10s %9s %8s\n", "case", "L", "N", "ch",
                "engine", "fast s/ch", "dense s/ch", "speedup", "max dev", "ESS same", "mean ESS");
  out << buf << std::string(std::strlen(buf) - 1, '-') << "\n";
  for (const Row& r : rows) {
    std::string same = r.dense_run ? (r.ess_mismatch == 0 ? "yes" : "NO(" + std::to_string(r.ess_mismatch) + ")") : "—";
    std::string speed = r.dense_run ? fmt(r.dense_s / r.fast_s, 1) + "x" : "—";
    std::snprintf(buf, sizeof buf, "%-16s %5d %5d %4d %-10s %12s %12s %9s %10s %9s %8s\n", r.name.c_str(), r.L, r.N,
                  r.channels, r.fast_engine.c_str(), sci(r.fast_s).c_str(), sci(r.dense_s).c_str(), speed.c_str(),
                  sci(r.max_dev).c_str(), same.c_str(), std::isnan(r.fast_s) ? "—" : fmt(r.mean_ess, 2).c_str());
    out << buf;
  }
}

std::vector<std::string> split(const std::string& s) {
  std::vector<std::string> out;
  std::string cur;
  for (char c : s) {
    if (c == ',') {
      if (!cur.empty()) out.push_back(cur);
      cur.clear();
    } else {
      cur += c;
    }
  }
  if (!cur.empty()) out.push_back(cur);
  return out;
}

}  // namespace

int run_bench(int argc, char** argv) {
  po::options_description opts("options");
  int L = 1024, channels = 2, N = 16, threads = 0, stack_layers = 24, stack_channels = 1536;
  unsigned seed = 0;
  double tol = 1e-3, rtol = 1e-12, dense_budget = 120;
  std::string cases, lengths = "256,512,1024,2048,4096", states, stack_case = "mamba";
  bool json = false, scaling = false, stack = false, no_dense = false;
  opts.add_options()("L", po::value(&L)->default_value(1024), "sequence length")(
      "channels", po::value(&channels)->default_value(2), "channels (heads) per case; times are medians over them")(
      "state", po::value(&N)->default_value(16), "state size N (d_k for linear attention / DeltaNet)")(
      "states", po::value(&states)->default_value(""), "comma-separated state sizes: one row per case and N")(
      "cases", po::value(&cases)->default_value(""), "comma-separated cases (default: all)")(
      "seed", po::value(&seed)->default_value(0), "random seed")("tol", po::value(&tol)->default_value(1e-3),
                                                                 "absolute tolerance for the tolerance-ESS comparison")(
      "sweep-rtol", po::value(&rtol)->default_value(1e-12), "sweep truncation tolerance")(
      "no-dense", po::bool_switch(&no_dense), "skip the dense baseline")(
      "scaling", po::bool_switch(&scaling), "scaling mode over --lengths (dense only within --dense-budget)")(
      "lengths", po::value(&lengths)->default_value("256,512,1024,2048,4096"), "lengths for --scaling")(
      "dense-budget", po::value(&dense_budget)->default_value(120),
      "scaling mode: skip an engine at a length where its predicted time for the case exceeds this many seconds")(
      "stack", po::bool_switch(&stack),
      "model-stack mode: full ESS profile of --stack-layers × --stack-channels channels of --stack-case at --L, "
      "--state (Mamba-2.8B: 64 × 5120, N 16; Mamba2-2.7B: --stack-case mamba2, 64 × 80, N 128)")(
      "stack-case", po::value(&stack_case)->default_value("mamba"), "case for --stack (mamba, mamba2, gla, ...)")(
      "stack-layers", po::value(&stack_layers)->default_value(24), "layers for --stack")(
      "stack-channels", po::value(&stack_channels)->default_value(1536), "channels per layer for --stack")(
      "threads", po::value(&threads)->default_value(0), "threads for --stack (0 = all cores)")(
      "json", po::bool_switch(&json), "machine-readable output");
  po::variables_map vm;
  if (!parse(
          argc, argv,
          "ess bench [--L 1024] [--channels 2] [--state 16] [--cases a,b] [--json]\n"
          "          [--scaling [--lengths 256,...,4096] [--dense-budget S]] [--stack]\n\n"
          "Builds synthetic operators (Mamba-, GLA-, DeltaNet-like, softmax attention with local,\n"
          "low-rank and random heads, long convolution), runs the fast engine `auto` picks and the\n"
          "dense engine on the same channels in the same run, single-threaded, and prints median\n"
          "seconds per channel, the speed-up, the largest singular-value deviation relative to\n"
          "σ_1 of its block, and whether every tolerance-ESS value agrees. Cases: " +
              [] {
                std::string s;
                for (auto& n : bench_case_names()) s += (s.empty() ? "" : ", ") + n;
                return s;
              }(),
          opts, {}, vm))
    return 0;
  if (L < 4) throw UsageError("--L must be ≥ 4");
  if (channels < 1 || N < 1) throw UsageError("--channels and --state must be ≥ 1");
  std::vector<std::string> names = cases.empty() ? bench_case_names() : split(cases);
  set_blas_single_threaded();

  if (stack) {
    // Whole-model figure: every channel of every layer, all threads, structured engine.
    auto t0 = Clock::now();
    EssOptions o;
    o.threads = threads;
    o.tol = tol;
    double total_ess = 0;
    for (int l = 0; l < stack_layers; ++l) {
      BenchCase bc = make_bench_case(stack_case, L, stack_channels, N, seed + 1000 * l);
      OperatorLayer layer{"layers." + std::to_string(l), l, std::move(bc.op)};
      LayerResult R = compute_layer(layer, o);
      double s = 0;
      for (int v : R.tolerance_ess) s += v;
      total_ess += s / R.tolerance_ess.size();
      if (!json)
        std::cerr << "layer " << l + 1 << "/" << stack_layers << ": " << fmt(R.seconds, 2) << " s, engine " << R.engine
                  << "\n";
    }
    double secs = std::chrono::duration<double>(Clock::now() - t0).count();
    const int used = threads > 0 ? threads : static_cast<int>(std::thread::hardware_concurrency());
    const double per_channel = secs * used / (static_cast<double>(stack_layers) * stack_channels);
    if (json)
      std::cout << "{\"stack\": {\"case\": " << json_escape(stack_case) << ", \"layers\": " << stack_layers
                << ", \"channels\": " << stack_channels << ", \"L\": " << L << ", \"state\": " << N
                << ", \"threads\": " << used << ", \"seconds\": " << secs
                << ", \"thread_seconds_per_channel\": " << per_channel
                << ", \"mean_tolerance_ess\": " << total_ess / stack_layers << "}}\n";
    else
      std::cout << stack_case << "-shaped stack: " << stack_layers << " layers × " << stack_channels
                << " channels, N = " << N << ", L = " << L << ", " << used << " threads: full ESS profile in "
                << fmt(secs, 1) << " s (" << fmt(secs / 60, 2) << " min, " << fmt(per_channel * 1e3, 3)
                << " ms per channel per thread), mean tolerance-ESS " << fmt(total_ess / stack_layers, 2) << "\n";
    return 0;
  }

  std::vector<Row> rows;
  Progress progress(json);
  if (scaling) {
    std::vector<int> Ls;
    for (auto& s : split(lengths)) {
      try {
        Ls.push_back(std::stoi(s));
      } catch (...) {
        throw UsageError("bad --lengths '" + lengths + "'");
      }
    }
    for (const auto& name : names) {
      double dense_per_L4 = std::nan("");  // measured dense seconds / L⁴, to predict the next length
      // Fast engine: predict the next length from the growth exponent of the last two points
      // (high-rank attention makes the sweep as costly as dense, ~L⁴) and skip past the budget.
      std::vector<std::pair<int, double>> fast_points;
      for (int len : Ls) {
        if (fast_points.size() >= 1) {
          const auto [l1, t1] = fast_points.back();
          double p = 2.0;
          if (fast_points.size() >= 2) {
            const auto [l0, t0] = fast_points[fast_points.size() - 2];
            p = std::clamp(std::log(t1 / t0) / std::log(static_cast<double>(l1) / l0), 1.0, 4.0);
          }
          if (t1 * std::pow(static_cast<double>(len) / l1, p) * channels > dense_budget) {
            Row skipped;
            skipped.name = name;
            skipped.L = len;
            skipped.N = N;
            skipped.channels = channels;
            skipped.fast_engine = "skipped";
            skipped.fast_s = std::nan("");
            rows.push_back(skipped);
            continue;
          }
        }
        bool dense =
            !no_dense &&
            (std::isnan(dense_per_L4) ? len <= 1024 : dense_per_L4 * std::pow(len, 4.0) * channels <= dense_budget);
        Row r = bench_one(name, len, channels, N, seed, tol, dense, rtol);
        if (r.dense_run) dense_per_L4 = r.dense_s / std::pow(len, 4.0);
        fast_points.emplace_back(len, r.fast_s);
        rows.push_back(r);
        progress.update("bench: " + name + " L=" + std::to_string(len) + " done");
      }
    }
  } else {
    std::vector<int> Ns = {N};
    if (!states.empty()) {
      Ns.clear();
      for (auto& s : split(states)) {
        try {
          Ns.push_back(std::stoi(s));
        } catch (...) {
          throw UsageError("bad --states '" + states + "'");
        }
        if (Ns.back() < 1) throw UsageError("--states must be ≥ 1");
      }
    }
    for (const auto& name : names)
      for (int n : Ns) {
        rows.push_back(bench_one(name, L, channels, n, seed, tol, !no_dense, rtol));
        progress.update("bench: " + name + " N=" + std::to_string(n) + " done");
      }
  }
  progress.done();
  if (!json)
    std::cout << "ess bench: one thread, medians over " << channels << " channel(s); dense = LAPACK dgesdd of every"
              << " block; max dev = max |σ_fast − σ_dense| / σ_1(H_i)\n\n";
  print_rows(rows, json, std::cout);
  return 0;
}

ESS_REGISTER_COMMAND("bench", "fast engines vs the dense baseline on synthetic operators", 80, run_bench);

}  // namespace ess::cli
