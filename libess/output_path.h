// Output files: checked before long work, written under a temporary name and renamed into place
// (ess::write_file_atomically, libess/files.h).
#pragma once
#include <string>
#include <vector>

#include "libess/files.h"

namespace ess {
// Throws InputError naming `path` when an output file cannot be created there: missing or
// unwritable directory, the path is a directory, an unwritable file or something other than a
// regular file (a FIFO, a device), or it is the same file as one of `inputs` or as any file this
// process has opened as an input (ess::check_not_an_input: `x/../IN`, symlinks and hard links
// included). Also removes temporary files a killed run left for this output
// (ess::remove_stale_temp_files). Call before long work.
void check_output_path(const std::string& path, const std::vector<std::string>& inputs = {});
}  // namespace ess
