#pragma once
#include <string>

namespace ess {
// Throws InputError naming `path` when an output file cannot be created there: missing or
// unwritable directory, or the path is a directory / an unwritable file. Call before long work.
void check_output_path(const std::string& path);
}  // namespace ess
