#include "libess/files.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <mutex>

#include "libess/error.h"

namespace ess {

namespace fs = std::filesystem;

namespace {

std::string role(const std::string& what) { return what.empty() ? "" : what + " "; }

const char* kind_of(mode_t mode) {
  if (S_ISDIR(mode)) return "a directory";
  if (S_ISFIFO(mode)) return "a FIFO";
  if (S_ISCHR(mode)) return "a character device";
  if (S_ISBLK(mode)) return "a block device";
  if (S_ISSOCK(mode)) return "a socket";
  return "not a plain file";
}

// Inputs opened so far (device, inode, path as given), for check_not_an_input.
struct OpenedInput {
  dev_t dev;
  ino_t ino;
  std::string path;
};
std::mutex g_inputs_mutex;
std::vector<OpenedInput> g_inputs;
std::atomic<bool> g_track_inputs{false};

void remember_input(const struct stat& st, const std::string& path) {
  if (!g_track_inputs.load()) return;
  std::lock_guard<std::mutex> lock(g_inputs_mutex);
  for (const auto& in : g_inputs)
    if (in.dev == st.st_dev && in.ino == st.st_ino) return;
  g_inputs.push_back({st.st_dev, st.st_ino, path});
}

// Opens and checks; the caller owns the descriptor.
int open_regular(const std::string& path, const std::string& what, struct stat& st) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_NONBLOCK | O_CLOEXEC);
  if (fd < 0) {
    const int e = errno;
    if (e == ENOENT) throw InputError(path + ": no such file");
    throw InputError(path + ": cannot open " + role(what) + "(" + std::strerror(e) + ")");
  }
  if (::fstat(fd, &st) != 0) {
    const int e = errno;
    ::close(fd);
    throw InputError(path + ": cannot read " + role(what) + "(" + std::strerror(e) + ")");
  }
  if (!S_ISREG(st.st_mode)) {
    ::close(fd);
    throw InputError(path + ": " + role(what) + "is not a regular file (it is " + kind_of(st.st_mode) + ")");
  }
  remember_input(st, path);
  return fd;
}

// --- temporary files unlinked by the signal handler -------------------------------------------

constexpr int kSlots = 16;
constexpr std::size_t kPathMax = 4096;
struct TempSlot {
  std::atomic<int> state{0};  // 0 free, 1 being filled, 2 active
  char path[kPathMax];
};
TempSlot g_temp_slots[kSlots];

void unlink_temps() noexcept {
  for (auto& slot : g_temp_slots)
    if (slot.state.load() == 2) ::unlink(slot.path);
}

extern "C" void ess_unlink_temps_and_reraise(int sig) {
  const int saved = errno;
  unlink_temps();
  ::signal(sig, SIG_DFL);
  ::raise(sig);  // delivered with the default action once this handler returns
  errno = saved;
}

}  // namespace

InputFile::InputFile(const std::string& path, const std::string& what) : path_(path) {
  struct stat st {};
  fd_ = open_regular(path, what, st);
  size_ = static_cast<std::uint64_t>(st.st_size);
}

InputFile::~InputFile() {
  if (fd_ >= 0) ::close(fd_);
}

InputFile::InputFile(InputFile&& o) noexcept : path_(std::move(o.path_)), fd_(o.fd_), size_(o.size_) { o.fd_ = -1; }

std::size_t InputFile::read_some(char* buffer, std::size_t n) const {
  std::size_t got = 0;
  while (got < n) {
    const ssize_t r = ::read(fd_, buffer + got, n - got);
    if (r < 0 && (errno == EINTR || errno == EAGAIN)) continue;
    if (r < 0) throw InputError(path_ + ": read error (" + std::strerror(errno) + ")");
    if (r == 0) break;
    got += static_cast<std::size_t>(r);
  }
  return got;
}

std::string InputFile::read_all(std::uint64_t max_bytes) const {
  if (size_ > max_bytes)
    throw InputError(path_ + ": file is " + std::to_string(size_) + " bytes, more than the " +
                     std::to_string(max_bytes) + " accepted for this kind of file");
  std::string out(static_cast<std::size_t>(size_), '\0');
  out.resize(read_some(out.data(), out.size()));
  // The file may have grown since fstat; whatever follows is not read (and is refused if it
  // would break the limit).
  char extra;
  if (out.size() == size_ && read_some(&extra, 1) == 1 && size_ + 1 > max_bytes)
    throw InputError(path_ + ": file grew beyond the " + std::to_string(max_bytes) + " bytes accepted while read");
  return out;
}

std::string read_input_file(const std::string& path, std::uint64_t max_bytes, const std::string& what) {
  return InputFile(path, what).read_all(max_bytes);
}

void check_input_file(const std::string& path, const std::string& what) {
  struct stat st {};
  ::close(open_regular(path, what, st));
}

void set_input_tracking(bool on) {
  g_track_inputs.store(on);
  if (!on) {
    std::lock_guard<std::mutex> lock(g_inputs_mutex);
    g_inputs.clear();
  }
}

bool is_input_file(const std::string& path) {
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) return false;
  std::lock_guard<std::mutex> lock(g_inputs_mutex);
  for (const auto& in : g_inputs)
    if (in.dev == st.st_dev && in.ino == st.st_ino) return true;
  return false;
}

void check_not_an_input(const std::string& output, const std::vector<std::string>& inputs) {
  const auto refuse = [&](const std::string& input) {
    throw InputError(output + ": refusing to write the output over the input " + input +
                     " (they are the same file); choose another output name");
  };
  struct stat out {};
  const bool exists = ::stat(output.c_str(), &out) == 0;
  for (const auto& input : inputs) {
    if (input.empty()) continue;
    struct stat in {};
    if (exists && ::stat(input.c_str(), &in) == 0) {
      if (in.st_dev == out.st_dev && in.st_ino == out.st_ino) refuse(input);
    } else {
      std::error_code e1, e2;
      const fs::path a = fs::weakly_canonical(fs::absolute(output), e1);
      const fs::path b = fs::weakly_canonical(fs::absolute(input), e2);
      if (!e1 && !e2 && a == b) refuse(input);
    }
  }
  if (!exists) return;
  std::lock_guard<std::mutex> lock(g_inputs_mutex);
  for (const auto& in : g_inputs)
    if (in.dev == out.st_dev && in.ino == out.st_ino) refuse(in.path);
}

std::string temp_path_for(const std::string& path) {
  const fs::path p(path);
  const fs::path dir = p.has_parent_path() ? p.parent_path() : fs::path(".");
  return (dir / ("." + p.filename().string() + ".tmp" + std::to_string(::getpid()))).string();
}

int remove_stale_temp_files(const std::string& path) {
  const fs::path p(path);
  const fs::path dir = p.has_parent_path() ? p.parent_path() : fs::path(".");
  const std::string prefix = "." + p.filename().string() + ".tmp";
  int removed = 0;
  std::error_code ec;
  for (fs::directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec)) {
    const std::string name = it->path().filename().string();
    if (name.size() <= prefix.size() || name.compare(0, prefix.size(), prefix) != 0) continue;
    const std::string digits = name.substr(prefix.size());
    if (digits.size() > 9 || digits.find_first_not_of("0123456789") != std::string::npos) continue;
    const pid_t pid = static_cast<pid_t>(std::stol(digits));
    if (pid <= 0 || pid == ::getpid()) continue;
    if (::kill(pid, 0) == 0 || errno != ESRCH) continue;  // alive (or not ours to judge)
    std::error_code rc;
    if (!fs::is_regular_file(it->symlink_status(rc))) continue;
    if (fs::remove(it->path(), rc)) ++removed;
  }
  return removed;
}

void register_temp_file(const std::string& path) {
  std::error_code ec;
  const std::string abs = fs::absolute(path, ec).string();
  if (ec || abs.size() >= kPathMax) return;
  for (auto& slot : g_temp_slots) {
    int expected = 0;
    if (!slot.state.compare_exchange_strong(expected, 1)) continue;
    std::memcpy(slot.path, abs.c_str(), abs.size() + 1);
    slot.state.store(2);
    return;
  }
}

void unregister_temp_file(const std::string& path) {
  std::error_code ec;
  const std::string abs = fs::absolute(path, ec).string();
  for (auto& slot : g_temp_slots)
    if (slot.state.load() == 2 && abs == slot.path) {
      slot.state.store(0);
      return;
    }
}

void unlink_temp_files() noexcept { unlink_temps(); }

void install_signal_cleanup() {
  for (int sig : {SIGINT, SIGTERM, SIGHUP}) {
    struct sigaction old {};
    if (::sigaction(sig, nullptr, &old) == 0 && old.sa_handler == SIG_IGN) continue;  // e.g. nohup
    struct sigaction sa {};
    sa.sa_handler = ess_unlink_temps_and_reraise;
    sigfillset(&sa.sa_mask);
    ::sigaction(sig, &sa, nullptr);
  }
  ::signal(SIGXFSZ, SIG_IGN);
}

void write_file_atomically(const std::string& path, const void* data, std::size_t size) {
  check_not_an_input(path);
  const std::string tmp = temp_path_for(path);
  register_temp_file(tmp);  // before the file exists: a signal from here on removes it
  const auto fail = [&](int fd, const std::string& what, int err) {
    if (fd >= 0) ::close(fd);
    ::unlink(tmp.c_str());
    unregister_temp_file(tmp);
    throw InputError(path + ": cannot write output: " + what + " (" + std::strerror(err) + ")");
  };
  const int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0666);
  if (fd < 0) fail(-1, "cannot create " + tmp, errno);
  const char* p = static_cast<const char*>(data);
  std::size_t done = 0;
  while (done < size) {
    const ssize_t w = ::write(fd, p + done, size - done);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0)
      fail(fd, "write failed after " + std::to_string(done) + " of " + std::to_string(size) + " bytes",
           w < 0 ? errno : ENOSPC);
    done += static_cast<std::size_t>(w);
  }
  if (::fsync(fd) != 0 && errno != EINVAL && errno != EROFS) fail(fd, "fsync failed", errno);
  const int fd_copy = fd;
  if (::close(fd_copy) != 0) fail(-1, "close failed", errno);
  if (::rename(tmp.c_str(), path.c_str()) != 0) fail(-1, "cannot rename " + tmp + " into place", errno);
  unregister_temp_file(tmp);
}

}  // namespace ess
