// ess study: analyze many checkpoints (or read their results) and correlate MQAR accuracy with
// ESS/kv, TSS/kv and utilization across them (analysis/study.h, docs/analysis.md).
#include <cstdio>
#include <filesystem>
#include <iostream>
#include <sstream>

#include <nlohmann/json.hpp>

#include "analysis/study.h"
#include "libess/error.h"
#include "libess/files.h"
#include "libess/json.h"
#include "libess/results_io.h"
#include "tools/ess/cli.h"

namespace ess::cli {

namespace {

namespace fs = std::filesystem;
using nlohmann::json;

struct Job {
  std::string name, checkpoint, results;  // results: an existing file to read instead of analyzing
  MqarSpec spec;
  std::map<std::string, std::string> labels;
};

std::string label_text(const json& v) {
  if (v.is_string()) return v.get<std::string>();
  if (v.is_number_integer()) return std::to_string(v.get<long long>());
  return v.dump();
}

// The zoo manifest (tools/reference/zoo.py): {"models": [{"name", "dir", "kv", "len", labels…}]}.
std::vector<Job> jobs_from_manifest(const std::string& path, int n, unsigned seed) {
  JsonLimits limits;  // bounded parse, a regular file (docs/reliability.md)
  limits.max_bytes = 16ULL << 20;
  const json j = read_json_file(path, limits);
  if (!j.is_object() || !j.contains("models") || !j["models"].is_array())
    throw InputError(path + ": no \"models\" array");
  std::vector<Job> jobs;
  const fs::path base = fs::path(path).parent_path();
  for (const auto& m : j["models"]) {
    if (!m.is_object() || !m.contains("name") || !m["name"].is_string() || !m.contains("dir") ||
        !m["dir"].is_string() || !m.contains("kv") || !m["kv"].is_number_integer() || !m.contains("len") ||
        !m["len"].is_number_integer())
      throw InputError(path + ": a model entry needs \"name\" and \"dir\" (strings), \"kv\" and \"len\" (integers): " +
                       m.dump().substr(0, 200));
    for (const char* k : {"name", "dir", "kv", "len"})
      if (!m.contains(k)) throw InputError(path + ": a model entry lacks \"" + std::string(k) + "\"");
    Job job;
    job.name = m["name"].get<std::string>();
    job.checkpoint = (base / m["dir"].get<std::string>()).string();
    job.spec.kv = m["kv"].get<int>();
    job.spec.len = m["len"].get<int>();
    job.spec.n = n;
    job.spec.seed = seed;
    for (const char* k : {"family", "state", "seed", "difficulty", "split", "architecture"})
      if (m.contains(k)) job.labels[k] = label_text(m[k]);
    jobs.push_back(job);
  }
  return jobs;
}

// A list file: one model per line, tab- or space-separated: NAME CHECKPOINT MQAR_SPEC [key=value …];
// '#' starts a comment. Relative checkpoint paths are relative to the list file.
std::vector<Job> jobs_from_list(const std::string& path, int n, unsigned seed) {
  std::istringstream in(read_input_file(path, 16ULL << 20, "list file"));
  std::vector<Job> jobs;
  std::string line;
  int lineno = 0;
  const fs::path base = fs::path(path).parent_path();
  while (std::getline(in, line)) {
    ++lineno;
    line = line.substr(0, line.find('#'));
    std::istringstream ss(line);
    std::vector<std::string> w;
    for (std::string x; ss >> x;) w.push_back(x);
    if (w.empty()) continue;
    if (w.size() < 3)
      throw InputError(path + ":" + std::to_string(lineno) + ": expected NAME CHECKPOINT MQAR_SPEC [key=value …]");
    Job job;
    job.name = w[0];
    job.checkpoint = fs::path(w[1]).is_absolute() ? w[1] : (base / w[1]).string();
    try {
      job.spec = parse_mqar("n=" + std::to_string(n) + ",seed=" + std::to_string(seed) + "," + w[2]);
    } catch (const UsageError& e) {
      throw InputError(path + ":" + std::to_string(lineno) + ": " + e.what());
    }
    for (size_t k = 3; k < w.size(); ++k) {
      const auto eq = w[k].find('=');
      if (eq == std::string::npos)
        throw InputError(path + ":" + std::to_string(lineno) + ": label '" + w[k] + "' is not key=value");
      job.labels[w[k].substr(0, eq)] = w[k].substr(eq + 1);
    }
    jobs.push_back(job);
  }
  return jobs;
}

double finite_or_nan(double v) { return std::isfinite(v) ? v : std::nan(""); }

json number_or_null(double v) { return std::isfinite(v) ? json(v) : json(nullptr); }

json row_json(const StudyRow& r) {
  json j = {{"name", r.name},
            {"labels", r.labels},
            {"source", r.source},
            {"results", r.results},
            {"input", r.input},
            {"architecture", r.architecture},
            {"kv", r.kv},
            {"len", r.len},
            {"accuracy", r.accuracy >= 0 ? json(r.accuracy) : json(nullptr)},
            {"tolerance_ess", number_or_null(r.tolerance_ess)},
            {"entropy_ess", number_or_null(r.entropy_ess)},
            {"total_tolerance_ess", number_or_null(r.total_tolerance_ess)},
            {"total_entropy_ess", number_or_null(r.total_entropy_ess)},
            {"min_layer_tolerance_ess", number_or_null(r.min_layer_tolerance_ess)},
            {"min_layer_entropy_ess", number_or_null(r.min_layer_entropy_ess)},
            {"tss", number_or_null(r.tss)},
            {"total_tss", number_or_null(r.total_tss)},
            {"utilization", number_or_null(r.utilization)},
            {"entropy_utilization", number_or_null(r.entropy_utilization)}};
  json p = json::object();
  for (const auto& [k, v] : r.predictors) p[k] = number_or_null(v);
  j["predictors"] = p;
  json layers = json::array();
  for (const auto& L : r.layers)
    layers.push_back({{"name", L.name},
                      {"family", L.family},
                      {"layer_index", L.layer_index},
                      {"channels", L.channels},
                      {"tolerance_ess", number_or_null(L.tolerance_ess)},
                      {"entropy_ess", number_or_null(L.entropy_ess)},
                      {"total_tolerance_ess", number_or_null(L.total_tolerance_ess)},
                      {"total_entropy_ess", number_or_null(L.total_entropy_ess)},
                      {"tss", number_or_null(L.tss)},
                      {"utilization", number_or_null(L.utilization)},
                      {"entropy_utilization", number_or_null(L.entropy_utilization)}});
  j["layers"] = layers;
  return j;
}

json correlation_json(const Correlation& c) {
  return {{"predictor", c.predictor},
          {"n", c.n},
          {"pearson", number_or_null(c.pearson)},
          {"pearson_ci", {number_or_null(c.pearson_ci.lo), number_or_null(c.pearson_ci.hi)}},
          {"spearman", number_or_null(c.spearman)},
          {"spearman_ci", {number_or_null(c.spearman_ci.lo), number_or_null(c.spearman_ci.hi)}},
          {"bootstrap_valid", c.spearman_ci.valid}};
}

std::string markdown(const std::vector<StudyRow>& rows, const std::vector<Correlation>& cors, const StudyOptions& so) {
  std::ostringstream o;
  o << "| model | labels | kv | len | accuracy | tol-ESS/layer | ent-ESS/layer | TSS | ESS_tol/kv | ESS_ent/kv | "
       "TSS/kv | util |\n"
       "| :-- | :-- | --: | --: | --: | :-- | :-- | --: | --: | --: | --: | --: |\n";
  for (const auto& r : rows) {
    std::string labels, tol, ent;
    for (const auto& [k, v] : r.labels) labels += (labels.empty() ? "" : " ") + k + "=" + v;
    for (const auto& L : r.layers) {
      tol += (tol.empty() ? "" : " / ") + fmt(L.tolerance_ess, 2);
      ent += (ent.empty() ? "" : " / ") + fmt(L.entropy_ess, 2);
    }
    o << "| " << r.name << " | " << labels << " | " << r.kv << " | " << r.len << " | "
      << (r.accuracy >= 0 ? fmt(100 * r.accuracy, 1) + "%" : "–") << " | " << tol << " | " << ent << " | "
      << fmt(r.tss, 1) << " | " << fmt(r.predictors.at("tolerance_ess/kv"), 3) << " | "
      << fmt(r.predictors.at("entropy_ess/kv"), 3) << " | " << fmt(r.predictors.at("tss/kv"), 3) << " | "
      << fmt(100 * r.utilization, 1) << "% |\n";
  }
  o << "\nCorrelation of accuracy with each predictor (" << fmt(100 * so.level, 0) << "% percentile bootstrap, "
    << so.resamples << " resamples, seed " << so.seed << "):\n\n"
    << "| predictor | n | Pearson | interval | Spearman | interval |\n| :-- | --: | --: | :-- | --: | :-- |\n";
  for (const auto& c : cors)
    o << "| " << c.predictor << " | " << c.n << " | " << fmt(c.pearson, 3) << " | [" << fmt(c.pearson_ci.lo, 2) << ", "
      << fmt(c.pearson_ci.hi, 2) << "] | " << fmt(c.spearman, 3) << " | [" << fmt(c.spearman_ci.lo, 2) << ", "
      << fmt(c.spearman_ci.hi, 2) << "] |\n";
  return o.str();
}

// Temporary sibling, fsync, rename; never over an input; removed on failure and on signals.
void write_atomically(const std::string& path, const std::string& text) { write_file_atomically(path, text); }

std::vector<std::string> split_commas(const std::string& s) {
  std::vector<std::string> out;
  std::stringstream in(s);
  for (std::string x; std::getline(in, x, ',');)
    if (!x.empty()) out.push_back(x);
  return out;
}

}  // namespace

int run_study(int argc, char** argv) {
  po::options_description opts("options");
  std::vector<std::string> results_files, where;
  std::string manifest, list, results_dir, output, md_out, svg_out, figure, color_by;
  int n = 8, resamples = 2000;
  unsigned mqar_seed = 12345;
  unsigned long long boot_seed = 0;
  bool reuse = false;
  opts.add_options()("results", po::value(&results_files)->multitoken()->composing(),
                     "results files of `ess analyze --mqar` (repeatable)")(
      "manifest", po::value(&manifest), "zoo manifest (data/zoo/manifest.json): analyze every model in it")(
      "list", po::value(&list), "list file: NAME CHECKPOINT MQAR_SPEC [key=value …] per line")(
      "where", po::value(&where)->composing(),
      "keep only models whose label key has this value (key=value; repeatable)")(
      "n", po::value(&n)->default_value(8), "MQAR sequences per model (manifest and list inputs)")(
      "mqar-seed", po::value(&mqar_seed)->default_value(12345), "seed of the MQAR batches")(
      "results-dir", po::value(&results_dir), "write each model's results file here (NAME.h5)")(
      "reuse", po::bool_switch(&reuse), "read NAME.h5 from --results-dir instead of analyzing when it exists")(
      "output,o", po::value(&output), "study JSON to write (rows, predictors, correlations)")(
      "markdown", po::value(&md_out), "markdown table to write")("svg", po::value(&svg_out), "figure to write (SVG)")(
      "figure-predictors", po::value(&figure)->default_value("tolerance_ess/kv,entropy_ess/kv,tss/kv"),
      "predictors plotted, comma-separated")("color-by", po::value(&color_by)->default_value("family"),
                                             "row label that colours the figure's dots")(
      "bootstrap", po::value(&resamples)->default_value(2000), "bootstrap resamples for the intervals")(
      "seed", po::value(&boot_seed)->default_value(0), "bootstrap seed");
  FormatOption format_option;
  QuietOption quiet_option;
  EssOptionGroup ess_opts;
  MemoryOption memory;
  format_option.add_to(opts);
  quiet_option.add_to(opts);
  ess_opts.add_to(opts);
  memory.add_to(opts);
  po::variables_map vm;
  if (!parse(
          argc, argv,
          "ess study (--manifest ZOO.json | --list MODELS.txt | --results R.h5 …) [-o STUDY.json] [--markdown F.md]\n"
          "          [--svg F.svg] [--results-dir DIR [--reuse]] [--n 8] [--where key=value] [ESS options]\n\n"
          "Measures every model on its MQAR input (as `ess analyze --mqar`, or reads results files it wrote)\n"
          "and writes one table: per model the accuracy, mean tolerance- and entropy-ESS per layer, TSS,\n"
          "ESS/kv, TSS/kv and utilization; then Pearson and Spearman correlations of accuracy with each\n"
          "predictor, with percentile bootstrap intervals. See docs/analysis.md.",
          opts, {}, vm))
    return 0;
  const Format format = format_option.format();
  if (manifest.empty() && list.empty() && results_files.empty())
    throw UsageError("give models: --manifest ZOO.json, --list MODELS.txt or --results FILE.h5");
  if (n < 1) throw UsageError("--n must be ≥ 1");
  if (reuse && results_dir.empty()) throw UsageError("--reuse needs --results-dir");
  const EssOptions options = ess_opts.values();
  memory.apply();
  StudyOptions so;
  so.resamples = resamples;
  so.seed = boot_seed;
  std::vector<std::pair<std::string, std::string>> filters;
  for (const auto& w : where) {
    const auto eq = w.find('=');
    if (eq == std::string::npos) throw UsageError("--where expects key=value, got '" + w + "'");
    filters.emplace_back(w.substr(0, eq), w.substr(eq + 1));
  }
  const auto figure_predictors = split_commas(figure);
  for (const auto& p : figure_predictors) {
    bool known = false;
    for (const auto& [name, what] : study_predictors()) known |= name == p;
    if (!known) throw UsageError("--figure-predictors: unknown predictor '" + p + "'");
  }
  if (!results_dir.empty()) {
    std::error_code ec;
    fs::create_directories(results_dir, ec);
    if (ec) throw InputError(results_dir + ": cannot create the results directory (" + ec.message() + ")");
  }
  std::vector<std::string> inputs = results_files;
  inputs.push_back(manifest);
  inputs.push_back(list);
  for (const auto& f : {output, md_out, svg_out})
    if (!f.empty()) check_output_path(f, inputs);

  std::vector<Job> jobs;
  if (!manifest.empty())
    for (auto& j : jobs_from_manifest(manifest, n, mqar_seed)) jobs.push_back(j);
  if (!list.empty())
    for (auto& j : jobs_from_list(list, n, mqar_seed)) jobs.push_back(j);
  for (const auto& f : results_files) {
    Job j;
    j.name = fs::path(f).stem().string();
    j.results = f;
    jobs.push_back(j);
  }
  std::vector<Job> kept;
  for (const auto& j : jobs) {
    bool ok = true;
    for (const auto& [k, v] : filters) {
      auto it = j.labels.find(k);
      ok &= it != j.labels.end() && it->second == v;
    }
    if (ok) kept.push_back(j);
  }
  if (kept.empty()) throw InputError("no models left to study (check --where)");

  Progress progress(quiet_option.quiet());
  std::vector<StudyRow> rows;
  for (size_t k = 0; k < kept.size(); ++k) {
    const Job& job = kept[k];
    progress.update("[" + std::to_string(k + 1) + "/" + std::to_string(kept.size()) + "] " + job.name);
    ResultsFile file;
    const std::string cached = results_dir.empty() ? "" : (fs::path(results_dir) / (job.name + ".h5")).string();
    if (!job.results.empty()) {
      file = read_results(job.results);
    } else if (reuse && fs::exists(cached)) {
      file = read_results(cached);
    } else {
      file = analyze_mqar(job.checkpoint, job.spec, options, command_line(), ess_opts.token_windows());
      file.provenance.block_selection = ess_opts.selection();
      if (!cached.empty()) {
        write_results(cached, file.layers, file.provenance, command_line());
        file.path = cached;
      }
    }
    StudyRow row = study_row(file, job.name);
    row.labels = job.labels;
    if (!job.checkpoint.empty()) row.source = job.checkpoint;
    rows.push_back(row);
  }
  progress.done();
  const auto cors = correlate(rows, so);

  json j = {{"format", "ess-study"}, {"version", 1}, {"command_line", command_line()}};
  j["ess_options"] = {{"tol", options.tol},
                      {"tol_mode", to_string(options.tol_mode)},
                      {"indices", options.indices},
                      {"block_selection", ess_opts.selection()},
                      {"mqar_n", n},
                      {"mqar_seed", mqar_seed}};
  j["bootstrap"] = {{"resamples", so.resamples}, {"seed", so.seed}, {"level", so.level}, {"method", "percentile"}};
  json preds = json::array();
  for (const auto& [name, what] : study_predictors()) preds.push_back({{"name", name}, {"definition", what}});
  j["predictors"] = preds;
  json jrows = json::array();
  for (const auto& r : rows) jrows.push_back(row_json(r));
  j["rows"] = jrows;
  json jc = json::array();
  for (const auto& c : cors) jc.push_back(correlation_json(c));
  j["correlations"] = jc;
  const std::string md = markdown(rows, cors, so);
  if (!output.empty()) write_atomically(output, j.dump(2) + "\n");
  if (!md_out.empty()) write_atomically(md_out, md);
  if (!svg_out.empty()) write_atomically(svg_out, study_svg(rows, cors, figure_predictors, color_by));

  if (format == Format::json) {
    std::cout << j.dump(2) << "\n";
  } else if (format == Format::markdown) {
    std::cout << md;
  } else {
    std::cout << "ess study: " << rows.size() << " model(s)\n\n";
    char buf[320];
    std::snprintf(buf, sizeof buf, "%-28s %4s %4s %7s %9s %9s %8s %8s %6s\n", "model", "kv", "len", "acc%", "ESStol/kv",
                  "ESSent/kv", "TSS/kv", "util%", "layers");
    std::cout << buf;
    for (const auto& r : rows) {
      std::snprintf(buf, sizeof buf, "%-28s %4d %4d %7.1f %9.3f %9.3f %8.3f %8.1f %6zu\n", r.name.substr(0, 28).c_str(),
                    r.kv, r.len, r.accuracy >= 0 ? 100 * r.accuracy : std::nan(""),
                    finite_or_nan(r.predictors.at("tolerance_ess/kv")),
                    finite_or_nan(r.predictors.at("entropy_ess/kv")), finite_or_nan(r.predictors.at("tss/kv")),
                    100 * r.utilization, r.layers.size());
      std::cout << buf;
    }
    std::cout << "\ncorrelation with accuracy (" << so.resamples << " bootstrap resamples, 95% percentile intervals)\n";
    for (const auto& c : cors) {
      std::snprintf(buf, sizeof buf, "  %-28s n=%-4d Pearson %6.3f [%6.3f, %6.3f]   Spearman %6.3f [%6.3f, %6.3f]\n",
                    c.predictor.c_str(), c.n, c.pearson, c.pearson_ci.lo, c.pearson_ci.hi, c.spearman, c.spearman_ci.lo,
                    c.spearman_ci.hi);
      std::cout << buf;
    }
  }
  return 0;
}

ESS_REGISTER_COMMAND("study", "correlate MQAR accuracy with ESS/kv, TSS/kv and utilization across models", 45,
                     run_study);

}  // namespace ess::cli
