#pragma once
#include <string>
namespace ess::cli {
// Lists config.json fields, the architecture's declared weights (present / off / missing /
// misshapen) and every tensor of a Hugging Face checkpoint directory.
int inspect_checkpoint_dir(const std::string& dir);
// Lists the tensors of one .safetensors file.
int inspect_safetensors_file(const std::string& path);
}  // namespace ess::cli
