// ess mqar SPEC --vocab V -o TOKENS [--targets TARGETS]: write the MQAR batch `ess analyze --mqar`
// draws, so that another framework can be evaluated on exactly the same sequences.
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <iostream>
#include <sstream>

#include "libess/error.h"
#include "libess/files.h"
#include "libess/memory.h"
#include "models/tokens.h"
#include "tools/ess/cli.h"

namespace ess::cli {

namespace {

// Writes one row per line (space-separated) through a temporary sibling renamed into place
// (ess::write_file_atomically: removed on failure and on signals).
void write_rows(const std::string& path, const std::vector<std::vector<int>>& rows) {
  std::ostringstream out;
  for (const auto& row : rows) {
    for (size_t t = 0; t < row.size(); ++t) out << (t ? " " : "") << row[t];
    out << "\n";
  }
  write_file_atomically(path, out.str());
}

}  // namespace

int run_mqar(int argc, char** argv) {
  po::options_description opts("options");
  std::string spec_text, output, targets;
  int vocab = 0;
  opts.add_options()("spec", po::value(&spec_text), "MQAR spec, e.g. kv=16,len=256,n=8,seed=0[,vocab=V]")(
      "vocab", po::value(&vocab)->default_value(0), "the model's vocabulary size (or vocab= in the spec)")(
      "output,o", po::value(&output)->required(), "tokens file to write (the format --tokens reads)")(
      "targets", po::value(&targets), "also write the targets: per position the expected next token, -1 where none");
  po::variables_map vm;
  if (!parse(argc, argv,
             "ess mqar SPEC --vocab V -o TOKENS.txt [--targets TARGETS.txt]\n\n"
             "Writes the multi-query associative recall batch that `ess analyze CKPT --mqar SPEC` draws for a\n"
             "model with vocabulary V: one sequence per line. With --targets, a file of the same shape holds\n"
             "the value expected at each query key's position (-1 elsewhere); accuracy = the fraction of\n"
             "non-negative targets equal to the model's most likely next token there.",
             opts, {"spec"}, vm))
    return 0;
  const MqarSpec spec = parse_mqar(spec_text);
  const int v = spec.vocab > 0 ? spec.vocab : vocab;
  if (v <= 0) throw UsageError("give the model's vocabulary: --vocab V (or vocab=V in the spec)");
  check_output_path(output);
  if (!targets.empty()) {
    check_output_path(targets, {output});
    check_output_path(output, {targets});
  }
  // The batch and its text (≤ 12 bytes per token) must fit (spec.n × spec.len ≤ 2^28 tokens).
  const std::uint64_t tokens = static_cast<std::uint64_t>(spec.n) * static_cast<std::uint64_t>(spec.len);
  check_memory(tokens * (targets.empty() ? 16 : 32), "the MQAR batch (" + std::to_string(tokens) + " tokens)",
               "use a smaller n or len");
  const TokenBatch batch = make_mqar(spec, v);
  write_rows(output, batch.tokens);
  if (!targets.empty()) write_rows(targets, batch.target);
  std::cout << "wrote " << output << (targets.empty() ? "" : " and " + targets) << ": " << batch.description << "\n";
  return 0;
}

ESS_REGISTER_COMMAND("mqar", "write the MQAR batch `analyze --mqar` draws (tokens and targets)", 12, run_mqar);

}  // namespace ess::cli
