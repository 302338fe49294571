// ess inspect FILE: describe an operator file, a results file, any HDF5 file, a safetensors
// file or a checkpoint directory.
#include <algorithm>
#include <filesystem>
#include <iostream>
#include <set>

#include "libess/error.h"
#include "libess/hdf5.h"
#include "libess/tensor.h"
#include "operators/family.h"
#include "tools/ess/cli.h"
#include "tools/ess/inspect_checkpoint.h"

namespace ess::cli {

namespace {

const char* dtype_name(h5::DType t) {
  switch (t) {
    case h5::DType::float32:
      return "float32";
    case h5::DType::float64:
      return "float64";
    case h5::DType::int32:
      return "int32";
    case h5::DType::int64:
      return "int64";
    case h5::DType::uint8:
      return "uint8";
    default:
      return "other";
  }
}

// Each group is described once: hard links can make a group its own descendant, and a few links
// per level would otherwise multiply the output without bound.
void describe(const h5::Object& obj, const std::string& indent, int depth, std::set<std::string>& seen) {
  for (const auto& a : obj.attr_names()) std::cout << indent << "@" << a << " = " << obj.attr_as_text(a) << "\n";
  for (const auto& child : obj.children()) {
    if (obj.is_group(child)) {
      const std::string id = obj.object_identity(child);
      const bool again = !id.empty() && !seen.insert(id).second;
      std::cout << indent << child << "/" << (again ? "  (already shown: a hard link)" : "") << "\n";
      if (depth < 8 && !again) describe(obj.group(child), indent + "  ", depth + 1, seen);
    } else {
      std::cout << indent << child << "  " << dtype_name(obj.dtype(child)) << " " << shape_string(obj.shape(child))
                << "\n";
    }
  }
}

// The registered operator families: name, channel kind, whether a realization (structured engine)
// exists, and a one-line summary.
int list_families() {
  Table table({{"family"}, {"kind"}, {"realization"}, {"summary"}});
  for (const auto& f : families()) {
    const auto example = f.example(0);
    table.add({f.name, to_string(example->channel_kind()), example->realization_dim() > 0 ? "yes" : "no", f.summary});
  }
  table.print(std::cout, false);
  return 0;
}

}  // namespace

int run_inspect(int argc, char** argv) {
  po::options_description opts("options");
  std::string input;
  bool list = false;
  const bool listing = std::any_of(argv + 1, argv + argc, [](const char* a) { return std::string(a) == "--families"; });
  opts.add_options()("file", po::value(&input),
                     "operator/results HDF5 file, .safetensors file or checkpoint directory")(
      "families", po::bool_switch(&list), "list the operator families an operator file may hold");
  po::variables_map vm;
  if (!parse(argc, argv,
             "ess inspect FILE | ess inspect --families\n\n"
             "Describes an ess operator or results file (layers, families, datasets and shapes,\n"
             "provenance), any other HDF5 file, a .safetensors file, or a Hugging Face checkpoint\n"
             "directory (config and tensors). --families lists the operator families this ess knows.",
             opts, listing ? std::vector<std::string>{} : std::vector<std::string>{"file"}, vm))
    return 0;
  if (list) return list_families();
  namespace fs = std::filesystem;
  std::error_code ec;
  if (fs::is_directory(input, ec)) return inspect_checkpoint_dir(input);
  if (input.size() > 12 && input.substr(input.size() - 12) == ".safetensors") return inspect_safetensors_file(input);
  h5::Object root = h5::open_file(input);
  std::string format = root.has_attr("format") ? root.attr_string("format") : "";
  if (format == "ess-operators")
    std::cout << input << ": ess operator file\n";
  else if (format == "ess-results")
    std::cout << input << ": ess results file\n";
  else
    std::cout << input << ": HDF5 file" << (format.empty() ? "" : " (format '" + format + "')") << "\n";
  std::set<std::string> seen{root.object_identity(".")};
  describe(root, "  ", 0, seen);
  return 0;
}

ESS_REGISTER_COMMAND("inspect", "describe a checkpoint, operator or results file", 70, run_inspect);

}  // namespace ess::cli
