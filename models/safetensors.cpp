#include "models/safetensors.h"

#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <limits>

#include "libess/error.h"
#include "libess/files.h"
#include "libess/json.h"
#include "libess/memory.h"

static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__,
              "safetensors data is little-endian; big-endian hosts unsupported");

namespace ess::st {

namespace {

// Same cap as the reference reader (safetensors MAX_HEADER_SIZE).
constexpr std::uint64_t kMaxHeaderSize = 100'000'000;
// config.json: a few KB in practice (id2label maps make some larger).
constexpr std::uint64_t kMaxConfigBytes = 16ULL << 20;

// Bytes per element of the byte-sized safetensors dtypes; 0 for an unknown name.
std::size_t dtype_size(const std::string& dtype) {
  if (dtype == "F64" || dtype == "I64" || dtype == "U64" || dtype == "C64") return 8;
  if (dtype == "F32" || dtype == "I32" || dtype == "U32") return 4;
  if (dtype == "F16" || dtype == "BF16" || dtype == "I16" || dtype == "U16") return 2;
  if (dtype == "I8" || dtype == "U8" || dtype == "BOOL" || dtype == "F8_E4M3" || dtype == "F8_E5M2" ||
      dtype == "F8_E8M0")
    return 1;
  return 0;
}

std::string quoted(const std::string& s) { return "'" + s + "'"; }

}  // namespace

double half_to_double(std::uint16_t h) {
  const int sign = (h >> 15) & 1, exponent = (h >> 10) & 0x1f, mantissa = h & 0x3ff;
  double v;
  if (exponent == 0)
    v = std::ldexp(static_cast<double>(mantissa), -24);  // subnormal: m · 2^−24
  else if (exponent == 31)
    v = mantissa ? std::numeric_limits<double>::quiet_NaN() : std::numeric_limits<double>::infinity();
  else
    v = std::ldexp(1.0 + mantissa / 1024.0, exponent - 15);
  return sign ? -v : v;
}

double bfloat16_to_double(std::uint16_t b) {
  const std::uint32_t bits = static_cast<std::uint32_t>(b) << 16;
  float f;
  std::memcpy(&f, &bits, 4);
  return static_cast<double>(f);
}

SafetensorsFile::SafetensorsFile(const std::string& path) : path_(path) {
  // Regular files only, opened without blocking (a FIFO given as weights must not hang).
  const InputFile file(path, "safetensors file");
  size_ = static_cast<std::size_t>(file.size());
  if (size_ < 8)
    throw InputError(path + ": file is " + std::to_string(size_) +
                     " bytes, too short for a safetensors header (8 bytes)");
  void* m = ::mmap(nullptr, size_, PROT_READ, MAP_PRIVATE, file.fd(), 0);
  if (m == MAP_FAILED) throw InputError(path + ": cannot memory-map (" + std::string(std::strerror(errno)) + ")");
  map_ = static_cast<const unsigned char*>(m);
  try {
    std::uint64_t n = 0;
    for (int k = 7; k >= 0; --k) n = (n << 8) | map_[k];
    if (n > size_ - 8)
      throw InputError(path + ": header length " + std::to_string(n) + " is longer than the file allows (" +
                       std::to_string(size_ - 8) +
                       " bytes after the length field; truncated or not a safetensors file?)");
    if (n > kMaxHeaderSize)
      throw InputError(path + ": header length " + std::to_string(n) + " exceeds the safetensors limit of " +
                       std::to_string(kMaxHeaderSize) + " bytes");
    buffer_start_ = 8 + n;
    const std::string text(reinterpret_cast<const char*>(map_ + 8), n);
    if (text.empty() || text[0] != '{')
      throw InputError(path + ": header does not start with '{' (expected a JSON object, found " +
                       (text.empty() ? std::string("an empty header") : "byte " + std::to_string(map_[8])) + ")");
    // Bounded parse: no deep nesting, no repeated key (a tensor listed twice), no NUL padding
    // (the format allows trailing spaces only).
    JsonLimits limits;
    limits.max_bytes = kMaxHeaderSize;
    limits.unique_keys = true;
    const nlohmann::json header = parse_json(text, path + ": header", limits);
    if (!header.is_object()) throw InputError(path + ": header is not a JSON object");
    const std::uint64_t buffer_size = size_ - buffer_start_;
    for (auto it = header.begin(); it != header.end(); ++it) {
      const std::string& name = it.key();
      if (name == "__metadata__") {
        if (!it.value().is_object())
          throw InputError(path + ": __metadata__ must be an object of strings, found " + it.value().type_name());
        for (auto m2 = it.value().begin(); m2 != it.value().end(); ++m2) {
          if (!m2.value().is_string())
            throw InputError(path + ": __metadata__ entry " + quoted(m2.key()) + " must be a string, found " +
                             m2.value().type_name());
          metadata_[m2.key()] = m2.value().get<std::string>();
        }
        continue;
      }
      const auto& e = it.value();
      const std::string where = path + ": tensor '" + name + "'";
      if (!e.is_object())
        throw InputError(where + ": entry must be an object with dtype, shape and data_offsets, found " +
                         e.type_name());
      for (const char* key : {"dtype", "shape", "data_offsets"})
        if (!e.contains(key))
          throw InputError(where + ": entry has no '" + key + "' (needs dtype, shape and data_offsets)");
      if (!e["dtype"].is_string())
        throw InputError(where + ": dtype must be a string, found " + e["dtype"].type_name());
      TensorInfo info;
      info.name = name;
      info.file = path;
      info.dtype = e["dtype"].get<std::string>();
      const std::size_t width = dtype_size(info.dtype);
      if (width == 0) throw InputError(where + ": unknown dtype '" + info.dtype + "'");
      if (!e["shape"].is_array()) throw InputError(where + ": shape must be an array, found " + e["shape"].type_name());
      // Element count, refusing (not wrapping) counts beyond int64, so a hostile shape cannot match the bytes.
      const std::uint64_t limit = std::numeric_limits<std::int64_t>::max();
      for (const auto& d : e["shape"]) {
        if (!d.is_number_unsigned() || d.get<std::uint64_t>() > limit)
          throw InputError(where + ": shape entries must be non-negative integers, found " + d.dump());
        info.shape.push_back(d.get<std::int64_t>());
      }
      std::uint64_t count = 1;
      bool too_large = false;
      if (std::find(info.shape.begin(), info.shape.end(), 0) != info.shape.end()) {
        count = 0;
      } else {
        for (auto k : info.shape) {
          if (count > limit / static_cast<std::uint64_t>(k))
            too_large = true;
          else
            count *= static_cast<std::uint64_t>(k);
        }
      }
      const auto& off = e["data_offsets"];
      if (!off.is_array() || off.size() != 2 || !off[0].is_number_unsigned() || !off[1].is_number_unsigned())
        throw InputError(where + ": data_offsets must be two non-negative integers");
      info.begin = off[0].get<std::uint64_t>();
      info.end = off[1].get<std::uint64_t>();
      if (info.begin > info.end)
        throw InputError(where + ": data_offsets [" + std::to_string(info.begin) + ", " + std::to_string(info.end) +
                         "] are reversed");
      if (info.end > buffer_size)
        throw InputError(where + ": data_offsets end " + std::to_string(info.end) + " is beyond the data buffer (" +
                         std::to_string(buffer_size) + " bytes; file truncated?)");
      if (too_large || count > limit / width)
        throw InputError(where + ": shape " + shape_string(info.shape) + " is too large for dtype " + info.dtype +
                         " (data_offsets cover " + std::to_string(info.end - info.begin) + " bytes)");
      if (info.end - info.begin != count * width)
        throw InputError(where + ": " + std::to_string(info.end - info.begin) + " bytes, but dtype " + info.dtype +
                         " × shape " + shape_string(info.shape) + " needs " + std::to_string(count * width));
      tensors_[name] = info;
    }
    // Contiguous, non-overlapping, covering the buffer.
    std::vector<const TensorInfo*> order;
    for (const auto& [k, v] : tensors_) order.push_back(&v);
    std::sort(order.begin(), order.end(),
              [](auto* a, auto* b) { return a->begin < b->begin || (a->begin == b->begin && a->end < b->end); });
    std::uint64_t expected = 0;
    const TensorInfo* prev = nullptr;
    const auto after = [&] { return prev ? "tensor " + quoted(prev->name) : std::string("the start of the buffer"); };
    for (const TensorInfo* t : order) {
      if (t->begin < expected)
        throw InputError(path + ": tensor " + quoted(t->name) + " (bytes " + std::to_string(t->begin) + ".." +
                         std::to_string(t->end) + ") overlaps " + after() + " (ends at byte " +
                         std::to_string(expected) + ")");
      if (t->begin > expected)
        throw InputError(path + ": gap in the data buffer between " + after() + " and tensor " + quoted(t->name) +
                         " (bytes " + std::to_string(expected) + ".." + std::to_string(t->begin) +
                         " unused; expected data_offsets to start at " + std::to_string(expected) + ")");
      expected = t->end;
      prev = t;
    }
    if (expected != buffer_size)
      throw InputError(path + ": data buffer is " + std::to_string(buffer_size) + " bytes but the tensors cover only " +
                       std::to_string(expected) + " (bytes after " + after() + " unused)");
  } catch (...) {
    ::munmap(const_cast<unsigned char*>(map_), size_);
    map_ = nullptr;
    throw;
  }
}

SafetensorsFile::~SafetensorsFile() {
  if (map_) ::munmap(const_cast<unsigned char*>(map_), size_);
}

std::vector<std::string> SafetensorsFile::names() const {
  std::vector<std::string> v;
  for (const auto& [k, _] : tensors_) v.push_back(k);
  return v;
}

const TensorInfo& SafetensorsFile::info(const std::string& name) const {
  auto it = tensors_.find(name);
  if (it == tensors_.end()) throw InputError(path_ + ": no tensor '" + name + "'");
  return it->second;
}

namespace {

// n little-endian elements of `dtype` at p, converted to float64 (we only build for little-endian
// hosts).
void convert(const unsigned char* p, const std::string& dtype, std::size_t n, double* out) {
  if (dtype == "F32") {
    for (std::size_t k = 0; k < n; ++k) {
      float f;
      std::memcpy(&f, p + 4 * k, 4);
      out[k] = f;
    }
  } else if (dtype == "F64") {
    if (n > 0) std::memcpy(out, p, 8 * n);
  } else {  // F16 or BF16 (the dtype was validated when the file was opened)
    const bool bf = dtype == "BF16";
    for (std::size_t k = 0; k < n; ++k) {
      std::uint16_t h;
      std::memcpy(&h, p + 2 * k, 2);
      out[k] = bf ? bfloat16_to_double(h) : half_to_double(h);
    }
  }
}

// Drops the whole pages of [p, p + bytes) from this process's resident memory (they are re-read
// from the file if touched again).
void release_pages(const unsigned char* p, std::size_t bytes) {
  const std::uintptr_t page = static_cast<std::uintptr_t>(::sysconf(_SC_PAGESIZE));
  const std::uintptr_t lo = (reinterpret_cast<std::uintptr_t>(p) + page - 1) / page * page;
  const std::uintptr_t hi = (reinterpret_cast<std::uintptr_t>(p) + bytes) / page * page;
  if (hi > lo) ::madvise(reinterpret_cast<void*>(lo), hi - lo, MADV_DONTNEED);
}

}  // namespace

const TensorInfo& SafetensorsFile::convertible(const std::string& name) const {
  const TensorInfo& t = info(name);
  if (t.dtype != "F32" && t.dtype != "F64" && t.dtype != "F16" && t.dtype != "BF16")
    throw InputError(path_ + ": tensor '" + name + "' has unsupported dtype " + t.dtype +
                     " (supported: F32, F16, BF16, F64)");
  return t;
}

Tensor SafetensorsFile::read(const std::string& name) const {
  const TensorInfo& t = convertible(name);
  Tensor out;
  out.shape = t.shape;
  const std::size_t width = dtype_size(t.dtype);
  const std::size_t n = (t.end - t.begin) / width;
  check_memory(n * sizeof(double), path_ + ": tensor '" + name + "' converted to float64");
  out.data.resize(n);
  const unsigned char* p = map_ + buffer_start_ + t.begin;
  // The float64 copy is what the caller keeps: the tensor's mapped file pages are dropped from this
  // process's resident memory as the conversion passes them (8 MB at a time), so neither a forward
  // pass over a large checkpoint nor one large tensor (a tied embedding) holds the file in RSS.
  const std::size_t chunk = (std::size_t{8} << 20) / width;
  for (std::size_t k = 0; k < n; k += chunk) {
    const std::size_t m = std::min(chunk, n - k);
    convert(p + k * width, t.dtype, m, out.data.data() + k);
    release_pages(p + k * width, m * width);
  }
  return out;
}

Tensor SafetensorsFile::read_rows(const std::string& name, const std::vector<std::int64_t>& rows) const {
  const TensorInfo& t = convertible(name);
  if (t.shape.empty()) throw InputError(path_ + ": tensor '" + name + "' is a scalar; it has no rows to read");
  std::size_t row_elems = 1;
  for (std::size_t d = 1; d < t.shape.size(); ++d) row_elems *= static_cast<std::size_t>(t.shape[d]);
  const std::size_t width = dtype_size(t.dtype);
  Tensor out;
  out.shape = t.shape;
  out.shape[0] = static_cast<std::int64_t>(rows.size());
  check_memory(rows.size() * row_elems * sizeof(double),
               path_ + ": rows of tensor '" + name + "' converted to float64");
  out.data.resize(rows.size() * row_elems);
  const unsigned char* base = map_ + buffer_start_ + t.begin;
  for (std::size_t r = 0; r < rows.size(); ++r) {
    if (rows[r] < 0 || rows[r] >= t.shape[0])
      throw InputError(path_ + ": row " + std::to_string(rows[r]) + " of tensor '" + name +
                       "' is out of range (it has " + std::to_string(t.shape[0]) + " rows)");
    const unsigned char* p = base + static_cast<std::size_t>(rows[r]) * row_elems * width;
    convert(p, t.dtype, row_elems, out.data.data() + r * row_elems);
    release_pages(p, row_elems * width);
  }
  return out;
}

namespace {

// What a directory holds instead of safetensors weights, for the "no weights" message.
std::string other_weight_files(const std::filesystem::path& dir) {
  std::vector<std::string> found;
  std::error_code ec;
  for (const auto& e : std::filesystem::directory_iterator(dir, ec)) {
    const std::string n = e.path().filename().string();
    const std::string ext = e.path().extension().string();
    if (ext == ".safetensors" || ext == ".bin" || ext == ".pt" || ext == ".pth" || ext == ".ckpt" || ext == ".h5" ||
        ext == ".msgpack" || ext == ".gguf" || n == "pytorch_model.bin.index.json")
      found.push_back(n);
  }
  std::sort(found.begin(), found.end());
  if (found.empty()) return "";
  bool other = false;
  for (const auto& n : found) other = other || std::filesystem::path(n).extension() != ".safetensors";
  std::string s = "; found instead:";
  for (std::size_t k = 0; k < found.size() && k < 8; ++k) s += " " + found[k];
  if (found.size() > 8) s += " (and " + std::to_string(found.size() - 8) + " more)";
  if (other)
    s += "; only safetensors weights are read (convert with save_pretrained(safe_serialization=True))";
  else
    s += "; sharded weights need model.safetensors.index.json";
  return s;
}

}  // namespace

Checkpoint::Checkpoint(const std::string& dir) : dir_(dir) {
  namespace fs = std::filesystem;
  std::error_code ec;
  if (!fs::exists(dir, ec)) throw InputError(dir + ": checkpoint directory does not exist");
  if (!fs::is_directory(dir, ec))
    throw InputError(dir + ": expected a checkpoint directory (with config.json and model.safetensors), found a file");
  const fs::path index = fs::path(dir) / "model.safetensors.index.json";
  const fs::path single = fs::path(dir) / "model.safetensors";
  // Same precedence as transformers: a single model.safetensors wins over an index.
  if (fs::exists(single, ec)) {
    files_.push_back(std::make_unique<SafetensorsFile>(single.string()));
    for (const auto& n : files_.back()->names()) where_[n] = files_.back().get();
  } else if (fs::exists(index, ec)) {
    const std::string ipath = index.string();
    JsonLimits limits;
    limits.unique_keys = true;  // a tensor assigned to two shards is ambiguous
    const nlohmann::json j = read_json_file(ipath, limits);
    if (!j.is_object()) throw InputError(ipath + ": expected a JSON object, found " + j.type_name());
    if (!j.contains("weight_map") || !j["weight_map"].is_object())
      throw InputError(ipath + ": expected a 'weight_map' object (tensor name → shard file), found " +
                       (j.contains("weight_map") ? j["weight_map"].type_name() : "none"));
    if (j["weight_map"].empty()) throw InputError(ipath + ": 'weight_map' is empty (no tensors)");
    std::map<std::string, const SafetensorsFile*> by_file;
    for (auto it = j["weight_map"].begin(); it != j["weight_map"].end(); ++it) {
      const std::string& name = it.key();
      if (!it.value().is_string())
        throw InputError(ipath + ": weight_map entry for tensor '" + name + "' must be a shard file name, found " +
                         it.value().dump());
      const std::string shard = it.value().get<std::string>();
      if (shard.empty() || shard == "." || shard == ".." || shard.find('/') != std::string::npos ||
          shard.find('\\') != std::string::npos)
        throw InputError(ipath + ": weight_map entry for tensor '" + name + "' names shard '" + shard +
                         "'; expected a file name in the checkpoint directory");
      if (!by_file.count(shard)) {
        const fs::path p = fs::path(dir) / shard;
        if (!fs::exists(p, ec))
          throw InputError(p.string() + ": shard does not exist (model.safetensors.index.json assigns tensor '" + name +
                           "' to it)");
        files_.push_back(std::make_unique<SafetensorsFile>(p.string()));
        by_file[shard] = files_.back().get();
      }
      const SafetensorsFile* f = by_file[shard];
      if (!f->has(name))
        throw InputError(
            f->path() + ": tensor '" + name +
            "' is assigned to this shard by model.safetensors.index.json but the shard does not contain it");
      where_[name] = f;
    }
  } else {
    throw InputError(dir +
                     ": no weights in the checkpoint directory (looked for model.safetensors and "
                     "model.safetensors.index.json" +
                     other_weight_files(dir) + ")");
  }
}

InputError Checkpoint::missing(const std::string& name) const {
  std::string files;
  for (const auto& f : files_)
    files += (files.empty() ? "" : ", ") + std::filesystem::path(f->path()).filename().string();
  return InputError(dir_ + ": checkpoint has no tensor '" + name + "' (searched " + std::to_string(where_.size()) +
                    " tensors in " + files + ")");
}

std::vector<std::string> Checkpoint::names() const {
  std::vector<std::string> v;
  for (const auto& [k, _] : where_) v.push_back(k);
  return v;
}

const TensorInfo& Checkpoint::info(const std::string& name) const {
  auto it = where_.find(name);
  if (it == where_.end()) throw missing(name);
  return it->second->info(name);
}

Tensor Checkpoint::read(const std::string& name) const {
  auto it = where_.find(name);
  if (it == where_.end()) throw missing(name);
  return it->second->read(name);
}

Tensor Checkpoint::read_rows(const std::string& name, const std::vector<std::int64_t>& rows) const {
  auto it = where_.find(name);
  if (it == where_.end()) throw missing(name);
  return it->second->read_rows(name, rows);
}

std::vector<std::string> Checkpoint::files() const {
  std::vector<std::string> v;
  for (const auto& f : files_) v.push_back(f->path());
  return v;
}

nlohmann::json parse_config_json(const std::string& text, const std::string& path) {
  JsonLimits limits;
  limits.max_bytes = kMaxConfigBytes;
  limits.python_literals = true;
  nlohmann::json j = parse_json(text, path, limits);
  if (!j.is_object()) throw InputError(path + ": expected a JSON object, found " + std::string(j.type_name()));
  return j;
}

nlohmann::json read_config_json(const std::string& path) {
  return parse_config_json(read_input_file(path, kMaxConfigBytes, "config file"), path);
}

}  // namespace ess::st
