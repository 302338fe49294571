// A small RAII layer over the HDF5 C API. Every call is checked; failures become one
// ess::InputError whose message names the file and object and carries HDF5's own reason.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

namespace ess::h5 {

using hid = std::int64_t;  // hid_t

// Owns one HDF5 identifier and closes it with the right H5*close.
class Handle {
 public:
  Handle() = default;
  explicit Handle(hid id) : id_(id) {}
  Handle(const Handle&) = delete;
  Handle& operator=(const Handle&) = delete;
  Handle(Handle&& o) noexcept : id_(o.id_) { o.id_ = -1; }
  Handle& operator=(Handle&& o) noexcept;
  ~Handle();
  hid id() const { return id_; }
  bool valid() const { return id_ >= 0; }

 private:
  hid id_ = -1;
};

enum class DType { float32, float64, int32, int64, uint8, other };

// Deflate level of large datasets written (after HDF5's byte shuffle, which groups the bytes of equal
// significance: float64 profiles then shrink to ≈ 0.8 instead of ≈ 0.93, at 1.5–2× the speed of
// level 4 without it). 0 writes them uncompressed.
constexpr int kDefaultDeflate = 1;

// An HDF5 group or file (both can hold attributes, groups and datasets).
class Object {
 public:
  Object(Handle h, std::string file, std::string path, int deflate = kDefaultDeflate)
      : h_(std::move(h)), file_(std::move(file)), path_(std::move(path)), deflate_(deflate) {}
  const std::string& file() const { return file_; }
  const std::string& path() const { return path_; }
  hid id() const { return h_.id(); }
  // "file.h5:/layers/x" for messages.
  std::string where(const std::string& child = "") const;

  bool has(const std::string& name) const;  // child link exists
  bool has_attr(const std::string& name) const;
  std::vector<std::string> children() const;  // names of links in name order
  bool is_group(const std::string& name) const;
  // Identity of the object a child link points to (file and address): two links to one group
  // (a hard-link cycle) have the same identity. "" when it cannot be read.
  std::string object_identity(const std::string& name) const;
  std::vector<std::string> attr_names() const;
  std::string attr_as_text(const std::string& name) const;  // any attribute, printed

  Object group(const std::string& name) const;
  Object create_group(const std::string& name) const;

  // Attributes.
  std::string attr_string(const std::string& name) const;
  long long attr_int(const std::string& name) const;
  // attr_int, refused (InputError naming the value and the range) outside [lo, hi].
  long long attr_int_in_range(const std::string& name, long long lo, long long hi) const;
  double attr_double(const std::string& name) const;
  std::vector<long long> attr_ints(const std::string& name) const;
  void set_attr(const std::string& name, const std::string& value) const;
  void set_attr(const std::string& name, long long value) const;
  void set_attr(const std::string& name, int value) const { set_attr(name, (long long)value); }
  void set_attr(const std::string& name, double value) const;
  void set_attr(const std::string& name, const std::vector<long long>& value) const;

  // Datasets.
  std::vector<std::int64_t> shape(const std::string& dataset) const;
  DType dtype(const std::string& dataset) const;
  // Reads the whole dataset converted to double / int32 / uint8; shape returned in `shape`.
  std::vector<double> read_double(const std::string& dataset, std::vector<std::int64_t>* shape = nullptr) const;
  std::vector<std::int32_t> read_int32(const std::string& dataset, std::vector<std::int64_t>* shape = nullptr) const;
  std::vector<std::uint8_t> read_uint8(const std::string& dataset, std::vector<std::int64_t>* shape = nullptr) const;
  // Writes a new dataset (row-major), chunked + shuffled + deflate-compressed when large (unless the
  // object's deflate level is 0; groups opened or created from it inherit the level).
  void write(const std::string& dataset, const std::vector<std::int64_t>& shape, const double* data) const;
  void write(const std::string& dataset, const std::vector<std::int64_t>& shape, const float* data) const;
  void write(const std::string& dataset, const std::vector<std::int64_t>& shape, const std::int32_t* data) const;
  void write(const std::string& dataset, const std::vector<std::int64_t>& shape, const std::uint8_t* data) const;

 private:
  void write_raw(const std::string& dataset, const std::vector<std::int64_t>& shape, hid mem_type, hid file_type,
                 const void* data) const;
  template <class T>
  std::vector<T> read_as(const std::string& dataset, hid mem_type, std::vector<std::int64_t>* shape) const;
  Handle h_;
  std::string file_, path_;
  int deflate_ = kDefaultDeflate;
};

// Opens an existing file read-only. Throws InputError naming the file if it is missing, not a
// regular file (checked without blocking: a FIFO is refused, not waited on), truncated or not
// HDF5. Datasets are checked against the memory limit (ess::check_memory) before they are read.
Object open_file(const std::string& path);

// Builds `path` in memory; commit() writes it through a temporary sibling file renamed into place
// (ess::write_file_atomically). Without commit() nothing is written (no half-written output).
class OutputFile {
 public:
  // deflate: the level of its large datasets (Object::write), 0 for none.
  explicit OutputFile(const std::string& path, int deflate = kDefaultDeflate);
  ~OutputFile();
  OutputFile(const OutputFile&) = delete;
  OutputFile& operator=(const OutputFile&) = delete;
  Object& root() { return *root_; }
  void commit();

 private:
  std::string path_;
  Object* root_ = nullptr;
  bool committed_ = false;
};

// HDF5 1.10 can loop forever or fault inside its own code on a corrupt file (fuzzing found both).
// Every call that reads a file runs under a guard. Once this is called (the CLI does, at start), a
// call that takes longer than `seconds` (plus 0.1 s per MB of data it reads) or grows the resident
// memory by more than 1 GiB plus twice that data, or a fault (SIGSEGV, SIGBUS, SIGFPE, SIGILL,
// SIGABRT) while inside HDF5, calls `handler` with "<file>: the HDF5 library stalled|ran away with
// memory|crashed … while reading it (the file is corrupt)"; the handler must not return
// (the CLI prints, removes temporary files and exits 3; it may run in a signal handler or on a
// watchdog thread). Faults outside HDF5 go to the previous handler (default, or a sanitizer's).
using FailureHandler = void (*)(const char* message);
void install_failure_guard(FailureHandler handler, double seconds = 60);

// Writes the root provenance attributes every ess file carries (DESIGN §5).
void write_provenance(const Object& root, const std::string& format, int major, int minor,
                      const std::string& command_line);
// Checks `format` and `format_version` of a file, refusing other formats and newer majors.
void check_format(const Object& root, const std::string& expected_format, int supported_major);

std::string iso8601_now();

}  // namespace ess::h5
