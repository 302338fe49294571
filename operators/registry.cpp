#include "operators/registry.h"

#include <algorithm>
#include <limits>

#include "libess/error.h"
#include "operators/common.h"

namespace ess {

std::unique_ptr<LayerOperator> read_layer_operator(const h5::Object& g, const OperatorReadOptions& options) {
  if (!g.has_attr("family")) throw InputError(g.where() + ": layer has no 'family' attribute");
  const std::string family = g.attr_string("family");
  if (const Family* f = find_family(family)) return f->read(g, options);
  std::string known;
  for (const auto& name : known_families()) known += (known.empty() ? "" : ", ") + name;
  throw InputError(g.where() + ": unknown operator family '" + family + "' (known: " + known + ")");
}

std::vector<OperatorLayer> read_operator_file(const std::string& path, const OperatorReadOptions& options) {
  h5::Object root = h5::open_file(path);
  h5::check_format(root, "ess-operators", kOperatorsFormatMajor);
  OperatorReadOptions opts = options;
  if (opts.default_seq_len == 0) opts.default_seq_len = ops::read_int_attr(root, "seq_len", 0, 2, ops::kMaxSeqLen);
  if (!root.has("layers") || !root.is_group("layers")) throw InputError(path + ": no /layers group");
  const h5::Object layers = root.group("layers");
  ops::check_declared_memory(layers);  // before reading any data
  std::vector<OperatorLayer> out;
  for (const std::string& name : layers.children()) {
    if (!layers.is_group(name)) throw InputError(layers.where(name) + ": expected a layer group, found a dataset");
    const h5::Object g = layers.group(name);
    OperatorLayer layer;
    layer.name = name;
    if (!g.has_attr("layer_index")) throw InputError(g.where() + ": layer has no 'layer_index' attribute");
    layer.layer_index = ops::read_int_attr(g, "layer_index", 0, 0, std::numeric_limits<int>::max());
    layer.op = read_layer_operator(g, opts);
    if (layer.op->seq_len() < 2)
      throw InputError(g.where() + ": sequence length " + std::to_string(layer.op->seq_len()) +
                       " has no blocks (need L ≥ 2)");
    out.push_back(std::move(layer));
  }
  if (out.empty()) throw InputError(path + ": /layers holds no layer");
  std::stable_sort(out.begin(), out.end(),
                   [](const OperatorLayer& a, const OperatorLayer& b) { return a.layer_index < b.layer_index; });
  return out;
}

}  // namespace ess
