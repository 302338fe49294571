// ess analyze CKPT -o RESULTS.h5: run a Hugging Face checkpoint in C++ on input tokens, take every
// sequence mixer's operator for that input and compute its ESS.
#include <algorithm>
#include <chrono>
#include <cmath>
#include <filesystem>
#include <iostream>
#include <optional>
#include <thread>

#include "libess/engine.h"
#include "libess/error.h"
#include "libess/parallel.h"
#include "libess/pipeline.h"
#include "libess/results_io.h"
#include "libess/resume.h"
#include "libess/sha256.h"
#include "models/fingerprint.h"
#include "models/model.h"
#include "models/text_input.h"
#include "models/tokens.h"
#include "tools/ess/cli.h"
#include "tools/ess/mpi.h"

namespace ess::cli {

namespace {

// The model's predictions as stored in /model: argmax and next-token log-probabilities per
// position (computed by the forward pass, models::finish_logits), loss and perplexity.
Predictions to_predictions(const models::Tokens& tokens, const models::ModelRun& run, int vocab) {
  Predictions p;
  p.batch = static_cast<int>(tokens.size());
  p.seq_len = static_cast<int>(tokens[0].size());
  p.vocab_size = vocab;
  for (int b = 0; b < p.batch; ++b) {
    p.input_ids.insert(p.input_ids.end(), tokens[b].begin(), tokens[b].end());
    p.argmax.insert(p.argmax.end(), run.argmax[b].begin(), run.argmax[b].end());
    p.logprobs.insert(p.logprobs.end(), run.logprobs[b].begin(), run.logprobs[b].end());
    for (int t = 0; t + 1 < p.seq_len; ++t)
      if (std::isnan(run.logprobs[b][t]))
        throw Error(ExitCode::numerical, "the model's logits are not finite at sequence " + std::to_string(b) +
                                             ", position " + std::to_string(t) + ": no prediction");
  }
  set_loss(p);
  return p;
}

}  // namespace

int run_analyze(int argc, char** argv) {
  po::options_description opts("options");
  std::string dir, tokens_file, mqar, text_file;
  TextOptions text_opts;
  OutputOption output;
  QuietOption quiet;
  EssOptionGroup ess_options;
  MemoryOption memory;
  opts.add_options()("checkpoint", po::value(&dir), "Hugging Face checkpoint directory");
  output.add_to(opts, "results file to write");
  opts.add_options()("tokens", po::value(&tokens_file),
                     "input: one sequence of token ids per line, all the same length")(
      "mqar", po::value(&mqar), "input: built-in MQAR batch, e.g. kv=16,len=256,n=8,seed=0[,vocab=V]")(
      "text", po::value(&text_file),
      "input: UTF-8 text through CKPT/tokenizer.json; documents separated by <|doc|> lines")(
      "max-len", po::value(&text_opts.max_len),
      "with --text: rows of exactly N tokens (tail dropped); default one row");
  opts.add_options()("resume", po::bool_switch(),
                     "continue an interrupted run of the same command: layers it finished (kept in "
                     "RESULTS.h5.partial/) are not measured again (the forward pass runs again)");
  quiet.add_to(opts);
  ess_options.add_to(opts);
  memory.add_to(opts);
  po::variables_map vm;
  std::string archs;
  for (const auto& a : models::supported_architectures()) archs += (archs.empty() ? "" : ", ") + a;
  if (!parse(argc, argv,
             "ess analyze CKPT -o RESULTS.h5 (--tokens FILE | --text FILE [--max-len N] | --mqar "
             "kv=16,len=256,n=8,seed=0)\n"
             "            [--tol 1e-3] [--tol-mode M] [--engine auto] [--indices a:b:c | i,j,k | --blocks N |\n"
             "            --at-tokens ID[,ID…] [--window W]] [--keep-sigma K]\n"
             "            [--max-memory SIZE] [--resume]\n\n"
             "Loads a Hugging Face checkpoint (config.json + model.safetensors or shards), runs it in C++\n"
             "(float64) on the input tokens, captures every sequence mixer's operator and computes its ESS.\n"
             "Stores the model's predictions (next-token log-probabilities, argmax) in /model and prints\n"
             "its loss and perplexity on the input; with --mqar also its multi-query associative recall accuracy.\n"
             "Supported architectures: " +
                 archs,
             opts, {"checkpoint"}, vm))
    return 0;
  if (vm.count("tokens") + vm.count("mqar") + vm.count("text") != 1)
    throw UsageError("give exactly one input: --tokens FILE, --text FILE or --mqar kv=…,len=…,n=…");
  if (vm.count("max-len") && !vm.count("text")) throw UsageError("--max-len goes with --text");
  // Under MPI (tools/ess/mpi.h) every rank runs the forward pass and measures its share of each
  // layer's channels; rank 0 gathers, writes and reports.
  Progress progress(quiet.quiet() || !mpi::writer());
  ess_options.values();  // usage errors before the checkpoint is loaded
  if (mpi::several() && vm["resume"].as<bool>())
    throw UsageError("--resume is not available under MPI: resume the run as one process");
  memory.apply();
  const MqarSpec spec = vm.count("mqar") ? parse_mqar(mqar) : MqarSpec{};
  const std::string config = (std::filesystem::path(dir) / "config.json").string();
  const std::string tokenizer = (std::filesystem::path(dir) / "tokenizer.json").string();
  if (mpi::writer()) output.check({tokens_file, text_file, config, tokenizer});

  using Clock = std::chrono::steady_clock;
  const auto seconds = [](Clock::time_point a) { return std::chrono::duration<double>(Clock::now() - a).count(); };
  const auto t0 = Clock::now();
  progress.update("loading " + dir);
  auto model = models::load_causal_lm(dir);
  const double load_s = seconds(t0);
  const TokenBatch batch = vm.count("tokens") ? read_tokens_file(tokens_file, model->vocab_size())
                           : vm.count("text") ? read_text_file(text_file, dir, model->vocab_size(), text_opts)
                                              : make_mqar(spec, model->vocab_size());
  const long long seq_len = static_cast<long long>(batch.tokens[0].size());
  if (mpi::writer() && model->max_positions() > 0 && seq_len > model->max_positions())
    std::cerr << "ess analyze: note: " << seq_len << " tokens per sequence, more than the " << model->max_positions()
              << " of config.json's max_position_embeddings: the model was not "
              << "trained on the positions past it, so its predictions and ESS there describe extrapolation\n";
  Pipeline pipeline(mpi::rank_options(ess_options.values(batch.tokens)), progress.layers());  // --at-tokens: tokens
  pipeline.set_partition(mpi::partition());
  progress.update("running " + model->architecture() + " on " + std::to_string(batch.tokens.size()) + " × " +
                  std::to_string(batch.tokens[0].size()) + " tokens");

  Provenance prov;
  prov.source = dir;
  const auto t_hash = Clock::now();
  prov.source_sha256 = models::checkpoint_sha256(dir);
  const double hash_s = seconds(t_hash);

  // Every finished layer also goes to RESULTS.h5.partial/ (libess/resume.h) until the output is in
  // place; --resume loads the layers an interrupted run finished instead of measuring them.
  std::string token_text;
  for (const auto& row : batch.tokens) {
    for (int t : row) token_text += std::to_string(t) + ' ';
    token_text += '\n';
  }
  // (One process only: under MPI every rank must measure every layer.)
  std::vector<std::string> notes;
  std::optional<PartialRun> partial;
  if (!mpi::several())
    partial.emplace(output.path(),
                    run_fingerprint("analyze", vm, prov.source_sha256 + " tokens " + sha256_hex(token_text)),
                    vm["resume"].as<bool>(), &notes);
  token_text = std::string();
  for (const auto& n : notes) std::cerr << "ess analyze: " << n << "\n";

  // Each mixer's operator is measured as soon as the forward pass has computed its output through
  // it, written, and freed: peak memory holds one layer's weights and one layer's operator.
  std::optional<ResultsWriter> writer;
  std::optional<SummarizingSink> results;
  if (mpi::writer()) {
    writer.emplace(output.path(), command_line_without("--resume"));
    results.emplace(*writer);
  }
  double ess_s = 0;
  int position = 0;
  // The forward pass's products (weights, attention tiles) and its heads run on one thread per core
  // this run may use, cut into pieces whose shapes do not depend on the thread count
  // (libess/parallel.h), with the BLAS single-threaded: the same bits with any --threads and on
  // every MPI rank. The measurement runs its own workers (gemm threads back to 1 meanwhile).
  const int forward_threads = pipeline.options().threads > 0
                                  ? pipeline.options().threads
                                  : std::max(1, static_cast<int>(std::thread::hardware_concurrency()));
  set_blas_single_threaded();
  set_gemm_threads(forward_threads);
  const auto t_run = Clock::now();
  models::ModelRun run = model->stream(batch.tokens, [&](OperatorLayer&& handed) {
    const OperatorLayer layer = std::move(handed);  // freed when this call returns
    const auto t = Clock::now();
    set_gemm_threads(1);
    const int k = position++;
    if (partial && partial->finished(k)) {
      results->add(partial->load(k));
    } else {
      LayerResult R = pipeline.measure(layer, k, model->num_mixers());
      if (partial) partial->save(k, R);
      if (results) results->add(std::move(R));
    }
    ess_s += seconds(t);
    set_gemm_threads(forward_threads);
  });
  set_gemm_threads(1);
  const double forward_s = seconds(t_run) - ess_s;
  progress.done();
  if (!mpi::writer()) return 0;

  prov.input = batch.description;
  prov.block_selection = ess_options.selection();
  prov.architecture = model->architecture();
  if (vm.count("mqar")) prov.mqar_accuracy = mqar_accuracy(batch, run.argmax);
  const Predictions predictions = to_predictions(batch.tokens, run, model->vocab_size());
  writer->write_predictions(predictions);
  writer->commit(prov);
  if (partial) partial->finish();
  const double total_s = seconds(t0);

  std::cout << "wrote " << output.path() << ": " << model->architecture() << ", " << results->entries().size()
            << " mixer layer(s), input " << batch.description << "\n";
  std::cout << "predictions: loss " << fmt(predictions.loss, 4) << " nats/token, perplexity "
            << fmt_sig(predictions.perplexity) << " over " << predictions.scored() << " next tokens\n";
  if (prov.mqar_accuracy >= 0) std::cout << "MQAR accuracy: " << fmt(100 * prov.mqar_accuracy, 1) << "%\n";
  for (const auto& entry : results->entries()) {
    const LayerSummary& S = entry.summary;
    std::cout << "  " << S.name << "  " << S.family << "  engine=" << S.engine << "  mean tolerance-ESS "
              << fmt(S.mean_tolerance_ess) << " / TSS " << fmt(S.mean_tss, 1) << "  mean entropy-ESS "
              << fmt(S.mean_entropy_ess) << "\n";
  }
  std::cout << "time: load " << fmt(load_s, 2) << " s, forward " << fmt(forward_s, 2)
            << " s (reading weights included), ESS " << fmt(ess_s, 2) << " s, checkpoint hash " << fmt(hash_s, 2)
            << " s, total " << fmt(total_s, 2) << " s\n";
  if (mpi::several())
    std::cout << "MPI: " << mpi::size() << " ranks; rank 0 spent " << fmt(mpi::exchange_seconds(), 2)
              << " s of the ESS time exchanging with the others (waiting for them included)\n";
  return 0;
}

ESS_REGISTER_COMMAND("analyze", "run a Hugging Face checkpoint in C++ and measure every mixer's ESS", 10, run_analyze);

}  // namespace ess::cli
