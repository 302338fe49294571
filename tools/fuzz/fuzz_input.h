// Shared by the fuzz harnesses: the fuzzer's bytes as a file (most readers take a path), kept in
// memory (memfd, reached through /proc/self/fd), rewritten for every input.
#pragma once
#include <sys/mman.h>
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>

#include "libess/memory.h"

namespace ess::fuzz {

class MemoryFile {
 public:
  explicit MemoryFile(const char* name) : fd_(::memfd_create(name, 0)) {
    if (fd_ < 0) std::abort();
    path_ = "/proc/self/fd/" + std::to_string(fd_);
  }
  // Replaces the contents; returns the path to read them back by name.
  const std::string& write(const std::uint8_t* data, std::size_t size) {
    if (::ftruncate(fd_, 0) != 0 || ::pwrite(fd_, data, size, 0) != static_cast<ssize_t>(size)) std::abort();
    return path_;
  }
  const std::string& path() const { return path_; }

 private:
  int fd_;
  std::string path_;
};

// Inputs may declare any size; the memory guard must refuse big ones, so give it a small budget
// (256 MB, far below libFuzzer's -rss_limit_mb) instead of the machine's.
inline void limit_memory() { ess::set_memory_limit_override(256ULL << 20); }

}  // namespace ess::fuzz
