// Operator files (format "ess-operators"): one group per layer under /layers, dispatched on the
// `family` attribute to the family's reader.
#pragma once
#include <string>
#include <vector>

#include "libess/hdf5.h"
#include "libess/operator.h"

namespace ess {

constexpr int kOperatorsFormatMajor = 1;

struct OperatorReadOptions {
  // Sequence length for families without a time axis of their own (s4d, ungated conv) when the
  // layer has no `seq_len` attribute (root attribute `seq_len` is used next; 0 = none).
  int default_seq_len = 0;
};

std::vector<std::string> known_families();
std::unique_ptr<LayerOperator> read_layer_operator(const h5::Object& layer_group,
                                                   const OperatorReadOptions& options = {});
// Reads every layer, sorted by layer_index. Throws InputError naming file, layer and dataset.
std::vector<OperatorLayer> read_operator_file(const std::string& path, const OperatorReadOptions& options = {});

}  // namespace ess
