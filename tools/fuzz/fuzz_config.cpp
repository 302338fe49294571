// libFuzzer harness: config.json + model loading. The first byte picks one of the shipped tiny
// checkpoints (its weights are linked into a scratch directory), the rest is config.json; a model
// that loads is run on a short sequence.
#include <unistd.h>

#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "libess/error.h"
#include "models/model.h"
#include "tools/fuzz/fuzz_input.h"

namespace {

namespace fs = std::filesystem;

const std::vector<std::string>& fixtures() {
  static const std::vector<std::string> names = {"tiny-mamba", "tiny-falcon-mamba", "tiny-mamba2",
                                                 "tiny-llama", "tiny-mistral",      "tiny-gla"};
  return names;
}

// Scratch directories (one per fixture, holding links to its weight files), removed at exit.
struct Scratch {
  std::string root;
  std::vector<std::string> dirs;
  ~Scratch() {
    std::error_code ec;
    if (!root.empty()) fs::remove_all(root, ec);
  }
};

std::string checkpoint_dir(std::size_t k) {
  static Scratch scratch;
  auto& dirs = scratch.dirs;
  if (dirs.empty()) {
    char tmpl[] = "/tmp/ess_fuzz_config_XXXXXX";
    if (!::mkdtemp(tmpl)) std::abort();
    scratch.root = tmpl;
    for (const auto& name : fixtures()) {
      const fs::path dir = fs::path(tmpl) / name;
      fs::create_directories(dir);
      for (const auto& e : fs::directory_iterator(fs::path(ESS_SOURCE_DIR) / "data/checkpoints" / name))
        if (e.path().extension() == ".safetensors" || e.path().filename() == "model.safetensors.index.json")
          fs::create_symlink(e.path(), dir / e.path().filename());
      dirs.push_back(dir.string());
    }
  }
  return dirs[k % dirs.size()];
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size == 0) return 0;
  ess::fuzz::limit_memory();
  const std::string dir = checkpoint_dir(data[0]);
  {
    std::ofstream out(dir + "/config.json", std::ios::binary | std::ios::trunc);
    out.write(reinterpret_cast<const char*>(data + 1), static_cast<std::streamsize>(size - 1));
  }
  try {
    const auto model = ess::models::load_causal_lm(dir);
    if (model->num_layers() < 1 || model->vocab_size() < 1) __builtin_trap();
    const int V = model->vocab_size();
    const ess::models::Tokens tokens = {{0, 1 % V, 2 % V, 3 % V, 4 % V}};
    const auto run = model->run(tokens);
    if (run.argmax.size() != 1 || run.argmax[0].size() != 5) __builtin_trap();
  } catch (const ess::Error&) {
  }
  return 0;
}
