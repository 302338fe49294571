#include "libess/output_path.h"

#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <fstream>

#include "libess/error.h"

namespace ess {

void check_output_path(const std::string& path) {
  namespace fs = std::filesystem;
  const fs::path p(path);
  const fs::path dir = p.has_parent_path() ? p.parent_path() : fs::path(".");
  std::error_code ec;
  if (!fs::is_directory(dir, ec))
    throw InputError(path + ": cannot write output: directory '" + dir.string() + "' does not exist");
  if (fs::is_directory(p, ec)) throw InputError(path + ": cannot write output: it is a directory");
  if (::access(dir.c_str(), W_OK) != 0)
    throw InputError(path + ": cannot write output: directory '" + dir.string() + "' is not writable");
  if (fs::exists(p, ec) && ::access(p.c_str(), W_OK) != 0)
    throw InputError(path + ": cannot write output: file exists and is not writable");
}

void write_file_atomically(const std::string& path, const std::string& bytes) {
  const std::string tmp = path + ".tmp" + std::to_string(::getpid());
  {
    std::ofstream out(tmp, std::ios::binary);
    out << bytes;
    out.flush();
    if (!out) {
      out.close();
      std::remove(tmp.c_str());
      throw InputError(path + ": cannot write the file");
    }
  }
  if (std::rename(tmp.c_str(), path.c_str()) != 0) {
    std::remove(tmp.c_str());
    throw InputError(path + ": cannot move the file into place");
  }
}

}  // namespace ess
