// ess bench: fast engines against the dense baseline on the same synthetic operators, one run
// (analysis/bench.h).
#include <algorithm>
#include <cmath>
#include <iostream>

#include "analysis/bench.h"
#include "analysis/bench_cases.h"
#include "libess/error.h"
#include "tools/ess/cli.h"

namespace ess::cli {

namespace {

void print_rows(const std::vector<BenchRow>& rows, std::ostream& out) {
  Table table({{"case"},
               {"L", Table::right},
               {"N", Table::right},
               {"ch", Table::right},
               {"engine"},
               {"fast s/ch", Table::right},
               {"dense s/ch", Table::right},
               {"speedup", Table::right},
               {"max dev", Table::right},
               {"ESS same", Table::right},
               {"mean ESS", Table::right}});
  for (const BenchRow& r : rows) {
    const std::string same =
        r.dense_run ? (r.ess_mismatches == 0 ? "yes" : "NO(" + std::to_string(r.ess_mismatches) + ")") : "—";
    table.add({r.name, std::to_string(r.seq_len), std::to_string(r.state), std::to_string(r.channels), r.fast_engine,
               fmt_sci(r.fast_seconds, 2, "—"), fmt_sci(r.dense_seconds, 2, "—"),
               r.dense_run ? fmt(r.dense_seconds / r.fast_seconds, 1) + "x" : "—", fmt_sci(r.max_deviation, 2, "—"),
               same, std::isnan(r.fast_seconds) ? "—" : fmt(r.mean_tolerance_ess, 2)});
  }
  table.print(out, false);
  // What each case is (its first measured row says).
  Table legend({{"case"}, {"synthetic operator"}});
  std::vector<std::string> seen;
  for (const BenchRow& r : rows)
    if (!r.description.empty() && std::find(seen.begin(), seen.end(), r.name) == seen.end()) {
      seen.push_back(r.name);
      legend.add({r.name, r.description});
    }
  out << "\n";
  legend.print(out, false);
}

void print_long_rows(const std::vector<LongBenchRow>& rows, std::ostream& out) {
  Table table({{"case"},
               {"L", Table::right},
               {"blocks", Table::right},
               {"lanczos CPU s", Table::right},
               {"dense CPU s", Table::right},
               {"speedup", Table::right},
               {"certified", Table::right},
               {"whole", Table::right},
               {"σ computed", Table::right},
               {"mean tolESS", Table::right},
               {"ESS same", Table::right},
               {"entropy in", Table::right}});
  for (const LongBenchRow& r : rows) {
    if (r.blocks == 0) {
      table.add({r.name, std::to_string(r.seq_len), "—", "skipped", "—", "—", "—", "—", "—", "—", "—", "—"});
      continue;
    }
    table.add({r.name, std::to_string(r.seq_len), std::to_string(r.blocks), fmt(r.lanczos_seconds, 2),
               r.dense_run ? fmt(r.dense_seconds, 2) : "—",
               r.dense_run ? fmt(r.dense_seconds / r.lanczos_seconds, 1) + "x" : "—",
               std::to_string(r.certified) + "/" + std::to_string(r.blocks), std::to_string(r.whole),
               fmt(r.mean_sigma_count, 1), fmt(r.mean_tolerance_ess, 1),
               r.dense_run ? (r.ess_mismatches == 0 ? "yes" : "NO(" + std::to_string(r.ess_mismatches) + ")") : "—",
               r.dense_run ? (r.entropy_outside == 0 ? "yes" : "NO(" + std::to_string(r.entropy_outside) + ")") : "—"});
  }
  table.print(out, false);
  Table legend({{"case"}, {"head"}});
  std::vector<std::string> seen;
  for (const LongBenchRow& r : rows)
    if (!r.description.empty() && std::find(seen.begin(), seen.end(), r.name) == seen.end()) {
      seen.push_back(r.name);
      legend.add({r.name, r.description});
    }
  out << "\n";
  legend.print(out, false);
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
  BenchOptions o;
  int threads = 0, stack_layers = 24, stack_channels = 1536;
  double dense_budget = 120;
  std::string cases, lengths = "256,512,1024,2048,4096", states;
  bool json = false, scaling = false, stack = false, no_dense = false, long_mode = false;
  int long_blocks = 32, dense_max_L = 4096;
  double long_budget = 1800;
  opts.add_options()("L", po::value(&o.seq_len)->default_value(1024), "sequence length")(
      "channels", po::value(&o.channels)->default_value(2), "channels (heads) per case; times are medians over them")(
      "state", po::value(&o.state)->default_value(16), "state size N (d_k for linear attention / DeltaNet)")(
      "states", po::value(&states)->default_value(""), "comma-separated state sizes: one row per case and N")(
      "cases", po::value(&cases)->default_value(""), "comma-separated cases (default: all)")(
      "seed", po::value(&o.seed)->default_value(0), "random seed")(
      "tol", po::value(&o.tol)->default_value(1e-3), "absolute tolerance for the tolerance-ESS comparison")(
      "sweep-rtol", po::value(&o.sweep_rtol)->default_value(1e-12), "sweep truncation tolerance")(
      "no-dense", po::bool_switch(&no_dense), "skip the dense baseline")(
      "scaling", po::bool_switch(&scaling), "scaling mode over --lengths (dense only within --dense-budget)")(
      "lengths", po::value(&lengths)->default_value("256,512,1024,2048,4096"), "lengths for --scaling")(
      "dense-budget", po::value(&dense_budget)->default_value(120),
      "scaling mode: skip an engine at a length where its predicted time for the case exceeds this many seconds")(
      "stack", po::bool_switch(&stack),
      "model-stack mode: full ESS profile of --stack-layers × --stack-channels channels of --stack-case at --L, "
      "--state (Mamba-2.8B: 64 × 5120, N 16; Mamba2-2.7B: --stack-case mamba2, 64 × 80, N 128)")(
      "stack-case", po::value(&o.stack_case)->default_value("mamba"), "case for --stack (mamba, mamba2, gla, ...)")(
      "stack-layers", po::value(&stack_layers)->default_value(24), "layers for --stack")(
      "stack-channels", po::value(&stack_channels)->default_value(1536), "channels per layer for --stack")(
      "threads", po::value(&threads)->default_value(0), "threads for --stack (0 = all cores)")(
      "long", po::bool_switch(&long_mode),
      "long-context mode: softmax heads (d_k 64: long-local, long-window, long-sink, long-diffuse, long-induction, "
      "long-random) at --lengths "
      "(default 1024,...,32768), --blocks evenly spaced blocks, lanczos vs dense on the same blocks")(
      "blocks", po::value(&long_blocks)->default_value(32), "--long: evenly spaced interior blocks per head")(
      "dense-max-L", po::value(&dense_max_L)->default_value(4096), "--long: run the dense baseline up to this L")(
      "long-budget", po::value(&long_budget)->default_value(1800),
      "--long: skip a length where the lanczos time predicted from the shorter ones exceeds this many seconds")(
      "json", po::bool_switch(&json), "machine-readable output");
  MemoryOption memory;
  memory.add_to(opts);
  po::variables_map vm;
  if (!parse(
          argc, argv,
          "ess bench [--L 1024] [--channels 2] [--state 16] [--cases a,b] [--json]\n"
          "          [--scaling [--lengths 256,...,4096] [--dense-budget S]] [--stack]\n\n"
          "Builds synthetic operators (Mamba-, GLA-, DeltaNet-like, softmax attention with local,\n"
          "low-rank and random heads, long convolution), runs the fast engine `auto` picks and the\n"
          "dense engine on the same channels in the same run, single-threaded, and prints median\n"
          "CPU seconds per channel (of the thread: load on the machine does not count), the\n"
          "speed-up, the largest singular-value deviation relative to σ_1 of its block, and\n"
          "whether every tolerance-ESS value agrees. Cases: " +
              [] {
                std::string s;
                for (auto& n : bench_case_names()) s += (s.empty() ? "" : ", ") + n;
                return s;
              }(),
          opts, {}, vm))
    return 0;
  memory.apply();
  if (o.seq_len < 4) throw UsageError("--L must be ≥ 4");
  if (o.channels < 1 || o.state < 1) throw UsageError("--channels and --state must be ≥ 1");
  const std::vector<std::string> names = cases.empty() ? bench_case_names() : split(cases);

  if (stack) {
    // Whole-model figure: every channel of every layer, all threads, structured engine.
    BenchOptions so = o;
    so.channels = stack_channels;
    const StackResult s = bench_stack(stack_layers, so, threads, [&](int l, double seconds, const std::string& engine) {
      if (!json)
        std::cerr << "layer " << l + 1 << "/" << stack_layers << ": " << fmt(seconds, 2) << " s, engine " << engine
                  << "\n";
    });
    if (json)
      print_json(std::cout, {{"stack", to_json(s)}});
    else
      std::cout << s.case_name << "-shaped stack: " << s.layers << " layers × " << s.channels
                << " channels, N = " << s.state << ", L = " << s.seq_len << ", " << s.threads
                << " threads: full ESS profile in " << fmt(s.seconds, 1) << " s wall (" << fmt(s.seconds / 60, 2)
                << " min, " << fmt(s.thread_seconds_per_channel * 1e3, 3) << " ms per channel per thread), "
                << fmt(s.cpu_seconds, 1) << " s CPU (" << fmt(s.cpu_seconds_per_channel * 1e3, 3)
                << " ms per channel; on an idle machine ≈ " << fmt(s.cpu_seconds / s.threads / 60, 2)
                << " min wall), mean tolerance-ESS " << fmt(s.mean_tolerance_ess, 2) << "\n";
    return 0;
  }

  if (long_mode) {
    const std::vector<std::string> long_names = cases.empty() ? long_bench_case_names() : split(cases);
    std::vector<int> Ls;
    for (auto& s : split(vm["lengths"].defaulted() ? "1024,2048,4096,8192,16384,32768" : lengths)) {
      try {
        Ls.push_back(std::stoi(s));
      } catch (...) {
        throw UsageError("bad --lengths '" + lengths + "'");
      }
      if (Ls.back() < 4) throw UsageError("--lengths must be ≥ 4");
    }
    if (long_blocks < 1) throw UsageError("--blocks must be ≥ 1");
    std::vector<LongBenchRow> rows;
    Progress progress(json);
    for (const auto& name : long_names) {
      std::vector<std::pair<int, double>> done;  // (L, lanczos seconds), to predict the next length
      for (int len : Ls) {
        if (!done.empty()) {
          const auto [l1, t1] = done.back();
          double p = 2.5;
          if (done.size() >= 2) {
            const auto [l0, t0] = done[done.size() - 2];
            p = std::clamp(std::log(t1 / t0) / std::log(static_cast<double>(l1) / l0), 1.5, 3.5);
          }
          if (t1 * std::pow(static_cast<double>(len) / l1, p) > long_budget) {
            LongBenchRow skipped;
            skipped.name = name;
            skipped.seq_len = len;
            rows.push_back(skipped);
            continue;
          }
        }
        rows.push_back(bench_long_case(name, len, long_blocks, o.seed, o.tol, !no_dense && len <= dense_max_L));
        done.emplace_back(len, rows.back().lanczos_seconds);
        progress.update("bench --long: " + name + " L=" + std::to_string(len) + " done");
      }
    }
    progress.done();
    if (json) {
      Json results = Json::array();
      for (const auto& r : rows) results.push_back(to_json(r));
      print_json(std::cout, {{"long", results}});
      return 0;
    }
    std::cout << "ess bench --long: one softmax head per case, " << long_blocks
              << " evenly spaced blocks, one thread; lanczos vs dense (LAPACK dgesdd of every block) on the same "
                 "blocks, τ = "
              << o.tol << "\n\n";
    print_long_rows(rows, std::cout);
    return 0;
  }

  std::vector<BenchRow> rows;
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
    rows = bench_scaling(names, Ls, o, dense_budget, !no_dense, [&](const BenchRow& r) {
      progress.update("bench: " + r.name + " L=" + std::to_string(r.seq_len) + " done");
    });
  } else {
    std::vector<int> Ns = {o.state};
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
        BenchOptions on = o;
        on.state = n;
        rows.push_back(bench_case(name, on, !no_dense));
        progress.update("bench: " + name + " N=" + std::to_string(n) + " done");
      }
  }
  progress.done();
  if (json) {
    Json results = Json::array();
    for (const auto& r : rows) results.push_back(to_json(r));
    print_json(std::cout, {{"results", results}});
    return 0;
  }
  std::cout << "ess bench: one thread, medians over " << o.channels << " channel(s); dense = LAPACK dgesdd of every"
            << " block; max dev = max |σ_fast − σ_dense| / σ_1(H_i)\n\n";
  print_rows(rows, std::cout);
  return 0;
}

ESS_REGISTER_COMMAND("bench", "fast engines vs the dense baseline on synthetic operators", 80, run_bench);

}  // namespace ess::cli
