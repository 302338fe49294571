#include "libess/memory.h"

#include <sys/mman.h>
#include <sys/resource.h>

#include <algorithm>
#include <atomic>
#include <cctype>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <sstream>
#include <vector>

#include "libess/error.h"

namespace ess {

namespace {

std::atomic<std::uint64_t> g_override{0};

// cgroup "no limit" values: v2 writes "max", v1 a number near 2^63.
constexpr std::uint64_t kCgroupUnlimited = 1ULL << 62;

bool read_first_line(const std::string& path, std::string& line) {
  std::ifstream in(path);
  return in && std::getline(in, line);
}

bool parse_u64(const std::string& s, std::uint64_t& out) {
  std::size_t k = 0;
  while (k < s.size() && std::isspace(static_cast<unsigned char>(s[k]))) ++k;
  if (k == s.size() || !std::isdigit(static_cast<unsigned char>(s[k]))) return false;
  std::uint64_t v = 0;
  for (; k < s.size() && std::isdigit(static_cast<unsigned char>(s[k])); ++k) {
    const std::uint64_t d = static_cast<std::uint64_t>(s[k] - '0');
    if (v > (kUnlimitedMemory - d) / 10) return false;
    v = v * 10 + d;
  }
  out = v;
  return true;
}

bool read_u64(const std::string& path, std::uint64_t& out) {
  std::string line;
  return read_first_line(path, line) && parse_u64(line, out);
}

// "key value [unit]" files (/proc/meminfo, /proc/self/status, memory.stat): the value of `key`.
bool read_keyed(const std::string& path, const std::string& key, std::uint64_t& out) {
  std::ifstream in(path);
  std::string line;
  while (in && std::getline(in, line)) {
    if (line.compare(0, key.size(), key) != 0) continue;
    std::uint64_t v = 0;
    if (!parse_u64(line.substr(key.size()), v)) return false;
    const bool kb = line.find("kB") != std::string::npos;
    out = kb ? v * 1024 : v;
    return true;
  }
  return false;
}

void consider(MemoryLimit& best, std::uint64_t bytes, const std::string& source) {
  if (bytes < best.bytes) best = {bytes, source};
}

std::uint64_t headroom(std::uint64_t limit, std::uint64_t used) { return limit > used ? limit - used : 0; }

// The cgroup paths of this process: v2 ("0::/path") and the v1 memory controller's.
void self_cgroups(const std::string& file, std::string& v2, std::string& v1_memory) {
  std::ifstream in(file);
  std::string line;
  while (in && std::getline(in, line)) {
    const auto a = line.find(':');
    const auto b = a == std::string::npos ? std::string::npos : line.find(':', a + 1);
    if (b == std::string::npos) continue;
    const std::string controllers = line.substr(a + 1, b - a - 1), path = line.substr(b + 1);
    if (line.compare(0, a, "0") == 0 && controllers.empty()) {
      v2 = path;
    } else {
      std::stringstream list(controllers);
      std::string c;
      while (std::getline(list, c, ','))
        if (c == "memory") v1_memory = path;
    }
  }
}

// The cgroup path and each of its ancestors, innermost first, ending with "" (the mount's root).
std::vector<std::string> with_ancestors(std::string path) {
  std::vector<std::string> out;
  while (!path.empty() && path.back() == '/') path.pop_back();
  for (;;) {
    out.push_back(path);
    if (path.empty()) break;
    const auto slash = path.rfind('/');
    path = slash == std::string::npos ? "" : path.substr(0, slash);
  }
  return out;
}

void cgroup_v2(const MemorySources& s, const std::string& path, MemoryLimit& best) {
  for (const std::string& p : with_ancestors(path)) {
    const std::string dir = s.cgroup_root + p;
    std::string max;
    std::uint64_t limit = 0, current = 0, inactive = 0;
    if (!read_first_line(dir + "/memory.max", max) || !parse_u64(max, limit) || limit >= kCgroupUnlimited) continue;
    read_u64(dir + "/memory.current", current);
    read_keyed(dir + "/memory.stat", "inactive_file ", inactive);
    consider(best, headroom(limit, current - std::min(current, inactive)),
             "cgroup memory.max " + format_bytes(limit) + " of " + (p.empty() ? "/" : p));
  }
}

void cgroup_v1(const MemorySources& s, const std::string& path, MemoryLimit& best) {
  for (const std::string& p : with_ancestors(path)) {
    const std::string dir = s.cgroup_root + "/memory" + p;
    std::uint64_t limit = 0, usage = 0, inactive = 0;
    if (!read_u64(dir + "/memory.limit_in_bytes", limit) || limit >= kCgroupUnlimited) continue;
    read_u64(dir + "/memory.usage_in_bytes", usage);
    read_keyed(dir + "/memory.stat", "total_inactive_file ", inactive);
    consider(best, headroom(limit, usage - std::min(usage, inactive)),
             "cgroup memory.limit_in_bytes " + format_bytes(limit) + " of " + (p.empty() ? "/" : p));
  }
}

void rlimit(const MemorySources& s, int resource, const char* name, const char* status_key, MemoryLimit& best) {
  struct rlimit rl {};
  if (::getrlimit(resource, &rl) != 0 || rl.rlim_cur == RLIM_INFINITY) return;
  std::uint64_t used = 0;
  read_keyed(s.self_status, status_key, used);
  consider(best, headroom(rl.rlim_cur, used), std::string(name) + " " + format_bytes(rl.rlim_cur));
}

}  // namespace

MemoryLimit memory_limit(const MemorySources& s) {
  MemoryLimit best;
  std::uint64_t available = 0;
  if (read_keyed(s.meminfo, "MemAvailable:", available)) consider(best, available, "MemAvailable");
  std::string v2, v1;
  self_cgroups(s.self_cgroup, v2, v1);
  if (!v2.empty()) cgroup_v2(s, v2, best);
  if (!v1.empty()) cgroup_v1(s, v1, best);
  if (s.use_rlimits) {
    rlimit(s, RLIMIT_AS, "RLIMIT_AS", "VmSize:", best);
    rlimit(s, RLIMIT_DATA, "RLIMIT_DATA", "VmData:", best);
  }
  return best;
}

MemoryLimit memory_limit() {
  const std::uint64_t forced = g_override.load();
  if (forced > 0) return {forced, "--max-memory"};
  return memory_limit(MemorySources{});
}

std::uint64_t memory_limit_bytes() { return memory_limit().bytes; }

std::uint64_t available_memory_bytes() {
  const std::uint64_t limit = memory_limit_bytes();
  return limit == kUnlimitedMemory ? 0 : limit;
}

void set_memory_limit_override(std::uint64_t bytes) { g_override.store(bytes); }
std::uint64_t memory_limit_override() { return g_override.load(); }

void check_memory(std::uint64_t bytes, const std::string& what, const std::string& hint) {
  check_memory(bytes, what, hint.empty() ? std::vector<MessagePart>{} : std::vector<MessagePart>{hint});
}

void check_memory(std::uint64_t bytes, const std::string& what, const std::vector<MessagePart>& hint) {
  const MemoryLimit limit = memory_limit();
  // kUnlimitedMemory stands for a size that overflowed: refused even when no limit is known.
  if (bytes <= limit.bytes && bytes != kUnlimitedMemory) return;
  const bool forced = limit.source == "--max-memory";
  std::vector<MessagePart> m = {what + " needs " +
                                (bytes == kUnlimitedMemory ? "more than 2^64 bytes" : format_bytes(bytes)) +
                                " but this process may use at most " + format_bytes(limit.bytes) + " ("};
  m.emplace_back(forced ? MessagePart(Option{"max_memory"}) : MessagePart(limit.source));
  m.emplace_back(")");
  if (!hint.empty()) {
    m.emplace_back("; ");
    m.insert(m.end(), hint.begin(), hint.end());
  }
  if (forced) {
    m.emplace_back("; raise ");
    m.emplace_back(Option{"max_memory"});
    m.emplace_back(" if the machine has more");
  } else {
    m.emplace_back("; ");
    m.emplace_back(Option{"max_memory"});
    m.emplace_back(" overrides the limit");
  }
  throw InputError(m);
}

std::string format_bytes(std::uint64_t bytes) {
  if (bytes == kUnlimitedMemory) return "unlimited";
  if (bytes < 1000) return std::to_string(bytes) + " bytes";
  static const char* units[] = {"kB", "MB", "GB", "TB", "PB", "EB"};
  double v = static_cast<double>(bytes);
  int u = -1;
  while (v >= 1000 && u < 5) {
    v /= 1000;
    ++u;
  }
  char buf[32];
  std::snprintf(buf, sizeof buf, v >= 100 ? "%.0f %s" : v >= 10 ? "%.1f %s" : "%.2f %s", v, units[u]);
  return buf;
}

std::uint64_t parse_memory_size(const std::string& text, const std::string& option) {
  const auto bad = [&] {
    return UsageError(option + ": '" + text +
                      "' is not a memory size (examples: 8G, 512MiB, 1.5GB, 1000000; k/M/G/T are powers of 1024)");
  };
  std::size_t k = 0;
  while (k < text.size() && (std::isdigit(static_cast<unsigned char>(text[k])) || text[k] == '.')) ++k;
  const std::string number = text.substr(0, k);
  if (number.empty() || number.find_first_of("0123456789") == std::string::npos ||
      number.find('.') != number.rfind('.'))
    throw bad();
  std::string unit;
  for (std::size_t j = k; j < text.size(); ++j)
    if (!std::isspace(static_cast<unsigned char>(text[j])))
      unit += static_cast<char>(std::tolower(static_cast<unsigned char>(text[j])));
  long double scale = 1;
  if (!unit.empty() && unit != "b") {
    static const std::string prefixes = "kmgt";
    const auto p = prefixes.find(unit[0]);
    if (p == std::string::npos) throw bad();
    const std::string rest = unit.substr(1);
    const long double base = rest == "b" ? 1000.0L : (rest.empty() || rest == "ib") ? 1024.0L : 0.0L;
    if (base == 0) throw bad();
    scale = std::pow(base, static_cast<long double>(p + 1));
  }
  const long double value = std::strtold(number.c_str(), nullptr) * scale;
  if (!(value >= 1) || value >= 18446744073709551615.0L) throw bad();
  return static_cast<std::uint64_t>(value);
}

void advise_huge_pages(void* data, std::size_t bytes) {
#ifdef MADV_HUGEPAGE
  constexpr std::uintptr_t kHuge = std::uintptr_t{1} << 21;
  const std::uintptr_t begin = (reinterpret_cast<std::uintptr_t>(data) + kHuge - 1) & ~(kHuge - 1);
  const std::uintptr_t end = (reinterpret_cast<std::uintptr_t>(data) + bytes) & ~(kHuge - 1);
  if (data != nullptr && end > begin) madvise(reinterpret_cast<void*>(begin), end - begin, MADV_HUGEPAGE);
#else
  (void)data;
  (void)bytes;
#endif
}

}  // namespace ess
