// ess tokenize CKPT --text FILE: the token ids `ess analyze CKPT --text FILE` would run the model
// on, in the --tokens file format (one row per line), so they can be checked or reused.
#include <chrono>
#include <iostream>
#include <sstream>

#include "libess/error.h"
#include "models/text_input.h"
#include "tools/ess/cli.h"

namespace ess::cli {

int run_tokenize(int argc, char** argv) {
  po::options_description opts("options");
  std::string dir, text_file;
  TextOptions text_opts;
  opts.add_options()("checkpoint", po::value(&dir), "checkpoint directory with tokenizer.json")(
      "text", po::value(&text_file)->required(), "UTF-8 text; documents separated by lines holding only <|doc|>")(
      "max-len", po::value(&text_opts.max_len), "rows of exactly N tokens (tail dropped); default one row")(
      "documents", "one line per document: its own tokens and specials, no separators")("quiet,q",
                                                                                        "no summary on stderr");
  po::variables_map vm;
  if (!parse(argc, argv,
             "ess tokenize CKPT --text FILE [--max-len N | --documents]\n\n"
             "Prints the token ids that `ess analyze CKPT --text FILE` feeds the model, one row per line\n"
             "(the --tokens file format); a summary of the tokenizer and the BOS/EOS rules goes to stderr.",
             opts, {"checkpoint"}, vm))
    return 0;
  if (dir.empty()) throw UsageError("give the checkpoint directory (it must hold tokenizer.json)");
  if (vm.count("documents") && vm.count("max-len")) throw UsageError("--documents and --max-len exclude each other");
  const bool quiet = vm.count("quiet") > 0;

  if (!vm.count("documents")) {
    const auto t0 = std::chrono::steady_clock::now();
    const TokenBatch batch = read_text_file(text_file, dir, 0, text_opts);
    const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    std::ostringstream out;
    for (const auto& row : batch.tokens) {
      for (size_t i = 0; i < row.size(); ++i) out << (i ? " " : "") << row[i];
      out << "\n";
    }
    std::cout << out.str();
    if (!quiet) std::cerr << batch.description << "\ntime " << fmt(s, 3) << " s\n";
    return 0;
  }

  const std::string text = read_text_bytes(text_file);
  if (const size_t bad = models::invalid_utf8_offset(text); bad != std::string::npos)
    throw InputError(text_file + ": not valid UTF-8: byte " + std::to_string(bad));
  const auto documents = split_documents(text);
  const models::Tokenizer tok = load_checkpoint_tokenizer(dir);
  const SpecialTokenRules rules = special_token_rules(dir, tok);
  const auto t0 = std::chrono::steady_clock::now();
  const auto encoded = encode_each_document(tok, rules, documents);
  const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  std::ostringstream out;
  size_t total = 0;
  for (const auto& row : encoded) {
    for (size_t i = 0; i < row.size(); ++i) out << (i ? " " : "") << row[i];
    out << "\n";
    total += row.size();
  }
  std::cout << out.str();
  if (!quiet)
    std::cerr << tok.summary() << "\n"
              << documents.size() << " document(s), " << total << " tokens; " << rules.description << "\n"
              << "encoding " << fmt(s, 3) << " s, " << fmt(total / std::max(s, 1e-9), 0) << " tokens/s, "
              << fmt(text.size() / std::max(s, 1e-9) / 1e6, 2) << " MB/s\n";
  return 0;
}

ESS_REGISTER_COMMAND("tokenize", "print the token ids --text gives (checkpoint's tokenizer.json)", 11, run_tokenize);

}  // namespace ess::cli
