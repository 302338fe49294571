#include <filesystem>

#include "libess/error.h"
#include "models/models.h"

namespace ess::models {

std::vector<std::string> supported_architectures() {
  return {"MambaForCausalLM", "FalconMambaForCausalLM", "Mamba2ForCausalLM",
          "LlamaForCausalLM", "MistralForCausalLM",     "GLAForCausalLM"};
}

void expect_tensor_shape(const Weights& W, const std::string& name, const std::vector<std::int64_t>& shape) {
  if (!W.has(name))
    throw InputError(W.dir() + ": checkpoint has no tensor '" + name + "' (config.json implies shape " +
                     shape_string(shape) + ")");
  const auto& info = W.info(name);
  if (info.shape != shape)
    throw InputError(info.file + ": tensor '" + name + "' has shape " + shape_string(info.shape) +
                     ", but config.json implies " + shape_string(shape));
  if (info.dtype != "F32" && info.dtype != "F16" && info.dtype != "BF16" && info.dtype != "F64")
    throw InputError(info.file + ": tensor '" + name + "' has dtype " + info.dtype +
                     " (supported: F32, F16, BF16, F64)");
}

std::unique_ptr<CausalLM> load_causal_lm(const std::string& dir) {
  namespace fs = std::filesystem;
  std::error_code ec;
  if (!fs::is_directory(dir, ec)) throw InputError(dir + ": not a checkpoint directory");
  const std::string cfg_path = (fs::path(dir) / "config.json").string();
  if (!fs::exists(cfg_path, ec)) throw InputError(dir + ": no config.json in the checkpoint directory");
  const Config c(st::read_config_json(cfg_path), cfg_path);
  std::string arch;
  if (c.has("architectures") && c.json()["architectures"].is_array() && !c.json()["architectures"].empty() &&
      c.json()["architectures"][0].is_string())
    arch = c.json()["architectures"][0].get<std::string>();
  else if (c.has("model_type") && c.json()["model_type"].is_string()) {
    const std::string t = c.json()["model_type"].get<std::string>();
    arch = t == "mamba"          ? "MambaForCausalLM"
           : t == "falcon_mamba" ? "FalconMambaForCausalLM"
           : t == "mamba2"       ? "Mamba2ForCausalLM"
           : t == "llama"        ? "LlamaForCausalLM"
           : t == "mistral"      ? "MistralForCausalLM"
           : t == "gla"          ? "GLAForCausalLM"
                                 : t;
  }
  if (arch == "MambaForCausalLM" || arch == "MambaModel") return make_mamba(dir, c, false);
  if (arch == "FalconMambaForCausalLM") return make_mamba(dir, c, true);
  if (arch == "Mamba2ForCausalLM") return make_mamba2(dir, c);
  if (arch == "LlamaForCausalLM") return make_llama(dir, c, false);
  if (arch == "MistralForCausalLM") return make_llama(dir, c, true);
  if (arch == "GLAForCausalLM") return make_gla(dir, c);
  std::string list;
  for (const auto& a : supported_architectures()) list += (list.empty() ? "" : ", ") + a;
  throw InputError(cfg_path + ": architecture '" + (arch.empty() ? std::string("(none given)") : arch) +
                   "' is not supported (supported: " + list +
                   "); for other models export operators with "
                   "tools/python/ess_writer.py and use `ess compute`");
}

}  // namespace ess::models
