// ess compute OPS.h5 -o RESULTS.h5: ESS of every layer of an operator file.
#include <iostream>
#include <optional>

#include "libess/error.h"
#include "libess/pipeline.h"
#include "libess/results_io.h"
#include "libess/resume.h"
#include "libess/sha256.h"
#include "operators/registry.h"
#include "tools/ess/cli.h"
#include "tools/ess/mpi.h"

namespace ess::cli {

int run_compute(int argc, char** argv) {
  po::options_description opts("options");
  std::string input;
  OperatorReadOptions read_options;
  OutputOption output;
  QuietOption quiet;
  EssOptionGroup ess_options;
  MemoryOption memory;
  opts.add_options()("operators", po::value(&input), "operator file (format ess-operators)");
  output.add_to(opts, "results file to write (format ess-results)");
  opts.add_options()("seq-len", po::value(&read_options.default_seq_len)->default_value(0),
                     "sequence length for layers without a time axis (s4d, ungated conv) that have no 'seq_len' "
                     "attribute");
  opts.add_options()("resume", po::bool_switch(),
                     "continue an interrupted run of the same command: layers it finished (kept in "
                     "RESULTS.h5.partial/) are not measured again");
  quiet.add_to(opts);
  ess_options.add_to(opts);
  memory.add_to(opts);
  po::variables_map vm;
  if (!parse(argc, argv,
             "ess compute OPS.h5 -o RESULTS.h5 [--tol 1e-3] [--tol-mode absolute|block|layer]\n"
             "            [--engine auto|dense|structured|sweep|lanczos] [--indices a:b:c | i,j,k | --blocks N]\n"
             "            [--keep-sigma K] [--threads N] [--seq-len L] [--max-memory SIZE] [--quiet]\n"
             "            [--resume]\n\n"
             "Computes tolerance-ESS and entropy-ESS of every block H_i = T[i:, :i] of every\n"
             "channel/head of every layer in an operator file and writes a results file.",
             opts, {"operators"}, vm))
    return 0;
  if (read_options.default_seq_len < 0) throw UsageError("--seq-len must be ≥ 0");
  // Under MPI (tools/ess/mpi.h) every rank reads the file and measures its share of each layer's
  // channels; rank 0 gathers, writes and reports.
  Progress progress(quiet.quiet() || !mpi::writer());
  ess_options.refuse_at_tokens("compute",
                               "an operator file stores no input tokens (use ess analyze, or --indices "
                               "with the positions)");
  if (mpi::several() && vm["resume"].as<bool>())
    throw UsageError("--resume is not available under MPI: resume the run as one process");
  Pipeline pipeline(mpi::rank_options(ess_options.values()), progress.layers());
  pipeline.set_partition(mpi::partition());
  memory.apply();
  if (mpi::writer()) output.check({input});

  std::vector<OperatorLayer> layers = read_operator_file(input, read_options);
  if (!mpi::writer()) {
    struct Discard final : ResultSink {
      void add(LayerResult&&) override {}
    } discard;
    pipeline.measure_all(std::move(layers), discard);
    return 0;
  }
  Provenance prov;
  prov.source = input;
  prov.source_sha256 = sha256_file(input);
  prov.input = "operator file";
  prov.block_selection = ess_options.selection();

  // Every finished layer also goes to RESULTS.h5.partial/ (libess/resume.h) until the output is in
  // place; --resume loads the layers an interrupted run finished instead of measuring them.
  // (One process only: under MPI every rank must measure every layer.)
  std::vector<std::string> notes;
  std::optional<PartialRun> partial;
  if (!mpi::several())
    partial.emplace(output.path(), run_fingerprint("compute", vm, prov.source_sha256), vm["resume"].as<bool>(), &notes);
  for (const auto& n : notes) std::cerr << "ess compute: " << n << "\n";
  ResultsWriter writer(output.path(), command_line_without("--resume"));
  SummarizingSink results(writer);
  pipeline.check_memory(layers);
  const int n = static_cast<int>(layers.size());
  for (int k = 0; k < n; ++k) {
    const bool done = partial && partial->finished(k);
    LayerResult R = done ? partial->load(k) : pipeline.measure(layers[k], k, n);
    layers[k].op.reset();  // free the layer's tensors once measured
    // The last layer goes straight to the output: only the commit follows it, and a run killed
    // there measures that one layer again when resumed (for a one-layer file, the sidecar copy
    // cost a third of the run's wall time).
    if (partial && !done && k + 1 < n) partial->save(k, R);
    results.add(std::move(R));
  }
  progress.done();
  writer.commit(prov);
  if (partial) partial->finish();

  std::cout << "wrote " << output.path() << ": " << results.entries().size() << " layer(s)\n";
  for (const auto& [S, seconds] : results.entries()) {
    std::cout << "  " << S.name << "  " << S.family << "  engine=" << S.engine << "  " << S.channels << " "
              << S.channel_kind << "(s) × " << S.batch << "  mean tolerance-ESS " << fmt(S.mean_tolerance_ess)
              << "  mean entropy-ESS " << fmt(S.mean_entropy_ess) << "  " << fmt(seconds, 3) << " s";
    // (Uncertified lanczos blocks converged: their count is a lower bound, their entropy an interval.)
    const long failed = S.bad_blocks - S.uncertified_blocks;
    if (failed > 0 || S.uncertified_blocks > 0) {
      std::cout << "  [";
      if (failed > 0) std::cout << failed << " block(s) failed (did not converge or not finite)";
      if (failed > 0 && S.uncertified_blocks > 0) std::cout << ", ";
      if (S.uncertified_blocks > 0) std::cout << S.uncertified_blocks << " uncertified";
      std::cout << "; see 'status']";
    }
    std::cout << "\n";
  }
  if (mpi::several())
    std::cout << "MPI: " << mpi::size() << " ranks; rank 0 spent " << fmt(mpi::exchange_seconds(), 3)
              << " s exchanging with the others (waiting for them included)\n";
  return 0;
}

ESS_REGISTER_COMMAND("compute", "ESS of every layer of an operator file -> results file", 20, run_compute);

}  // namespace ess::cli
