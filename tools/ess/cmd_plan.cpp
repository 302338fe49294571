// ess plan RESULTS.h5 --max-error E: which layers can become a sliding window or a recurrent state.
#include <cmath>
#include <cstdio>
#include <iostream>
#include <sstream>

#include "analysis/plan.h"
#include "libess/error.h"
#include "tools/ess/cli.h"

namespace ess::cli {

namespace {

// Numbers as a short human quantity: 1234567 → "1.23M".
std::string human(double v) {
  const char* units[] = {"", "k", "M", "G", "T"};
  int u = 0;
  while (std::abs(v) >= 1000 && u < 4) v /= 1000, ++u;
  char buf[32];
  std::snprintf(buf, sizeof buf, u == 0 ? "%.0f%s" : "%.3g%s", v, units[u]);
  return buf;
}

}  // namespace

int run_plan(int argc, char** argv) {
  po::options_description opts("options");
  std::string input, states_arg, window_error = "masked";
  PlanOptions o;
  bool show_candidates = false;
  FormatOption format_option;
  opts.add_options()("results", po::value(&input), "results file (format ess-results)")(
      "max-error", po::value(&o.max_error)->default_value(1e-2, "1e-2"),
      "largest acceptable mean relative block error of a replacement")(
      "states", po::value(&states_arg)->default_value(""),
      "recurrent state sizes to consider, comma-separated (default 1, 2, 4, … up to the largest attainable rank)")(
      "window-error", po::value(&window_error)->default_value(window_error),
      "error of a window student: masked (zero outside the window) or renormalized (softmax over the window)")(
      "state-weight", po::value(&o.state_weight)->default_value(o.state_weight, "4"),
      "how many d_head numbers a state dimension counts when ranking against KV caches")(
      "d-head", po::value(&o.d_head)->default_value(o.d_head, "from the file"),
      "numbers per key / value vector of a head (default: each layer's head_dim as the file records it, else 64)")(
      "length-factor", po::value(&o.length_factor)->default_value(o.length_factor, "4"),
      "the summary's longer sequence: this × the measured L")("candidates", po::bool_switch(&show_candidates),
                                                              "list every candidate of every layer (text, markdown)");
  format_option.add_to(opts);
  po::variables_map vm;
  if (!parse(argc, argv,
             "ess plan RESULTS.h5 [--max-error 1e-2] [--states 1,2,4,…] [--window-error masked|renormalized]\n"
             "                    [--state-weight 4] [--d-head D] [--length-factor 4] [--candidates]\n"
             "                    [--format text|json|markdown]\n\n"
             "For every layer the cheapest replacement whose mean block error stays within --max-error:\n"
             "keep it (full attention: the whole KV cache), a sliding window w with or without sink tokens\n"
             "(the sparse students ess compute / analyze store for attention heads), or a recurrent state N\n"
             "(Eckart–Young tail of the stored singular values: compute with --keep-sigma K). Memory per\n"
             "head and sequence: KV cache 2·entries·d_head, state N·d_head (d_head: the head dimension ess\n"
             "analyze records per layer); a model summary with the\n"
             "hybrid ratio and the memory saved at L and --length-factor × L.",
             opts, {"results"}, vm))
    return 0;
  o.states = parse_size_list(states_arg, "--states", 100000000);
  o.window_error = parse_window_error(window_error);
  o.validate();
  const Format format = format_option.format();
  const ResultsFile file = read_results(input);
  ModelPlan plan;
  try {
    plan = make_plan(file, o);
  } catch (Error& e) {
    e.prepend(input + ": ");
    throw;
  }
  if (format == Format::json) {
    print_json(std::cout, to_json(plan));
    return 0;
  }
  const bool md = format == Format::markdown;
  std::cout << (md ? "## Replacement plan: `" : "Replacement plan: ") << input << (md ? "`\n\n" : "\n")
            << "cheapest replacement per layer with mean block error ≤ " << o.max_error
            << " (windows: " << to_string(o.window_error) << " students; states: Eckart–Young tails, ranked at "
            << o.state_weight << "× their memory); memory per head and sequence in numbers ("
            << (o.d_head > 0 ? "d_head = " + std::to_string(o.d_head) + ", --d-head"
                             : std::string("d_head: each head layer's head_dim from the file"))
            << ")\n\n";
  const PlanSummary& s = plan.summary;
  const std::string long_label = "at " + std::to_string(std::lround(s.long_factor * s.seq_len));
  Table table({{"layer", Table::right},
               {"name"},
               {"family"},
               {"d_head", Table::right},
               {"recommended"},
               {"error", Table::right},
               {"memory/head", Table::right, "memory per head"},
               {long_label, Table::right},
               {"full", Table::right, "full attention memory"}});
  for (const LayerPlan& l : plan.layers)
    table.add({std::to_string(l.layer_index), l.name, l.family,
               std::to_string(l.d_head) + (l.d_head_source == "assumed" ? "?" : ""), describe(l.recommended, l),
               fmt_sci(l.recommended.error, 2), human(l.recommended.memory_at_L), human(l.recommended.memory_at_long),
               human(l.candidates.front().memory_at_L)});
  table.print(std::cout, format, md ? "" : "  ");
  for (const LayerPlan& l : plan.layers)
    for (const auto& n : l.notes) std::cout << (md ? "\n- " : "  note: ") << l.name << ": " << n << "\n";
  const auto pct = [](double orig, double planned) {
    return orig > 0 ? fmt(100 * (orig - planned) / orig, 1) + "%" : std::string("n/a");
  };
  std::cout << "\n"
            << (md ? "**Summary:** " : "summary: ") << s.layers << " layer(s): " << s.full << " kept, " << s.window
            << " window, " << s.state << " state; hybrid " << s.window + s.state << ":" << s.full
            << " (replaced : kept)\n"
            << (md ? "\n" : "  ") << "memory per sequence at L = " << s.seq_len << ": " << human(s.original_at_L)
            << " → " << human(s.planned_at_L) << " (saved " << pct(s.original_at_L, s.planned_at_L) << "); "
            << long_label << ": " << human(s.original_at_long) << " → " << human(s.planned_at_long) << " (saved "
            << pct(s.original_at_long, s.planned_at_long) << ")\n";
  if (show_candidates) {
    for (const LayerPlan& l : plan.layers) {
      std::cout << "\n" << (md ? "### " : "") << "layer " << l.layer_index << " " << l.name << ": candidates\n";
      if (md) std::cout << "\n";
      Table c({{"candidate"},
               {"error", Table::right},
               {"max", Table::right},
               {"masked", Table::right},
               {"renorm", Table::right, "renormalized"},
               {"memory/head", Table::right, "memory per head"},
               {"per token", Table::right},
               {"cost", Table::right},
               {""}});
      for (const auto& k : l.candidates) {
        const bool w = k.kind == PlanKind::window;
        c.add({describe(k, l), fmt_sci(k.error, 2), fmt_sci(k.max_error, 2), w ? fmt_sci(k.masked_error, 2) : "",
               w ? fmt_sci(k.renormalized_error, 2) : "", human(k.memory_at_L), fmt(k.memory_per_token, 1),
               human(k.cost), k.qualifies ? "ok" : ""});
      }
      c.print(std::cout, format, md ? "" : "  ");
    }
  }
  return 0;
}

ESS_REGISTER_COMMAND("plan", "per-layer replacement plan: full attention, sliding window or recurrent state", 36,
                     run_plan);

}  // namespace ess::cli
