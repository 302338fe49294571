// Operator files (format "ess-operators"): one group per layer under /layers, dispatched on the
// `family` attribute to the registered family's reader (operators/family.h).
#pragma once
#include <string>
#include <vector>

#include "libess/hdf5.h"
#include "libess/operator.h"
#include "operators/family.h"

namespace ess {

constexpr int kOperatorsFormatMajor = 1;

// One layer group; an unknown family is refused with the list of registered ones.
std::unique_ptr<LayerOperator> read_layer_operator(const h5::Object& layer_group,
                                                   const OperatorReadOptions& options = {});
// Reads every layer, sorted by layer_index. Throws InputError naming file, layer and dataset.
std::vector<OperatorLayer> read_operator_file(const std::string& path, const OperatorReadOptions& options = {});

}  // namespace ess
