#include "tools/ess/inspect_checkpoint.h"

#include <filesystem>
#include <iostream>

#include "libess/error.h"
#include "libess/tensor.h"
#include "models/safetensors.h"
#include "models/text_input.h"
#include "tools/ess/cli.h"

namespace ess::cli {

int inspect_safetensors_file(const std::string& path) {
  st::SafetensorsFile f(path);
  const auto names = f.names();
  std::cout << path << ": safetensors file, " << names.size() << " tensor(s)\n";
  for (const auto& [k, v] : f.metadata()) std::cout << "  @" << k << " = " << v << "\n";
  Table table({{"tensor"}, {"dtype"}, {"shape"}});
  for (const auto& n : names) {
    const auto& info = f.info(n);
    table.add({n, info.dtype, shape_string(info.shape)});
  }
  table.print(std::cout, false, "  ");
  return 0;
}

int inspect_checkpoint_dir(const std::string& dir) {
  namespace fs = std::filesystem;
  const std::string config_path = (fs::path(dir) / "config.json").string();
  std::cout << dir << ": checkpoint directory\n";
  if (fs::exists(config_path)) {
    auto config = st::read_config_json(config_path);
    std::cout << "  config.json:\n";
    for (auto it = config.begin(); it != config.end(); ++it) {
      std::string v = it.value().dump();
      if (v.size() > 100) v = v.substr(0, 97) + "...";
      std::cout << "    " << it.key() << " = " << v << "\n";
    }
  } else {
    std::cout << "  (no config.json)\n";
  }
  if (fs::exists(fs::path(dir) / "tokenizer.json")) {  // what `analyze --text` would use
    try {
      const auto tok = load_checkpoint_tokenizer(dir);
      std::cout << "  tokenizer.json: " << tok.summary() << "\n    " << special_token_rules(dir, tok).description
                << "\n";
    } catch (const InputError& e) {
      std::cout << "  tokenizer.json: not usable for --text: " << e.what() << "\n";
    }
  } else {
    std::cout << "  (no tokenizer.json: --text is not available)\n";
  }
  st::Checkpoint ckpt(dir);
  const auto names = ckpt.names();
  std::cout << "  " << names.size() << " tensor(s):\n";
  Table table({{"tensor"}, {"dtype"}, {"shape"}, {"file"}});
  for (const auto& n : names) {
    const auto& info = ckpt.info(n);
    table.add({n, info.dtype, shape_string(info.shape), fs::path(info.file).filename().string()});
  }
  table.print(std::cout, false, "    ");
  return 0;
}

}  // namespace ess::cli
