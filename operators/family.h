// Operator families register themselves: each family's own .cpp ends with one line,
//
//   ESS_REGISTER_FAMILY(mamba, "Mamba (S6) selective SSM, per channel", MambaOperator::read,
//                       MambaOperator::example);
//
// and from then on the operator-file reader (operators/registry.h), `ess inspect --families` and
// the conformance tests (tests/test_operators.cpp) know it. See CONTRIBUTING.md.
#pragma once
#include <memory>
#include <string>
#include <vector>

#include "libess/hdf5.h"
#include "libess/operator.h"

namespace ess {

struct OperatorReadOptions {
  // Sequence length for families without a time axis of their own (s4d, ungated conv) when the
  // layer has no `seq_len` attribute (root attribute `seq_len` is used next; 0 = none).
  int default_seq_len = 0;
};

struct Family {
  using ReadFn = std::unique_ptr<LayerOperator> (*)(const h5::Object& group, const OperatorReadOptions& options);
  using ExampleFn = std::unique_ptr<LayerOperator> (*)(unsigned seed);
  std::string name;     // the `family` attribute of a layer group
  std::string summary;  // one line for humans
  // Builds the operator of one layer group of an operator file; InputError naming the group and
  // dataset when something is missing or wrong.
  ReadFn read = nullptr;
  // A small operator of the family with generic random inputs (a batch of 2, a few channels,
  // L = 16; the same for the same seed), for the conformance tests.
  ExampleFn example = nullptr;
};

// Every registered family, sorted by name.
std::vector<Family> families();
// The family registered under `name`, or nullptr.
const Family* find_family(const std::string& name);
// Names of the registered families, sorted.
std::vector<std::string> known_families();
// Adds a family (std::logic_error for a duplicate name or a missing function). Returns true.
bool register_family(Family family);

#define ESS_REGISTER_FAMILY(id, summary, read, example) \
  [[maybe_unused]] static const bool ess_family_registered_##id = ::ess::register_family({#id, summary, read, example})

}  // namespace ess
