// The identity of a checkpoint, recorded as `source_sha256` in results files (docs/checkpoints.md).
#pragma once
#include <string>

namespace ess::models {

// Hex SHA-256 over the lines "<file name> <hex SHA-256 of the file>\n" of config.json and then
// every weight file (model.safetensors, or the shards in index order). Throws InputError naming
// the directory or file when the checkpoint is missing or unreadable.
std::string checkpoint_sha256(const std::string& dir);

}  // namespace ess::models
