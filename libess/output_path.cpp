#include "libess/output_path.h"

#include <unistd.h>

#include <filesystem>

#include "libess/error.h"
#include "libess/files.h"

namespace ess {

void check_output_path(const std::string& path, const std::vector<std::string>& inputs) {
  namespace fs = std::filesystem;
  const fs::path p(path);
  const fs::path dir = p.has_parent_path() ? p.parent_path() : fs::path(".");
  std::error_code ec;
  if (!fs::is_directory(dir, ec))
    throw InputError(path + ": cannot write output: directory '" + dir.string() + "' does not exist");
  if (fs::is_directory(p, ec)) throw InputError(path + ": cannot write output: it is a directory");
  if (::access(dir.c_str(), W_OK) != 0)
    throw InputError(path + ": cannot write output: directory '" + dir.string() + "' is not writable");
  if (fs::exists(p, ec)) {
    if (!fs::is_regular_file(p, ec))
      throw InputError(path + ": cannot write output: it exists and is not a regular file");
    if (::access(p.c_str(), W_OK) != 0)
      throw InputError(path + ": cannot write output: file exists and is not writable");
  }
  check_not_an_input(path, inputs);
  remove_stale_temp_files(path);
}

}  // namespace ess
