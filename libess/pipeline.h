// The measuring pipeline: EssOptions in, one LayerResult per layer out (returned, or handed to a
// ResultSink such as a ResultsWriter as soon as each layer is done). Engine choice, threads,
// progress and error context live here, so every front end (ess compute, ess analyze, ess bench,
// a notebook binding) measures layers the same way. The library never prints: progress goes
// through a callback.
#pragma once
#include <functional>
#include <string>
#include <vector>

#include "libess/compute.h"
#include "libess/operator.h"
#include "libess/results_io.h"

namespace ess {

// Where a measurement stands.
struct MeasureProgress {
  int layer = 0;   // position of the layer in the list being measured (0-based)
  int layers = 1;  // length of that list
  std::string name;
  long done = 0, total = 0;  // (batch, channel) pairs finished / in this layer
};
// Called from worker threads, one call at a time, after every channel of every layer.
using ProgressFn = std::function<void(const MeasureProgress&)>;

// Several cooperating processes dividing every layer's (batch, channel) items among themselves
// (`mpirun -n P ess compute|analyze`: tools/ess/mpi.cpp implements this over MPI; the library
// knows no MPI). Every process measures every layer in the same order and calls these
// collectively, once per layer.
class LayerPartition {
 public:
  virtual ~LayerPartition() = default;
  // This process's share of a layer with `items` = batch × channels items (compute.h LayerShare:
  // the range, and the exchange of layer_sigma_max).
  virtual LayerShare share(const std::string& layer, long items) const = 0;
  // Collects every share of `result` (arrays and students) into the process that writes the
  // results; returns true there (then `result` is whole), false on the others.
  virtual bool gather(LayerResult& result) const = 0;
};

class Pipeline {
 public:
  // Throws UsageError (naming the EssOptions field) when the options are invalid.
  explicit Pipeline(EssOptions options, ProgressFn progress = {});
  // Measure only this process's share of each layer; measure() then returns the whole result on
  // the process whose gather() returns true and a partial one elsewhere (nullptr: one process).
  void set_partition(const LayerPartition* partition) { partition_ = partition; }
  const EssOptions& options() const { return options_; }

  // One layer; `position` of `count` is what progress reports (a caller streaming layers from a
  // model knows where it is). Errors (UsageError, InputError, …) keep their type and get the
  // layer's name in front: "layer 'blocks.3.mixer': …". Refuses (InputError) before allocating
  // when the layer's measurement would not fit in memory (ess::check_memory: results plus one
  // worker's working set), and throws NumericalError (exit 4) when no block of the layer is usable
  // (every block non-finite or its SVD failed) instead of returning a result with nothing in it.
  LayerResult measure(const OperatorLayer& layer, int position = 0, int count = 1) const;

  // The memory check of every layer (check_layer_memory: shapes only, nothing allocated), so that
  // a layer that cannot fit is refused, named, before the first is measured. measure_all runs it.
  void check_memory(const std::vector<OperatorLayer>& layers) const;

  // Every layer in order (each checked against the memory limit first); results returned.
  std::vector<LayerResult> measure_all(const std::vector<OperatorLayer>& layers) const;
  // Every layer in order; each result handed to `sink` as soon as it is measured.
  void measure_all(const std::vector<OperatorLayer>& layers, ResultSink& sink) const;
  // The same, releasing each layer's operator (its tensors) once the layer is measured.
  void measure_all(std::vector<OperatorLayer>&& layers, ResultSink& sink) const;

 private:
  EssOptions options_;
  ProgressFn progress_;
  const LayerPartition* partition_ = nullptr;
};

}  // namespace ess
