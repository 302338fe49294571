// ess compress RESULTS.h5 --state 16,32,64: distillation compressibility per layer.
#include <cmath>
#include <cstdio>
#include <iostream>
#include <sstream>

#include "analysis/compressibility.h"
#include "analysis/plan.h"
#include "libess/error.h"
#include "tools/ess/cli.h"

namespace ess::cli {

namespace {

std::string fmt_g(double v) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%g", v);
  return buf;
}

}  // namespace

int run_compress(int argc, char** argv) {
  po::options_description opts("options");
  std::string input, states_arg;
  double max_error = 1e-2;
  FormatOption format_option;
  opts.add_options()("results", po::value(&input), "results file with singular values (--keep-sigma)")(
      "state", po::value(&states_arg),
      "student state sizes, comma-separated (e.g. 16,32,64); optional when the file has sparse students")(
      "max-error", po::value(&max_error)->default_value(1e-2, "1e-2"), "largest acceptable mean relative tail");
  format_option.add_to(opts);
  po::variables_map vm;
  if (!parse(argc, argv,
             "ess compress RESULTS.h5 --state 16,32,64 [--max-error 1e-2] [--format text|json|markdown]\n\n"
             "For each layer and student state N_s: the Eckart–Young relative tail\n"
             "sqrt(Σ_{k>N_s} σ_k²)/‖H_i‖_F averaged over blocks and channels (and its maximum), the\n"
             "fraction of blocks whose tolerance-ESS exceeds N_s, and the smallest N_s whose mean tail is\n"
             "at most --max-error. Needs singular values: compute with --keep-sigma K.\n"
             "Sparse students of attention heads (window, window + sinks, top-k), when the file has them:\n"
             "mean masked and renormalized block errors and the ESS of the restricted operator.",
             opts, {"results"}, vm))
    return 0;
  const std::vector<int> states = parse_size_list(states_arg, "--state", 1000000);
  if (!(max_error >= 0) || !std::isfinite(max_error)) throw UsageError("--max-error must be a finite number ≥ 0");
  const Format format = format_option.format();
  const ResultsFile file = read_results(input);
  std::vector<LayerCompressibility> layers;
  std::vector<std::vector<StudentSummary>> students;
  bool any_students = false;
  for (const auto& R : file.layers) {
    students.push_back(summarize_students(R));
    any_students = any_students || !students.back().empty();
    LayerCompressibility l;
    l.name = R.name, l.family = R.family, l.layer_index = R.layer_index;
    try {
      if (!states.empty()) l = compressibility(R, states, max_error);
    } catch (Error& e) {
      e.prepend(input + ": ");
      throw;
    }
    layers.push_back(l);
  }
  if (states.empty() && !any_students)
    throw UsageError("--state is required (the file has no sparse students to report)");
  if (format == Format::json) {
    Json entries = Json::array();
    for (size_t k = 0; k < layers.size(); ++k) {
      Json e =
          states.empty()
              ? Json{{"name", layers[k].name}, {"layer_index", layers[k].layer_index}, {"family", layers[k].family}}
              : to_json(layers[k]);
      if (!students[k].empty()) e["students"] = to_json(students[k]);
      entries.push_back(e);
    }
    print_json(std::cout, {{"file", input}, {"max_error", max_error}, {"layers", entries}});
    return 0;
  }
  const bool md = format == Format::markdown;
  std::cout << (md ? "## Compressibility: `" : "Compressibility: ") << input << (md ? "`\n\n" : "\n");
  if (!states.empty())
    std::cout << "relative Eckart–Young tail of H_i for each student state (mean / max over blocks and channels);\n"
              << "exceed = fraction of blocks whose tolerance-ESS is above the state; entropy-ESS after truncation to\n"
              << "the state and its loss against the layer's own (relative); recommended: smallest state with\n"
              << "mean tail ≤ " << max_error << "\n\n";
  for (size_t k = 0; k < layers.size(); ++k) {
    const LayerCompressibility& l = layers[k];
    if (states.empty()) {
      if (students[k].empty()) continue;
      std::cout << (md ? "### " : "") << "layer " << l.layer_index << " " << l.name << " (" << l.family << ")\n";
    } else {
      std::cout << (md ? "### " : "") << "layer " << l.layer_index << " " << l.name << " (" << l.family
                << "): recommended state "
                << (l.recommended_state ? std::to_string(*l.recommended_state)
                                        : "none of those given (all mean tails above " + fmt_g(max_error) + ")")
                << " (the layer's own state: " << l.layer_state << ")\n";
      if (!l.note.empty()) std::cout << (md ? "\n**Note:** " : "  note: ") << l.note << "\n";
      if (md) std::cout << "\n";
      Table table({{"state", Table::right},
                   {"mean tail", Table::right},
                   {"max tail", Table::right},
                   {"exceed", Table::right},
                   {"entropy-ESS truncated", Table::right},
                   {"loss", Table::right},
                   {""}});
      for (const auto& t : l.targets)
        table.add({std::to_string(t.state), fmt_sci(t.mean_tail, 3), fmt_sci(t.max_tail, 3),
                   fmt(100 * t.frac_exceeding, 1) + "%", fmt(t.truncated_entropy_ess, 2),
                   fmt(100 * t.relative_entropy_ess_loss, 1) + "%", t.exceeds_layer_state ? "> layer state" : ""});
      table.print(std::cout, format, md ? "" : "  ");
      std::cout << "\n";
    }
    if (students[k].empty()) continue;
    std::cout << (md ? "Sparse students" : "  sparse students")
              << " (relative block error, mean / max; ESS of the restricted blocks):\n";
    if (md) std::cout << "\n";
    Table st({{"student"},
              {"masked", Table::right},
              {"max", Table::right},
              {"renorm", Table::right, "renormalized"},
              {"max", Table::right},
              {"operator", Table::right, "operator (masked)"},
              {"tol-ESS", Table::right, "tolerance-ESS"},
              {"ent-ESS", Table::right, "entropy-ESS"}});
    for (const auto& t : students[k])
      st.add({to_string(t.pattern), fmt_sci(t.mean_masked, 3), fmt_sci(t.max_masked, 3),
              fmt_sci(t.mean_renormalized, 3), fmt_sci(t.max_renormalized, 3), fmt_sci(t.operator_masked, 3),
              fmt(t.mean_tolerance_ess, 2), fmt(t.mean_entropy_ess, 2)});
    st.print(std::cout, format, md ? "" : "  ");
    std::cout << "\n";
  }
  return 0;
}

ESS_REGISTER_COMMAND("compress", "distillation compressibility per layer for student state sizes", 35, run_compress);

}  // namespace ess::cli
