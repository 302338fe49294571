#include "libess/pipeline.h"

#include <cstdint>
#include <stdexcept>
#include <utility>

#include "libess/error.h"

namespace ess {

namespace {

// NumericalError unless at least one block of the layer is usable: status ok, or uncertified (the
// lanczos engine's values with their error bounds, a tolerance-ESS lower bound and an entropy
// interval; a layer of them only is a result, not a failure).
void check_usable(const LayerResult& R) {
  std::size_t non_finite = 0, not_converged = 0;
  for (std::uint8_t s : R.status) {
    if (s == block_ok || s == block_uncertified) return;
    non_finite += s == block_non_finite;
    not_converged += s == block_not_converged;
  }
  if (R.status.empty()) return;
  throw NumericalError("no usable block: " + std::to_string(non_finite) + " of " + std::to_string(R.status.size()) +
                       " block(s) have non-finite singular values (the operator overflows or holds NaN/infinity) and " +
                       std::to_string(not_converged) + " did not converge (the SVD failed)");
}

}  // namespace

Pipeline::Pipeline(EssOptions options, ProgressFn progress)
    : options_(std::move(options)), progress_(std::move(progress)) {
  options_.validate();
}

LayerResult Pipeline::measure(const OperatorLayer& layer, int position, int count) const {
  ChannelProgressFn channel_progress;
  if (progress_) {
    channel_progress = [&](long done, long total) {
      progress_(MeasureProgress{position, count, layer.name, done, total});
    };
  }
  try {
    if (!layer.op) throw std::invalid_argument("no operator");
    const LayerShare share =
        partition_ ? partition_->share(layer.name, static_cast<long>(layer.op->batch()) * layer.op->channels())
                   : LayerShare{};
    LayerResult R = compute_layer(layer, options_, channel_progress, share);
    if (!partition_) check_usable(R);
    if (options_.students.applies_to(R.family))  // sparse students (libess/students.h)
      R.students = measure_students(*layer.op, R.indices, options_.students,
                                    {R.tol, R.tol_mode, R.sweep_rtol, R.layer_sigma_max}, options_.threads, share.begin,
                                    share.end);
    if (partition_ && partition_->gather(R)) check_usable(R);  // the whole layer, on the writer
    return R;
  } catch (Error& e) {
    e.prepend("layer '" + layer.name + "': ");
    throw;
  } catch (const std::invalid_argument& e) {
    throw std::invalid_argument("layer '" + layer.name + "': " + e.what());
  }
}

void Pipeline::check_memory(const std::vector<OperatorLayer>& layers) const {
  for (const auto& layer : layers) {
    if (!layer.op) continue;
    try {
      check_layer_memory(*layer.op, options_);
    } catch (Error& e) {
      e.prepend("layer '" + layer.name + "': ");
      throw;
    }
  }
}

std::vector<LayerResult> Pipeline::measure_all(const std::vector<OperatorLayer>& layers) const {
  check_memory(layers);
  std::vector<LayerResult> out;
  const int n = static_cast<int>(layers.size());
  for (int k = 0; k < n; ++k) out.push_back(measure(layers[k], k, n));
  return out;
}

void Pipeline::measure_all(const std::vector<OperatorLayer>& layers, ResultSink& sink) const {
  check_memory(layers);
  const int n = static_cast<int>(layers.size());
  for (int k = 0; k < n; ++k) sink.add(measure(layers[k], k, n));
}

void Pipeline::measure_all(std::vector<OperatorLayer>&& layers, ResultSink& sink) const {
  check_memory(layers);
  const int n = static_cast<int>(layers.size());
  for (int k = 0; k < n; ++k) {
    LayerResult R = measure(layers[k], k, n);
    layers[k].op.reset();  // free the operator's tensors before the next layer
    sink.add(std::move(R));
  }
}

}  // namespace ess
