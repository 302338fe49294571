#include "models/fingerprint.h"

#include <filesystem>

#include "libess/sha256.h"
#include "models/safetensors.h"

namespace ess::models {

std::string checkpoint_sha256(const std::string& dir) {
  namespace fs = std::filesystem;
  std::vector<std::string> files = {(fs::path(dir) / "config.json").string()};
  for (const auto& f : st::Checkpoint(dir).files()) files.push_back(f);
  std::string lines;
  for (const auto& f : files) lines += fs::path(f).filename().string() + " " + sha256_file(f) + "\n";
  return sha256_hex(lines);
}

}  // namespace ess::models
