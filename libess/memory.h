// How much memory this process may still use, and the check every allocation sized by an input
// goes through before it happens (docs/reliability.md, "Memory guard").
//
// The limit is the smallest of
//   - MemAvailable (/proc/meminfo),
//   - the cgroup limit minus what the cgroup already uses (v2: memory.max − memory.current +
//     inactive file cache, over the process's cgroup and its ancestors; v1: memory.limit_in_bytes −
//     memory.usage_in_bytes + total_inactive_file),
//   - RLIMIT_AS minus the address space already mapped, and RLIMIT_DATA minus the data segment,
// unless an override is set (`--max-memory`), which replaces all of them.
#pragma once
#include <cstddef>
#include <cstdint>
#include <limits>
#include <string>
#include <vector>

#include "libess/error.h"

namespace ess {

constexpr std::uint64_t kUnlimitedMemory = std::numeric_limits<std::uint64_t>::max();

struct MemoryLimit {
  std::uint64_t bytes = kUnlimitedMemory;  // kUnlimitedMemory when nothing could be read
  std::string source;                      // what set it: "MemAvailable", "cgroup v2 memory.max", "--max-memory", …
};

// Where the limit is read from; tests point these at fake files.
struct MemorySources {
  std::string meminfo = "/proc/meminfo";
  std::string self_cgroup = "/proc/self/cgroup";
  std::string cgroup_root = "/sys/fs/cgroup";  // v2 unified mount; v1 controllers below it (memory/)
  std::string self_status = "/proc/self/status";
  bool use_rlimits = true;
};

// The current limit (reads the files each time: usage changes as the process runs).
MemoryLimit memory_limit();
MemoryLimit memory_limit(const MemorySources& sources);  // without the override
// memory_limit().bytes.
std::uint64_t memory_limit_bytes();
// Bytes this process may still use (memory_limit_bytes()), or 0 when nothing could be read: for
// work sized to fit (threads, tiles), where "unknown" means "do not shrink".
std::uint64_t available_memory_bytes();

// Process-wide override (the CLI's --max-memory); 0 removes it. Thread-safe.
void set_memory_limit_override(std::uint64_t bytes);
std::uint64_t memory_limit_override();

// Throws InputError "<what> needs <bytes> but this process may use at most <limit> (<source>);
// <hint>; --max-memory overrides the limit" when bytes exceed the limit. `hint` names the options
// that shrink the work ("use --indices to measure fewer blocks"); may be empty.
void check_memory(std::uint64_t bytes, const std::string& what, const std::string& hint = "");
// The same with a hint naming library options as Option parts (libess/error.h: the CLI prints
// them as its flags); the message names the override as Option{"max_memory"}.
void check_memory(std::uint64_t bytes, const std::string& what, const std::vector<MessagePart>& hint);

// Asks the kernel to back [data, data + bytes) with transparent huge pages (madvise
// MADV_HUGEPAGE; a no-op where unsupported). For large buffers about to be written for the first
// time: one fault per 2 MB instead of per 4 kB page, and fewer TLB misses when they are read.
// Call before the first write; only the whole 2 MB pages inside the range are advised.
void advise_huge_pages(void* data, std::size_t bytes);

// "28.8 GB" (decimal units, 3 significant digits).
std::string format_bytes(std::uint64_t bytes);
// Parses a size: a number with an optional unit, k/M/G/T or KiB/MiB/GiB/TiB (powers of 1024) or
// kB/MB/GB/TB (powers of 1000), B or none for bytes ("8G", "512MiB", "1.5GB", "1000000").
// Throws UsageError naming `option` on anything else, zero, or sizes beyond 2^64.
std::uint64_t parse_memory_size(const std::string& text, const std::string& option = "--max-memory");

}  // namespace ess
