#include "libess/hdf5.h"

#include <hdf5.h>

#include <fcntl.h>
#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <limits>
#include <thread>

#include "libess/checked.h"
#include "libess/error.h"
#include "libess/files.h"
#include "libess/memory.h"
#include "libess/output_path.h"
#include "libess/tensor.h"

namespace ess::h5 {
namespace {

// Silence HDF5's automatic error printing once; errors are reported through exceptions.
struct SilenceHdf5 {
  SilenceHdf5() { H5Eset_auto2(H5E_DEFAULT, nullptr, nullptr); }
};
const SilenceHdf5 silence_hdf5;

herr_t collect_error(unsigned n, const H5E_error2_t* e, void* data) {
  auto* out = static_cast<std::string*>(data);
  if (n == 0 && e->desc && *e->desc) *out = e->desc;  // the innermost reason
  return 0;
}

// The innermost HDF5 error description, or "" when the stack is empty.
std::string hdf5_reason() {
  std::string reason;
  H5Ewalk2(H5E_DEFAULT, H5E_WALK_UPWARD, collect_error, &reason);
  H5Eclear2(H5E_DEFAULT);
  return reason;
}

// --- guard against HDF5 failing inside its own code --------------------------------------------
// HDF5 1.10 loops forever on some corrupt global heaps and B-trees, and can fault on others (found
// by fuzzing tools/fuzz/fuzz_operators.cpp). It also trusts the length a corrupt variable-length
// string declares and allocates and clears that much (16 GB for a one-string attribute: fuzzing
// tools/fuzz/fuzz_results.cpp). Calls that read a file run inside a Guard; with a handler installed
// (install_failure_guard), a watchdog thread ends a call that runs past its time budget or grows
// the process past its memory allowance, and a fault inside HDF5 is reported, all through the
// handler, naming the file.
std::atomic<int> g_depth{0};                 // guards alive (HDF5 is called from one thread)
std::atomic<std::int64_t> g_deadline_ns{0};  // steady-clock deadline of the outermost guard
std::atomic<std::int64_t> g_rss_limit{0};    // resident bytes the guarded call may reach (0: unchecked)
std::atomic<FailureHandler> g_handler{nullptr};
double g_budget_seconds = 60;
char g_file[1024];  // the file the outermost guard reads, for the handler's message
struct sigaction g_previous[NSIG];

std::int64_t budget_ns() { return static_cast<std::int64_t>(g_budget_seconds * 1e9); }

std::int64_t now_ns() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

// Message for the handler, built without allocating (the fault path runs in a signal handler).
void fail_with(const char* what) {
  static char message[1400];
  const char* parts[] = {g_file[0] ? g_file : "(an HDF5 file)", ": the HDF5 library ", what,
                         " while reading it (the file is corrupt)"};
  std::size_t n = 0;
  for (const char* part : parts)
    for (const char* c = part; *c && n + 1 < sizeof message; ++c) message[n++] = *c;
  message[n] = '\0';
  if (FailureHandler h = g_handler.load()) h(message);
  ::_exit(3);
}

extern "C" void ess_hdf5_fault(int sig, siginfo_t* info, void* context) {
  if (g_depth.load() > 0)
    fail_with(sig == SIGSEGV || sig == SIGBUS ? "crashed (memory fault)"
              : sig == SIGABRT                ? "crashed (abort: its heap is corrupt)"
                                              : "crashed (fatal signal)");
  // Not ours: give the signal back to whoever handled it before (the default, or a sanitizer).
  ::sigaction(sig, &g_previous[sig], nullptr);
  (void)info;
  (void)context;
}

// The process's resident set in bytes (/proc/self/statm), or 0 where it cannot be read.
std::int64_t resident_bytes() {
  const int fd = ::open("/proc/self/statm", O_RDONLY | O_CLOEXEC);
  if (fd < 0) return 0;
  char buf[128];
  const ssize_t n = ::read(fd, buf, sizeof buf - 1);
  ::close(fd);
  if (n <= 0) return 0;
  buf[n] = '\0';
  long long size = 0, resident = 0;
  if (std::sscanf(buf, "%lld %lld", &size, &resident) != 2) return 0;
  return static_cast<std::int64_t>(resident) * ::sysconf(_SC_PAGESIZE);
}

// What a guarded call may add to the resident set: HDF5's own buffers (chunk cache, conversion
// and filter buffers: a few MB for the files ess and h5py write) with a wide margin for other
// threads of the process, plus twice the data a read declares (its output and one copy).
constexpr std::int64_t kGuardMemoryAllowance = std::int64_t{1} << 30;
std::int64_t add_capped(std::int64_t a, std::int64_t b) {  // a, b ≥ 0
  return a > std::numeric_limits<std::int64_t>::max() - b ? std::numeric_limits<std::int64_t>::max() : a + b;
}

void watchdog() {
  // Every 20 ms: a runaway allocation is caught within a few hundred MB of its allowance.
  for (;;) {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
    if (g_depth.load() <= 0) continue;
    const std::int64_t deadline = g_deadline_ns.load();
    if (deadline > 0 && now_ns() > deadline) fail_with("stalled (no result within its time budget, ESS_HDF5_TIMEOUT)");
    const std::int64_t limit = g_rss_limit.load();
    if (limit > 0 && g_depth.load() > 0 && resident_bytes() > limit)
      fail_with("ran away with memory (far more than the data it was asked for)");
  }
}

class Guard {
 public:
  // `data_bytes`: what the guarded call reads, if anything; its time budget grows by 0.1 s per MB
  // and its memory allowance by twice that (a nested guard extends the outermost one's budget).
  explicit Guard(const std::string& file, double data_bytes = 0) {
    const auto extra_ns = static_cast<std::int64_t>(data_bytes / 10e6 * 1e9);
    const auto extra_rss = static_cast<std::int64_t>(std::min(2 * data_bytes, 4e18));
    if (g_depth.fetch_add(1) > 0) {
      if (data_bytes > 0) {
        const std::int64_t deadline = g_deadline_ns.load();
        if (deadline > 0) g_deadline_ns.store(std::max(deadline, now_ns() + extra_ns + budget_ns()));
        const std::int64_t limit = g_rss_limit.load();
        if (limit > 0) g_rss_limit.store(add_capped(limit, extra_rss));
      }
      return;
    }
    // No name (closing an identifier): the message names the last file read, whose objects these are.
    if (!file.empty()) {
      const std::size_t n = std::min(file.size(), sizeof g_file - 1);
      std::memcpy(g_file, file.data(), n);
      g_file[n] = '\0';
    }
    g_deadline_ns.store(now_ns() + budget_ns() + extra_ns);
    // Only with the watchdog running (it is what reads the limit).
    const std::int64_t rss = g_handler.load() != nullptr ? resident_bytes() : 0;
    g_rss_limit.store(rss > 0 ? add_capped(add_capped(rss, kGuardMemoryAllowance), extra_rss) : 0);
  }
  ~Guard() {
    if (g_depth.fetch_sub(1) == 1) {
      g_deadline_ns.store(0);
      g_rss_limit.store(0);
    }
  }
  Guard(const Guard&) = delete;
  Guard& operator=(const Guard&) = delete;
};

[[noreturn]] void fail(const std::string& what) {
  std::string reason = hdf5_reason();
  throw InputError(reason.empty() ? what : what + " (HDF5: " + reason + ")");
}

hid check(hid id, const std::string& what) {
  if (id < 0) fail(what);
  return id;
}

void check_status(herr_t status, const std::string& what) {
  if (status < 0) fail(what);
}

void close_id(hid id) {
  if (id < 0) return;
  const Guard guard("");
  switch (H5Iget_type(id)) {
    case H5I_FILE:
      H5Fclose(id);
      break;
    case H5I_GROUP:
      H5Gclose(id);
      break;
    case H5I_DATASET:
      H5Dclose(id);
      break;
    case H5I_ATTR:
      H5Aclose(id);
      break;
    case H5I_DATASPACE:
      H5Sclose(id);
      break;
    case H5I_DATATYPE:
      H5Tclose(id);
      break;
    case H5I_GENPROP_LST:
      H5Pclose(id);
      break;
    default:
      break;
  }
}

// Dimensions of a dataspace; InputError naming `where` when a dimension (or the element count)
// does not fit in int64 (a corrupt or hostile file can declare up to 2^64 − 1 per axis).
std::vector<std::int64_t> space_shape(hid space, const std::string& where) {
  const int rank = H5Sget_simple_extent_ndims(space);
  if (rank < 0) fail(where + ": cannot read the dataspace");
  std::vector<hsize_t> dims(rank);
  if (rank > 0 && H5Sget_simple_extent_dims(space, dims.data(), nullptr) < 0)
    fail(where + ": cannot read the dataspace");
  std::vector<std::int64_t> shape;
  std::string text = "[";
  for (size_t k = 0; k < dims.size(); ++k) text += (k ? ", " : "") + std::to_string(dims[k]);
  text += "]";
  for (hsize_t d : dims) {
    if (d > static_cast<hsize_t>(std::numeric_limits<std::int64_t>::max()))
      throw InputError(where + ": dimensions " + text + " are beyond 2^63");
    shape.push_back(static_cast<std::int64_t>(d));
  }
  if (!ess::element_count(shape))
    throw InputError(where + ": dimensions " + text + " multiply to more than 2^63 elements");
  return shape;
}

std::uint64_t elements_of(const std::vector<std::int64_t>& shape) { return *ess::element_count(shape); }

// Elements of an attribute's dataspace, refused above kMaxAttributeElements (attributes are
// metadata; a corrupt header must not make us allocate gigabytes).
constexpr hssize_t kMaxAttributeElements = 1 << 20;
std::size_t attribute_elements(hid attr, const std::string& where) {
  Handle space(H5Aget_space(attr));
  const hssize_t n = H5Sget_simple_extent_npoints(space.id());
  if (n < 0) fail(where + ": cannot read the attribute's dataspace");
  if (n > kMaxAttributeElements)
    throw InputError(where + ": attribute has " + std::to_string(n) + " elements (more than " +
                     std::to_string(kMaxAttributeElements) + " accepted)");
  return static_cast<std::size_t>(n);
}

}  // namespace

Handle& Handle::operator=(Handle&& o) noexcept {
  if (this != &o) {
    close_id(id_);
    id_ = o.id_;
    o.id_ = -1;
  }
  return *this;
}

Handle::~Handle() { close_id(id_); }

std::string Object::where(const std::string& child) const {
  std::string p = path_;
  if (!child.empty()) p += (p == "/" ? "" : "/") + child;
  return file_ + ":" + p;
}

bool Object::has(const std::string& name) const {
  const Guard guard(file_);
  // Check each component so that "a/b" does not fail when "a" is missing.
  std::string prefix;
  size_t start = 0;
  while (true) {
    size_t slash = name.find('/', start);
    prefix = name.substr(0, slash);
    htri_t e = H5Lexists(id(), prefix.c_str(), H5P_DEFAULT);
    if (e <= 0) {
      H5Eclear2(H5E_DEFAULT);
      return false;
    }
    if (slash == std::string::npos) return true;
    start = slash + 1;
  }
}

bool Object::has_attr(const std::string& name) const {
  const Guard guard(file_);
  return H5Aexists(id(), name.c_str()) > 0;
}

std::vector<std::string> Object::children() const {
  const Guard guard(file_);
  std::vector<std::string> names;
  auto cb = [](hid_t, const char* name, const H5L_info_t*, void* data) -> herr_t {
    static_cast<std::vector<std::string>*>(data)->push_back(name);
    return 0;
  };
  check_status(H5Literate(id(), H5_INDEX_NAME, H5_ITER_INC, nullptr, cb, &names), "cannot list " + where());
  return names;
}

bool Object::is_group(const std::string& name) const {
  const Guard guard(file_);
  H5O_info_t info;
  if (H5Oget_info_by_name2(id(), name.c_str(), &info, H5O_INFO_BASIC, H5P_DEFAULT) < 0) {
    H5Eclear2(H5E_DEFAULT);
    return false;
  }
  return info.type == H5O_TYPE_GROUP;
}

std::string Object::object_identity(const std::string& name) const {
  const Guard guard(file_);
#if H5_VERSION_GE(1, 12, 0)
  H5O_info2_t info;
  if (H5Oget_info_by_name3(id(), name.c_str(), &info, H5O_INFO_BASIC, H5P_DEFAULT) < 0) {
    H5Eclear2(H5E_DEFAULT);
    return "";
  }
  char* token = nullptr;
  if (H5Otoken_to_str(id(), &info.token, &token) < 0) return "";
  std::string out = std::to_string(info.fileno) + ":" + token;
  H5free_memory(token);
  return out;
#else
  H5O_info_t info;
  if (H5Oget_info_by_name2(id(), name.c_str(), &info, H5O_INFO_BASIC, H5P_DEFAULT) < 0) {
    H5Eclear2(H5E_DEFAULT);
    return "";
  }
  return std::to_string(info.fileno) + ":" + std::to_string(info.addr);
#endif
}

std::vector<std::string> Object::attr_names() const {
  const Guard guard(file_);
  std::vector<std::string> names;
  auto cb = [](hid_t, const char* name, const H5A_info_t*, void* data) -> herr_t {
    static_cast<std::vector<std::string>*>(data)->push_back(name);
    return 0;
  };
  hsize_t idx = 0;
  H5Aiterate2(id(), H5_INDEX_NAME, H5_ITER_INC, &idx, cb, &names);
  return names;
}

std::string Object::attr_as_text(const std::string& name) const {
  const Guard guard(file_);
  Handle a(check(H5Aopen(id(), name.c_str(), H5P_DEFAULT), "cannot open attribute " + name + " of " + where()));
  Handle type(H5Aget_type(a.id()));
  auto cls = H5Tget_class(type.id());
  if (cls == H5T_STRING) return "\"" + attr_string(name) + "\"";
  if (cls == H5T_INTEGER) {
    auto v = attr_ints(name);
    std::string s = v.size() == 1 ? "" : "[";
    for (size_t k = 0; k < v.size(); ++k) s += (k ? ", " : "") + std::to_string(v[k]);
    return v.size() == 1 ? s : s + "]";
  }
  if (cls == H5T_FLOAT) {
    std::vector<double> d(attribute_elements(a.id(), where() + " @" + name));
    if (!d.empty()) check_status(H5Aread(a.id(), H5T_NATIVE_DOUBLE, d.data()), "cannot read attribute " + name);
    std::string s = d.size() == 1 ? "" : "[";
    for (size_t k = 0; k < d.size(); ++k) {
      char buf[32];
      std::snprintf(buf, sizeof buf, "%g", d[k]);
      s += (k ? ", " : "") + std::string(buf);
    }
    return d.size() == 1 ? s : s + "]";
  }
  return "(unprintable)";
}

Object Object::group(const std::string& name) const {
  const Guard guard(file_);
  if (!has(name)) throw InputError(where(name) + ": missing group '" + name + "'");
  Handle g(check(H5Gopen2(id(), name.c_str(), H5P_DEFAULT), "cannot open group " + where(name)));
  return Object(std::move(g), file_, path_ == "/" ? "/" + name : path_ + "/" + name, deflate_);
}

Object Object::create_group(const std::string& name) const {
  Handle lcpl(H5Pcreate(H5P_LINK_CREATE));
  H5Pset_create_intermediate_group(lcpl.id(), 1);
  Handle g(
      check(H5Gcreate2(id(), name.c_str(), lcpl.id(), H5P_DEFAULT, H5P_DEFAULT), "cannot create group " + where(name)));
  return Object(std::move(g), file_, path_ == "/" ? "/" + name : path_ + "/" + name, deflate_);
}

std::string Object::attr_string(const std::string& name) const {
  const Guard guard(file_);
  if (!has_attr(name)) throw InputError(where() + ": missing attribute '" + name + "'");
  Handle a(check(H5Aopen(id(), name.c_str(), H5P_DEFAULT), "cannot open attribute " + name + " of " + where()));
  Handle type(H5Aget_type(a.id()));
  if (H5Tget_class(type.id()) != H5T_STRING) throw InputError(where() + ": attribute '" + name + "' is not a string");
  Handle space(H5Aget_space(a.id()));
  if (H5Sget_simple_extent_npoints(space.id()) != 1)
    throw InputError(where() + ": attribute '" + name + "' is not a single string");
  if (H5Tis_variable_str(type.id()) > 0) {
    Handle mem(H5Tcopy(H5T_C_S1));
    H5Tset_size(mem.id(), H5T_VARIABLE);
    H5Tset_cset(mem.id(), H5Tget_cset(type.id()));
    char* s = nullptr;
    check_status(H5Aread(a.id(), mem.id(), &s), "cannot read attribute " + name + " of " + where());
    std::string out = s ? s : "";
    H5free_memory(s);
    return out;
  }
  const size_t n = H5Tget_size(type.id());
  if (n == 0 || n > (1u << 20))
    throw InputError(where() + ": attribute '" + name + "' is a string of " + std::to_string(n) +
                     " bytes (1 to 1048576 accepted)");
  std::string buf(n, '\0');
  check_status(H5Aread(a.id(), type.id(), buf.data()), "cannot read attribute " + name + " of " + where());
  buf.resize(std::strlen(buf.c_str()));
  return buf;
}

std::vector<long long> Object::attr_ints(const std::string& name) const {
  const Guard guard(file_);
  if (!has_attr(name)) throw InputError(where() + ": missing attribute '" + name + "'");
  Handle a(check(H5Aopen(id(), name.c_str(), H5P_DEFAULT), "cannot open attribute " + name + " of " + where()));
  Handle type(H5Aget_type(a.id()));
  auto cls = H5Tget_class(type.id());
  if (cls != H5T_INTEGER && cls != H5T_FLOAT) throw InputError(where() + ": attribute '" + name + "' is not numeric");
  std::vector<long long> v(attribute_elements(a.id(), where() + " @" + name));
  if (v.empty()) return v;
  if (cls == H5T_FLOAT) {
    std::vector<double> d(v.size());
    check_status(H5Aread(a.id(), H5T_NATIVE_DOUBLE, d.data()), "cannot read attribute " + name);
    for (size_t k = 0; k < v.size(); ++k) {
      // Integral and exactly representable as long long (|d| < 2^63); NaN fails the first test.
      if (!(d[k] == std::floor(d[k])) || !(std::fabs(d[k]) < 9223372036854775808.0))
        throw InputError(where() + ": attribute '" + name + "' is not an integer (found " + std::to_string(d[k]) + ")");
      v[k] = static_cast<long long>(d[k]);
    }
  } else {
    // Read as unsigned when the file's type is unsigned 64-bit, so 2^63..2^64−1 are refused, not wrapped.
    Handle type2(H5Aget_type(a.id()));
    if (H5Tget_sign(type2.id()) == H5T_SGN_NONE && H5Tget_size(type2.id()) >= 8) {
      std::vector<unsigned long long> u(v.size());
      check_status(H5Aread(a.id(), H5T_NATIVE_ULLONG, u.data()), "cannot read attribute " + name);
      for (size_t k = 0; k < v.size(); ++k) {
        if (u[k] > static_cast<unsigned long long>(std::numeric_limits<long long>::max()))
          throw InputError(where() + ": attribute '" + name + "' = " + std::to_string(u[k]) + " is beyond 2^63");
        v[k] = static_cast<long long>(u[k]);
      }
    } else {
      check_status(H5Aread(a.id(), H5T_NATIVE_LLONG, v.data()), "cannot read attribute " + name);
    }
  }
  return v;
}

long long Object::attr_int(const std::string& name) const {
  auto v = attr_ints(name);
  if (v.size() != 1) throw InputError(where() + ": attribute '" + name + "' must be a single integer");
  return v[0];
}

long long Object::attr_int_in_range(const std::string& name, long long lo, long long hi) const {
  const long long v = attr_int(name);
  if (v < lo || v > hi)
    throw InputError(where() + ": attribute '" + name + "' = " + std::to_string(v) + " is out of range [" +
                     std::to_string(lo) + ", " + std::to_string(hi) + "]");
  return v;
}

double Object::attr_double(const std::string& name) const {
  const Guard guard(file_);
  if (!has_attr(name)) throw InputError(where() + ": missing attribute '" + name + "'");
  Handle a(check(H5Aopen(id(), name.c_str(), H5P_DEFAULT), "cannot open attribute " + name + " of " + where()));
  Handle type(H5Aget_type(a.id()));
  auto cls = H5Tget_class(type.id());
  if (cls != H5T_INTEGER && cls != H5T_FLOAT) throw InputError(where() + ": attribute '" + name + "' is not numeric");
  if (attribute_elements(a.id(), where() + " @" + name) != 1)
    throw InputError(where() + ": attribute '" + name + "' must be a single number");
  double d = 0;
  check_status(H5Aread(a.id(), H5T_NATIVE_DOUBLE, &d), "cannot read attribute " + name);
  return d;
}

namespace {
void replace_attr(hid obj, const std::string& name) {
  if (H5Aexists(obj, name.c_str()) > 0) H5Adelete(obj, name.c_str());
}
}  // namespace

void Object::set_attr(const std::string& name, const std::string& value) const {
  replace_attr(id(), name);
  Handle type(H5Tcopy(H5T_C_S1));
  H5Tset_size(type.id(), H5T_VARIABLE);
  H5Tset_cset(type.id(), H5T_CSET_UTF8);
  Handle space(H5Screate(H5S_SCALAR));
  Handle a(check(H5Acreate2(id(), name.c_str(), type.id(), space.id(), H5P_DEFAULT, H5P_DEFAULT),
                 "cannot write attribute " + name + " of " + where()));
  const char* s = value.c_str();
  check_status(H5Awrite(a.id(), type.id(), &s), "cannot write attribute " + name + " of " + where());
}

void Object::set_attr(const std::string& name, long long value) const {
  replace_attr(id(), name);
  Handle space(H5Screate(H5S_SCALAR));
  Handle a(check(H5Acreate2(id(), name.c_str(), H5T_STD_I64LE, space.id(), H5P_DEFAULT, H5P_DEFAULT),
                 "cannot write attribute " + name + " of " + where()));
  check_status(H5Awrite(a.id(), H5T_NATIVE_LLONG, &value), "cannot write attribute " + name);
}

void Object::set_attr(const std::string& name, double value) const {
  replace_attr(id(), name);
  Handle space(H5Screate(H5S_SCALAR));
  Handle a(check(H5Acreate2(id(), name.c_str(), H5T_IEEE_F64LE, space.id(), H5P_DEFAULT, H5P_DEFAULT),
                 "cannot write attribute " + name + " of " + where()));
  check_status(H5Awrite(a.id(), H5T_NATIVE_DOUBLE, &value), "cannot write attribute " + name);
}

void Object::set_attr(const std::string& name, const std::vector<long long>& value) const {
  replace_attr(id(), name);
  hsize_t n = value.size();
  Handle space(H5Screate_simple(1, &n, nullptr));
  Handle a(check(H5Acreate2(id(), name.c_str(), H5T_STD_I64LE, space.id(), H5P_DEFAULT, H5P_DEFAULT),
                 "cannot write attribute " + name + " of " + where()));
  check_status(H5Awrite(a.id(), H5T_NATIVE_LLONG, value.data()), "cannot write attribute " + name);
}

std::vector<std::int64_t> Object::shape(const std::string& dataset) const {
  const Guard guard(file_);
  if (!has(dataset)) throw InputError(where(dataset) + ": missing dataset '" + dataset + "'");
  Handle d(check(H5Dopen2(id(), dataset.c_str(), H5P_DEFAULT), "cannot open dataset " + where(dataset)));
  Handle space(H5Dget_space(d.id()));
  return space_shape(space.id(), where(dataset));
}

DType Object::dtype(const std::string& dataset) const {
  const Guard guard(file_);
  if (!has(dataset)) throw InputError(where(dataset) + ": missing dataset '" + dataset + "'");
  Handle d(check(H5Dopen2(id(), dataset.c_str(), H5P_DEFAULT), "cannot open dataset " + where(dataset)));
  Handle type(H5Dget_type(d.id()));
  auto cls = H5Tget_class(type.id());
  size_t size = H5Tget_size(type.id());
  if (cls == H5T_FLOAT) return size == 4 ? DType::float32 : size == 8 ? DType::float64 : DType::other;
  if (cls == H5T_INTEGER) {
    bool is_signed = H5Tget_sign(type.id()) == H5T_SGN_2;
    if (size == 1 && !is_signed) return DType::uint8;
    if (size == 4 && is_signed) return DType::int32;
    if (size == 8 && is_signed) return DType::int64;
  }
  return DType::other;
}

template <class T>
std::vector<T> Object::read_as(const std::string& dataset, hid mem_type, std::vector<std::int64_t>* shape_out) const {
  const Guard guard(file_);
  if (!has(dataset)) throw InputError(where(dataset) + ": missing dataset '" + dataset + "'");
  Handle d(check(H5Dopen2(id(), dataset.c_str(), H5P_DEFAULT), "cannot open dataset " + where(dataset)));
  Handle space(H5Dget_space(d.id()));
  auto shape = space_shape(space.id(), where(dataset));
  Handle type(H5Dget_type(d.id()));
  auto cls = H5Tget_class(type.id());
  if (cls != H5T_FLOAT && cls != H5T_INTEGER) throw InputError(where(dataset) + ": dataset is not numeric");
  // Checked against the memory limit before allocating: a small file can declare a huge dataset.
  const std::uint64_t count = elements_of(shape);
  const auto bytes = checked_mul<std::uint64_t>(count, sizeof(T));
  check_memory(bytes ? *bytes : kUnlimitedMemory, where(dataset) + " " + shape_string(shape),
               "the file declares a dataset larger than this process may use");
  // Time and memory budgets grow with the data (10 MB/s), before the output is allocated.
  const Guard data_guard(file_, static_cast<double>(*bytes));
  std::vector<T> out(static_cast<size_t>(count));
  if (!out.empty())
    check_status(H5Dread(d.id(), mem_type, H5S_ALL, H5S_ALL, H5P_DEFAULT, out.data()),
                 "cannot read dataset " + where(dataset) + " (file truncated or corrupt?)");
  if (shape_out) *shape_out = shape;
  return out;
}

std::vector<double> Object::read_double(const std::string& dataset, std::vector<std::int64_t>* shape) const {
  return read_as<double>(dataset, H5T_NATIVE_DOUBLE, shape);
}
std::vector<std::int32_t> Object::read_int32(const std::string& dataset, std::vector<std::int64_t>* shape) const {
  return read_as<std::int32_t>(dataset, H5T_NATIVE_INT32, shape);
}
std::vector<std::uint8_t> Object::read_uint8(const std::string& dataset, std::vector<std::int64_t>* shape) const {
  return read_as<std::uint8_t>(dataset, H5T_NATIVE_UINT8, shape);
}

void Object::write_raw(const std::string& dataset, const std::vector<std::int64_t>& shape, hid mem_type, hid file_type,
                       const void* data) const {
  std::vector<hsize_t> dims(shape.begin(), shape.end());
  Handle space(check(H5Screate_simple(static_cast<int>(dims.size()), dims.data(), nullptr),
                     "bad shape for dataset " + where(dataset)));
  Handle dcpl(H5Pcreate(H5P_DATASET_CREATE));
  const std::int64_t n = static_cast<std::int64_t>(elements_of(shape));
  if (n > 16384 && !dims.empty() && deflate_ > 0) {
    // Chunks of whole trailing rows, about 256 K elements each, shuffled and deflated.
    std::vector<hsize_t> chunk(dims);
    std::int64_t size = n;
    for (size_t k = 0; k < chunk.size() && size > 262144; ++k) {
      size /= static_cast<std::int64_t>(chunk[k]);
      chunk[k] = 1;
      if (size < 262144) {
        chunk[k] = std::max<hsize_t>(1, 262144 / std::max<std::int64_t>(size, 1));
        chunk[k] = std::min(chunk[k], dims[k]);
        break;
      }
    }
    H5Pset_chunk(dcpl.id(), static_cast<int>(chunk.size()), chunk.data());
    if (H5Zfilter_avail(H5Z_FILTER_DEFLATE) > 0) {
      H5Pset_shuffle(dcpl.id());
      H5Pset_deflate(dcpl.id(), static_cast<unsigned>(deflate_));
    }
  }
  Handle d(check(H5Dcreate2(id(), dataset.c_str(), file_type, space.id(), H5P_DEFAULT, dcpl.id(), H5P_DEFAULT),
                 "cannot create dataset " + where(dataset)));
  if (n > 0)
    check_status(H5Dwrite(d.id(), mem_type, H5S_ALL, H5S_ALL, H5P_DEFAULT, data),
                 "cannot write dataset " + where(dataset));
}

void Object::write(const std::string& ds, const std::vector<std::int64_t>& shape, const double* data) const {
  write_raw(ds, shape, H5T_NATIVE_DOUBLE, H5T_IEEE_F64LE, data);
}
void Object::write(const std::string& ds, const std::vector<std::int64_t>& shape, const float* data) const {
  write_raw(ds, shape, H5T_NATIVE_FLOAT, H5T_IEEE_F32LE, data);
}
void Object::write(const std::string& ds, const std::vector<std::int64_t>& shape, const std::int32_t* data) const {
  write_raw(ds, shape, H5T_NATIVE_INT32, H5T_STD_I32LE, data);
}
void Object::write(const std::string& ds, const std::vector<std::int64_t>& shape, const std::uint8_t* data) const {
  write_raw(ds, shape, H5T_NATIVE_UINT8, H5T_STD_U8LE, data);
}

Object open_file(const std::string& path) {
  // A regular file, checked without blocking before HDF5 opens it by name (HDF5's open would
  // wait forever on a FIFO).
  check_input_file(path, "HDF5 file");
  const Guard guard(path);
  htri_t is = H5Fis_hdf5(path.c_str());
  H5Eclear2(H5E_DEFAULT);
  if (is <= 0) throw InputError(path + ": not an HDF5 file (or truncated/corrupt)");
  hid f = H5Fopen(path.c_str(), H5F_ACC_RDONLY, H5P_DEFAULT);
  if (f < 0) fail(path + ": cannot open HDF5 file (truncated or corrupt?)");
  return Object(Handle(f), path, "/");
}

OutputFile::OutputFile(const std::string& path, int deflate) : path_(path) {
  check_output_path(path);
  // The file is built in memory (core driver without a backing store) and commit() writes it to
  // disk with one checked write (write_file_atomically). A full disk or `ulimit -f` is then our
  // error to report, never an HDF5 file that cannot be flushed (HDF5 1.10 crashes at exit closing
  // such a file), and nothing is on disk until commit().
  Handle fapl(H5Pcreate(H5P_FILE_ACCESS));
  H5Pset_fclose_degree(fapl.id(), H5F_CLOSE_STRONG);
  check_status(H5Pset_fapl_core(fapl.id(), 1 << 20, 0), path + ": cannot set up the in-memory HDF5 file");
  hid f = H5Fcreate(path.c_str(), H5F_ACC_TRUNC, H5P_DEFAULT, fapl.id());
  if (f < 0) fail(path + ": cannot create the output file in memory");
  root_ = new Object(Handle(f), path, "/", deflate);
}

void OutputFile::commit() {
  check_status(H5Fflush(root_->id(), H5F_SCOPE_GLOBAL), "cannot flush " + path_);
  const ssize_t size = H5Fget_file_image(root_->id(), nullptr, 0);
  if (size < 0) fail(path_ + ": cannot get the HDF5 file image");
  check_memory(static_cast<std::uint64_t>(size), path_ + ": copying the " + std::to_string(size) + "-byte file image");
  std::vector<char> image(static_cast<size_t>(size));
  if (H5Fget_file_image(root_->id(), image.data(), image.size()) != size)
    fail(path_ + ": cannot copy the HDF5 file image");
  delete root_;  // closes the in-memory file (strong close degree)
  root_ = nullptr;
  write_file_atomically(path_, image.data(), image.size());
  committed_ = true;
}

OutputFile::~OutputFile() { delete root_; }

void install_failure_guard(FailureHandler handler, double seconds) {
  g_budget_seconds = seconds;
  if (g_handler.exchange(handler) != nullptr) return;  // already installed
  // Faults inside HDF5 run the handler on an alternate stack (a runaway recursion has none left),
  // unless one is set up already (sanitizers have their own).
  stack_t current{};
  if (::sigaltstack(nullptr, &current) == 0 && (current.ss_flags & SS_DISABLE)) {
    static std::vector<char> alt(1 << 18);
    stack_t ss{};
    ss.ss_sp = alt.data();
    ss.ss_size = alt.size();
    ::sigaltstack(&ss, nullptr);
  }
  // SIGABRT: glibc aborts in free() when HDF5 has overrun a heap buffer (H5HG_read on a corrupt
  // global heap; fuzzing found it).
  for (int sig : {SIGSEGV, SIGBUS, SIGFPE, SIGILL, SIGABRT}) {
    struct sigaction sa {};
    sa.sa_sigaction = ess_hdf5_fault;
    sa.sa_flags = SA_SIGINFO | SA_ONSTACK;
    sigemptyset(&sa.sa_mask);
    ::sigaction(sig, &sa, &g_previous[sig]);
  }
  std::thread(watchdog).detach();
}

std::string iso8601_now() {
  auto now = std::chrono::system_clock::to_time_t(std::chrono::system_clock::now());
  std::tm tm{};
  gmtime_r(&now, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
}

void write_provenance(const Object& root, const std::string& format, int major, int minor,
                      const std::string& command_line) {
  root.set_attr("format", format);
  root.set_attr("format_version", std::vector<long long>{major, minor});
  root.set_attr("creator", std::string("ess ") + ESS_VERSION);
  root.set_attr("created", iso8601_now());
  root.set_attr("command_line", command_line);
}

void check_format(const Object& root, const std::string& expected_format, int supported_major) {
  if (!root.has_attr("format"))
    throw InputError(root.file() + ": not an ess file (no 'format' attribute; expected '" + expected_format + "')");
  std::string format = root.attr_string("format");
  if (format != expected_format)
    throw InputError(root.file() + ": format is '" + format + "', expected '" + expected_format + "'");
  if (root.has_attr("format_version")) {
    auto v = root.attr_ints("format_version");
    if (v.empty()) throw InputError(root.file() + ": empty format_version");
    if (v[0] > supported_major)
      throw InputError(root.file() + ": format_version " + std::to_string(v[0]) + "." +
                       (v.size() > 1 ? std::to_string(v[1]) : "0") + " is newer than this ess supports (major " +
                       std::to_string(supported_major) + "); upgrade ess");
  }
}

}  // namespace ess::h5
