// ess analyze CKPT -o RESULTS.h5: run a Hugging Face checkpoint in C++ on input tokens, take every
// sequence mixer's operator for that input and compute its ESS.
#include <chrono>
#include <filesystem>
#include <iostream>

#include "analysis/summary.h"
#include "libess/compute.h"
#include "libess/error.h"
#include "libess/results_io.h"
#include "libess/sha256.h"
#include "models/model.h"
#include "models/tokens.h"
#include "tools/ess/cli.h"
#include "tools/ess/compute_options.h"

namespace ess::cli {

int run_analyze(int argc, char** argv) {
  po::options_description opts("options");
  std::string dir, output, tokens_file, mqar;
  opts.add_options()("checkpoint", po::value(&dir), "Hugging Face checkpoint directory")(
      "output,o", po::value(&output)->required(), "results file to write")(
      "tokens", po::value(&tokens_file), "input: one sequence of token ids per line, all the same length")(
      "mqar", po::value(&mqar), "input: built-in MQAR batch, e.g. kv=16,len=256,n=8,seed=0[,vocab=V]");
  EssOptionParser ess_opts;
  ess_opts.add_to(opts);
  po::variables_map vm;
  std::string archs;
  for (const auto& a : models::supported_architectures()) archs += (archs.empty() ? "" : ", ") + a;
  if (!parse(argc, argv,
             "ess analyze CKPT -o RESULTS.h5 (--tokens FILE | --mqar kv=16,len=256,n=8,seed=0)\n"
             "            [--tol 1e-3] [--tol-mode M] [--engine auto] [--indices a:b:c] [--keep-sigma K]\n\n"
             "Loads a Hugging Face checkpoint (config.json + model.safetensors or shards), runs it in C++\n"
             "(float64) on the input tokens, captures every sequence mixer's operator and computes its ESS.\n"
             "With --mqar also reports the model's multi-query associative recall accuracy.\n"
             "Supported architectures: " +
                 archs,
             opts, {"checkpoint"}, vm))
    return 0;
  if (vm.count("tokens") == vm.count("mqar"))
    throw UsageError("give exactly one input: --tokens FILE or --mqar kv=…,len=…,n=…");
  EssOptions options = ess_opts.options(vm);
  const MqarSpec spec = vm.count("mqar") ? parse_mqar(mqar) : MqarSpec{};
  check_output_path(output, {tokens_file, (std::filesystem::path(dir) / "config.json").string()});

  Progress progress(ess_opts.quiet());
  const auto t0 = std::chrono::steady_clock::now();
  progress.update("loading " + dir);
  auto model = models::load_causal_lm(dir);
  const TokenBatch batch =
      vm.count("tokens") ? read_tokens_file(tokens_file, model->vocab_size()) : make_mqar(spec, model->vocab_size());
  progress.update("running " + model->architecture() + " on " + std::to_string(batch.tokens.size()) + " × " +
                  std::to_string(batch.tokens[0].size()) + " tokens");
  models::ModelRun run = model->run(batch.tokens);
  const double forward_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();

  Provenance prov;
  prov.source = dir;
  {
    std::string files;  // identity of the checkpoint: SHA-256 of each weight file and config.json
    for (const auto& f : std::vector<std::string>{(std::filesystem::path(dir) / "config.json").string()})
      files += std::filesystem::path(f).filename().string() + " " + sha256_file(f) + "\n";
    st::Checkpoint ckpt(dir);
    for (const auto& f : ckpt.files())
      files += std::filesystem::path(f).filename().string() + " " + sha256_file(f) + "\n";
    prov.source_sha256 = sha256_hex(files);
  }
  prov.input = batch.description;
  prov.architecture = model->architecture();
  if (vm.count("mqar")) prov.mqar_accuracy = mqar_accuracy(batch, run.argmax);

  std::vector<LayerResult> results;
  for (size_t k = 0; k < run.layers.size(); ++k) {
    const auto& layer = run.layers[k];
    options.progress = [&](long done, long total) {
      progress.update("[layer " + std::to_string(k + 1) + "/" + std::to_string(run.layers.size()) + "] " + layer.name +
                      ": " + std::to_string(done) + "/" + std::to_string(total));
    };
    results.push_back(compute_layer(layer, options));
    run.layers[k].op.reset();  // free the operator tensors as we go
  }
  progress.done();
  write_results(output, results, prov, command_line());
  const double total_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();

  std::cout << "wrote " << output << ": " << model->architecture() << ", " << results.size()
            << " mixer layer(s), input " << batch.description << "\n";
  if (prov.mqar_accuracy >= 0) std::cout << "MQAR accuracy: " << fmt(100 * prov.mqar_accuracy, 1) << "%\n";
  for (const auto& R : results) {
    auto S = summarize(R);
    std::cout << "  " << R.name << "  " << R.family << "  engine=" << R.engine << "  mean tolerance-ESS "
              << fmt(S.mean_tolerance_ess) << " / TSS " << fmt(S.mean_tss, 1) << "  mean entropy-ESS "
              << fmt(S.mean_entropy_ess) << "\n";
  }
  std::cout << "time: forward " << fmt(forward_s, 2) << " s, total " << fmt(total_s, 2) << " s\n";
  return 0;
}

ESS_REGISTER_COMMAND("analyze", "run a Hugging Face checkpoint in C++ and measure every mixer's ESS", 10, run_analyze);

}  // namespace ess::cli
