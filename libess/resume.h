// Resumable runs (`ess compute … --resume`, `ess analyze … --resume`; docs/reliability.md).
//
// While a run measures layers, every finished layer is also written to a sidecar directory beside
// the output, "RESULTS.h5.partial/" (created with the first finished layer): one results file per
// layer ("layer-00003.h5", its position in the run, written to a temporary name, fsynced and
// renamed, so a layer file is whole or absent) and "run.json", the run's fingerprint (the
// command's options and a digest of its input). The final output is assembled in memory and
// renamed into place at the end as before; the sidecar is then removed. A run killed at any moment
// (SIGINT, SIGTERM, kill -9) leaves at most the sidecar and a temporary file, never a partial
// output; the next run with resume = true loads the finished layers instead of measuring them.
#pragma once
#include <string>
#include <vector>

#include "libess/compute.h"

namespace ess {

class PartialRun {
 public:
  // `output`: the results file the run writes; `fingerprint`: a JSON document identifying the run
  // (compared as text). resume = true continues a sidecar with the same fingerprint (UsageError
  // naming the sidecar and the fingerprint entries that differ otherwise), or starts one when none
  // exists. resume = false replaces any sidecar. `notes` receives what was done for stderr ("resuming
  // …: 3 of the layers are done", "replacing …").
  PartialRun(const std::string& output, const std::string& fingerprint, bool resume, std::vector<std::string>* notes);
  PartialRun(const PartialRun&) = delete;
  PartialRun& operator=(const PartialRun&) = delete;

  const std::string& dir() const { return dir_; }
  // True when the layer at `position` was finished by an earlier run.
  bool finished(int position) const;
  // Its result as the earlier run measured it (InputError naming the file when it cannot be read).
  LayerResult load(int position) const;
  // Records a finished layer (atomically). With ESS_TEST_KILL_AFTER_LAYERS=k in the environment the
  // process kills itself (SIGKILL) right after the k-th layer this process saved: the tests'
  // deterministic interruption.
  void save(int position, const LayerResult& result);
  // The final output is in place: removes the sidecar.
  void finish();
  int loaded() const { return static_cast<int>(done_.size()); }

 private:
  std::string dir_, fingerprint_;
  std::vector<int> done_;  // positions finished by earlier runs (sorted)
  int saved_ = 0;
  std::string layer_path(int position) const;
  void create();  // the directory and run.json, once
};

}  // namespace ess
