// Output files: checked before long work, written under a temporary name and renamed into place.
#pragma once
#include <string>

namespace ess {
// Throws InputError naming `path` when an output file cannot be created there: missing or
// unwritable directory, or the path is a directory / an unwritable file. Call before long work.
void check_output_path(const std::string& path);
// Writes `bytes` to a temporary file beside `path` and renames it into place; on failure nothing
// is left behind (an existing file at `path` stays untouched). Throws InputError naming `path`.
void write_file_atomically(const std::string& path, const std::string& bytes);
}  // namespace ess
