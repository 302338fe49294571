// Shared by the fuzz harnesses: the fuzzer's bytes as a file (every reader takes a path), kept in
// memory on tmpfs (/dev/shm when it is there), rewritten for every input and removed at exit.
// (Not a memfd: HDF5 resolves the real path of a file it opens, and /proc/self/fd/N of a memfd
// has none.)
#pragma once
#include <fcntl.h>
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>

#include "libess/memory.h"

namespace ess::fuzz {

class MemoryFile {
 public:
  explicit MemoryFile(const char* name) {
    const char* dir = ::access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp";
    path_ = std::string(dir) + "/ess_fuzz_" + name + "_" + std::to_string(::getpid());
    fd_ = ::open(path_.c_str(), O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd_ < 0) std::abort();
  }
  ~MemoryFile() {
    ::close(fd_);
    ::unlink(path_.c_str());
  }
  // Replaces the contents; returns the path to read them back by name.
  const std::string& write(const std::uint8_t* data, std::size_t size) {
    if (::ftruncate(fd_, 0) != 0 || ::pwrite(fd_, data, size, 0) != static_cast<ssize_t>(size)) std::abort();
    return path_;
  }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
  int fd_ = -1;
};

// Inputs may declare any size; the memory guard must refuse big ones, so give it a small budget
// (256 MB, far below libFuzzer's -rss_limit_mb) instead of the machine's.
inline void limit_memory() { ess::set_memory_limit_override(256ULL << 20); }

}  // namespace ess::fuzz
