// Reading inputs and writing outputs safely (docs/reliability.md):
//  - inputs are regular files opened without blocking (a FIFO, directory or device given by
//    mistake is refused, never waited on), and every input opened is remembered so that no output
//    can replace it;
//  - outputs are written to a temporary sibling ".NAME.tmpPID" and renamed into place; the
//    temporary is removed on failure, on SIGINT/SIGTERM/SIGHUP (install_signal_cleanup), and at
//    the next start for the same output when the process that wrote it is gone.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

namespace ess {

// A regular file opened read-only with O_NONBLOCK | O_CLOEXEC. `what` names its role in messages
// ("tokens file"); InputError "<path>: <what> is not a regular file (it is a FIFO)" otherwise.
class InputFile {
 public:
  explicit InputFile(const std::string& path, const std::string& what = "");
  ~InputFile();
  InputFile(InputFile&& o) noexcept;
  InputFile& operator=(InputFile&&) = delete;
  InputFile(const InputFile&) = delete;
  InputFile& operator=(const InputFile&) = delete;

  int fd() const { return fd_; }
  std::uint64_t size() const { return size_; }
  const std::string& path() const { return path_; }
  // The whole file; InputError when it is larger than max_bytes or a read fails.
  std::string read_all(std::uint64_t max_bytes) const;
  // Up to n bytes (fewer only at the end of the file); retries EINTR/EAGAIN. InputError on errors.
  std::size_t read_some(char* buffer, std::size_t n) const;

 private:
  std::string path_;
  int fd_ = -1;
  std::uint64_t size_ = 0;
};

// Reads a whole regular file of at most max_bytes (InputError naming `what` otherwise).
std::string read_input_file(const std::string& path, std::uint64_t max_bytes, const std::string& what = "");
// Refuses anything but an existing regular file, without blocking: for libraries that open files
// by name themselves (HDF5). The file is remembered as an input.
void check_input_file(const std::string& path, const std::string& what = "");

// Input tracking: when on, every file opened through InputFile / check_input_file is remembered
// for the rest of the process, and no output may replace one of them. The CLI turns it on (one
// command per process); it is off by default so that a long-lived library user may rewrite a file
// it read earlier.
void set_input_tracking(bool on);
// True when `path` names (after symlinks, "..", hard links) a remembered input.
bool is_input_file(const std::string& path);
// Throws InputError when `output` is the same file as one of `inputs` (compared by device and
// inode when both exist, else by canonical path) or as any remembered input.
void check_not_an_input(const std::string& output, const std::vector<std::string>& inputs = {});

// ".NAME.tmp<pid>" beside `path`.
std::string temp_path_for(const std::string& path);
// Removes ".NAME.tmp<pid>" files beside `path` left by processes that no longer exist. Returns
// how many were removed.
int remove_stale_temp_files(const std::string& path);

// Temporary files unlinked by the signal handler (up to 16 at once; absolute paths < 4 KiB).
void register_temp_file(const std::string& path);
void unregister_temp_file(const std::string& path);
// SIGINT, SIGTERM, SIGHUP (unless ignored, e.g. under nohup): unlink the registered temporary
// files (async-signal-safe), then die of the same signal with the default action. SIGXFSZ is
// ignored so that a write beyond `ulimit -f` fails with EFBIG (reported, exit 3) instead of
// killing the process. Call once at startup (the CLI does).
void install_signal_cleanup();
// Unlinks the registered temporary files now (async-signal-safe: for fatal-error paths that end
// the process with _exit).
void unlink_temp_files() noexcept;

// Writes `size` bytes to temp_path_for(path), fsyncs and renames it over `path`, refusing to
// replace an input file. InputError naming `path` on any failure (disk full: "No space left on
// device"); the temporary is gone afterwards whatever happens.
void write_file_atomically(const std::string& path, const void* data, std::size_t size);
inline void write_file_atomically(const std::string& path, const std::string& bytes) {
  write_file_atomically(path, bytes.data(), bytes.size());
}

}  // namespace ess
