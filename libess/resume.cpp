#include "libess/resume.h"

#include <unistd.h>

#include <algorithm>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <nlohmann/json.hpp>

#include "libess/error.h"
#include "libess/files.h"
#include "libess/json.h"
#include "libess/results_io.h"

namespace ess {

namespace fs = std::filesystem;

namespace {

constexpr const char* kManifest = "run.json";
constexpr const char* kFormat = "ess-partial";

// "layer-00003.h5" → 3; −1 for anything else (temporaries, the manifest).
int layer_position(const std::string& name) {
  if (name.size() != 14 || name.compare(0, 6, "layer-") != 0 || name.compare(11, 3, ".h5") != 0) return -1;
  int v = 0;
  for (size_t k = 6; k < 11; ++k) {
    if (name[k] < '0' || name[k] > '9') return -1;
    v = v * 10 + (name[k] - '0');
  }
  return v;
}

// The entries of two fingerprints that differ (flattened JSON pointers), for the refusal message.
std::string differences(const nlohmann::json& a, const nlohmann::json& b) {
  const nlohmann::json fa = a.flatten(), fb = b.flatten();
  std::string out;
  auto add = [&](const std::string& key) {
    if (out.find(key) != std::string::npos) return;
    out += (out.empty() ? "" : ", ") + key;
  };
  for (auto it = fa.begin(); it != fa.end(); ++it)
    if (!fb.contains(it.key()) || fb[it.key()] != it.value()) add(it.key());
  for (auto it = fb.begin(); it != fb.end(); ++it)
    if (!fa.contains(it.key())) add(it.key());
  return out.empty() ? "(unreadable fingerprint)" : out;
}

void remove_dir(const std::string& dir) {
  std::error_code ec;
  fs::remove_all(dir, ec);
  if (ec) throw InputError(dir + ": cannot remove the partial results of an earlier run (" + ec.message() + ")");
}

}  // namespace

PartialRun::PartialRun(const std::string& output, const std::string& fingerprint, bool resume,
                       std::vector<std::string>* notes)
    : dir_(output + ".partial"), fingerprint_(fingerprint) {
  const auto note = [&](const std::string& s) {
    if (notes) notes->push_back(s);
  };
  std::error_code ec;
  const bool exists = fs::exists(dir_, ec);
  if (exists && !fs::is_directory(dir_, ec))
    throw InputError(dir_ +
                     ": exists and is not a directory (ess keeps the finished layers of a resumable run "
                     "there); move it away");
  if (exists && resume) {
    nlohmann::json have;
    bool readable = true;
    try {
      JsonLimits limits;
      limits.max_bytes = 1 << 20;
      have = read_json_file((fs::path(dir_) / kManifest).string(), limits);
    } catch (const Error&) {
      readable = false;
    }
    if (!readable || !have.is_object() || have.value("format", "") != kFormat) {
      note("resume: " + dir_ + " has no readable run record; starting over");
      remove_dir(dir_);
    } else {
      const nlohmann::json want = nlohmann::json::parse(fingerprint_);
      if (have["fingerprint"] != want)
        throw UsageError("cannot resume: " + dir_ +
                         " holds the finished layers of a run with other options or input (" +
                         differences(have["fingerprint"], want) +
                         " differ); repeat that run's command with --resume, or run without --resume to start over");
      for (const auto& e : fs::directory_iterator(dir_, ec)) {
        const int p = layer_position(e.path().filename().string());
        if (p >= 0) done_.push_back(p);
      }
      std::sort(done_.begin(), done_.end());
      note("resuming from " + dir_ + ": " + std::to_string(done_.size()) + " layer(s) already done");
    }
  } else if (exists) {
    note("replacing " + dir_ + " (the finished layers of an interrupted run; use --resume to continue it)");
    remove_dir(dir_);
  }
}

void PartialRun::create() {
  std::error_code ec;
  if (fs::is_directory(dir_, ec)) return;
  fs::create_directories(dir_, ec);
  if (ec) throw InputError(dir_ + ": cannot create the directory for the finished layers (" + ec.message() + ")");
  const nlohmann::json manifest = {
      {"format", kFormat}, {"version", 1}, {"fingerprint", nlohmann::json::parse(fingerprint_)}};
  write_file_atomically((fs::path(dir_) / kManifest).string(), manifest.dump(2) + "\n");
}

std::string PartialRun::layer_path(int position) const {
  char name[32];
  std::snprintf(name, sizeof name, "layer-%05d.h5", position);
  return (fs::path(dir_) / name).string();
}

bool PartialRun::finished(int position) const { return std::binary_search(done_.begin(), done_.end(), position); }

LayerResult PartialRun::load(int position) const {
  ResultsFile f = read_results(layer_path(position));
  if (f.layers.size() != 1) throw InputError(layer_path(position) + ": expected one layer");
  return std::move(f.layers[0]);
}

void PartialRun::save(int position, const LayerResult& result) {
  create();  // on the first layer: a run that fails before finishing one leaves nothing
  // Uncompressed: the final output compresses the layer again, and deflate is the slow part of
  // writing (float64 profiles at ≈ 50 MB/s).
  write_results(layer_path(position), {result}, Provenance{}, "", 0);
  ++saved_;
  if (const char* k = std::getenv("ESS_TEST_KILL_AFTER_LAYERS"); k && std::atoi(k) == saved_) std::raise(SIGKILL);
}

void PartialRun::finish() {
  std::error_code ec;
  fs::remove_all(dir_, ec);  // the output is in place; a leftover sidecar is replaced by the next run
}

}  // namespace ess
