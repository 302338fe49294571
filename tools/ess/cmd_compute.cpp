// ess compute OPS.h5 -o RESULTS.h5: ESS of every layer of an operator file.
#include <iostream>

#include "analysis/summary.h"
#include "libess/compute.h"
#include "libess/error.h"
#include "libess/results_io.h"
#include "libess/sha256.h"
#include "operators/registry.h"
#include "tools/ess/cli.h"
#include "tools/ess/compute_options.h"

namespace ess::cli {

int run_compute(int argc, char** argv) {
  po::options_description opts("options");
  std::string input, output;
  opts.add_options()("operators", po::value(&input), "operator file (format ess-operators)")(
      "output,o", po::value(&output)->required(), "results file to write (format ess-results)")(
      "seq-len", po::value<int>()->default_value(0),
      "sequence length for layers without a time axis (s4d, ungated conv) that have no 'seq_len' attribute");
  EssOptionParser ess_opts;
  ess_opts.add_to(opts);
  po::variables_map vm;
  if (!parse(argc, argv,
             "ess compute OPS.h5 -o RESULTS.h5 [--tol 1e-3] [--tol-mode absolute|block|layer]\n"
             "            [--engine auto|dense|structured|sweep] [--indices start:stop:step]\n"
             "            [--keep-sigma K] [--threads N] [--seq-len L] [--quiet]\n\n"
             "Computes tolerance-ESS and entropy-ESS of every block H_i = T[i:, :i] of every\n"
             "channel/head of every layer in an operator file and writes a results file.",
             opts, {"operators"}, vm))
    return 0;
  EssOptions options = ess_opts.options(vm);
  check_output_path(output, {input});

  OperatorReadOptions read_options;
  read_options.default_seq_len = vm["seq-len"].as<int>();
  if (read_options.default_seq_len < 0) throw UsageError("--seq-len must be ≥ 0");
  std::vector<OperatorLayer> layers = read_operator_file(input, read_options);
  Provenance prov;
  prov.source = input;
  prov.source_sha256 = sha256_file(input);
  prov.input = "operator file";

  Progress progress(ess_opts.quiet());
  std::vector<LayerResult> results;
  for (size_t k = 0; k < layers.size(); ++k) {
    const auto& layer = layers[k];
    options.progress = [&](long done, long total) {
      progress.update("[layer " + std::to_string(k + 1) + "/" + std::to_string(layers.size()) + "] " + layer.name +
                      ": " + std::to_string(done) + "/" + std::to_string(total) + " channels");
    };
    results.push_back(compute_layer(layer, options));
  }
  progress.done();
  write_results(output, results, prov, command_line());

  std::cout << "wrote " << output << ": " << results.size() << " layer(s)\n";
  for (const auto& R : results) {
    auto S = summarize(R);
    std::cout << "  " << R.name << "  " << R.family << "  engine=" << R.engine << "  " << S.channels << " "
              << S.channel_kind << "(s) × " << S.batch << "  mean tolerance-ESS " << fmt(S.mean_tolerance_ess)
              << "  mean entropy-ESS " << fmt(S.mean_entropy_ess) << "  " << fmt(R.seconds, 3) << " s";
    if (S.bad_blocks) std::cout << "  [" << S.bad_blocks << " block(s) did not converge; see 'status']";
    std::cout << "\n";
  }
  return 0;
}

ESS_REGISTER_COMMAND("compute", "ESS of every layer of an operator file -> results file", 20, run_compute);

}  // namespace ess::cli
