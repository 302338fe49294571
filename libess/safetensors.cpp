#include "libess/safetensors.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <limits>
#include <sstream>

#include "libess/error.h"

namespace ess::st {

namespace {

std::size_t dtype_size(const std::string& dtype) {
  if (dtype == "F64" || dtype == "I64" || dtype == "U64") return 8;
  if (dtype == "F32" || dtype == "I32" || dtype == "U32") return 4;
  if (dtype == "F16" || dtype == "BF16" || dtype == "I16" || dtype == "U16") return 2;
  if (dtype == "I8" || dtype == "U8" || dtype == "BOOL" || dtype == "F8_E4M3" || dtype == "F8_E5M2") return 1;
  return 0;
}

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
  int fd = ::open(path.c_str(), O_RDONLY);
  if (fd < 0) throw InputError(path + ": cannot open (" + std::strerror(errno) + ")");
  struct stat st {};
  if (::fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    ::close(fd);
    throw InputError(path + ": not a regular file");
  }
  size_ = static_cast<std::size_t>(st.st_size);
  if (size_ < 8) {
    ::close(fd);
    throw InputError(path + ": file is " + std::to_string(size_) + " bytes, too short for a safetensors header (8 bytes)");
  }
  void* m = ::mmap(nullptr, size_, PROT_READ, MAP_PRIVATE, fd, 0);
  ::close(fd);
  if (m == MAP_FAILED) throw InputError(path + ": cannot memory-map (" + std::string(std::strerror(errno)) + ")");
  map_ = static_cast<const unsigned char*>(m);
  try {
    std::uint64_t n = 0;
    for (int k = 7; k >= 0; --k) n = (n << 8) | map_[k];
    if (n > size_ - 8)
      throw InputError(path + ": header length " + std::to_string(n) + " is longer than the file allows (" +
                       std::to_string(size_ - 8) + " bytes after the length field)");
    buffer_start_ = 8 + n;
    const std::string text(reinterpret_cast<const char*>(map_ + 8), n);
    nlohmann::json header;
    try {
      header = nlohmann::json::parse(text);
    } catch (const nlohmann::json::exception& e) {
      throw InputError(path + ": header is not valid JSON (" + e.what() + ")");
    }
    if (!header.is_object()) throw InputError(path + ": header is not a JSON object");
    const std::uint64_t buffer_size = size_ - buffer_start_;
    for (auto it = header.begin(); it != header.end(); ++it) {
      const std::string& name = it.key();
      if (name == "__metadata__") {
        if (!it.value().is_object()) throw InputError(path + ": __metadata__ is not an object");
        for (auto m2 = it.value().begin(); m2 != it.value().end(); ++m2)
          metadata_[m2.key()] = m2.value().is_string() ? m2.value().get<std::string>() : m2.value().dump();
        continue;
      }
      const auto& e = it.value();
      const std::string where = path + ": tensor '" + name + "'";
      if (!e.is_object() || !e.contains("dtype") || !e.contains("shape") || !e.contains("data_offsets"))
        throw InputError(where + ": entry needs dtype, shape and data_offsets");
      if (!e["dtype"].is_string()) throw InputError(where + ": dtype is not a string");
      TensorInfo info;
      info.name = name;
      info.file = path;
      info.dtype = e["dtype"].get<std::string>();
      const std::size_t width = dtype_size(info.dtype);
      if (width == 0) throw InputError(where + ": unknown dtype '" + info.dtype + "'");
      if (!e["shape"].is_array()) throw InputError(where + ": shape is not an array");
      std::uint64_t count = 1;
      for (const auto& d : e["shape"]) {
        if (!d.is_number_unsigned()) throw InputError(where + ": shape has a non-integer or negative entry");
        info.shape.push_back(d.get<std::int64_t>());
        count *= d.get<std::uint64_t>();
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
      if (info.end - info.begin != count * width)
        throw InputError(where + ": " + std::to_string(info.end - info.begin) + " bytes, but dtype " + info.dtype +
                         " × shape " + shape_string(info.shape) + " needs " + std::to_string(count * width));
      tensors_[name] = info;
    }
    // Contiguous, non-overlapping, covering the buffer.
    std::vector<const TensorInfo*> order;
    for (const auto& [k, v] : tensors_) order.push_back(&v);
    std::sort(order.begin(), order.end(), [](auto* a, auto* b) { return a->begin < b->begin || (a->begin == b->begin && a->end < b->end); });
    std::uint64_t expected = 0;
    for (const TensorInfo* t : order) {
      if (t->begin < expected)
        throw InputError(path + ": tensor '" + t->name + "' overlaps the previous tensor (starts at byte " +
                         std::to_string(t->begin) + ", previous ends at " + std::to_string(expected) + ")");
      if (t->begin > expected)
        throw InputError(path + ": gap in the data buffer before tensor '" + t->name + "' (bytes " +
                         std::to_string(expected) + ".." + std::to_string(t->begin) + " unused)");
      expected = t->end;
    }
    if (expected != buffer_size)
      throw InputError(path + ": data buffer is " + std::to_string(buffer_size) + " bytes but tensors cover " +
                       std::to_string(expected));
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

Tensor SafetensorsFile::read(const std::string& name) const {
  const TensorInfo& t = info(name);
  Tensor out;
  out.shape = t.shape;
  const std::size_t width = dtype_size(t.dtype);
  const std::size_t n = (t.end - t.begin) / width;
  out.data.resize(n);
  const unsigned char* p = map_ + buffer_start_ + t.begin;
  // Little-endian on disk; we only build for little-endian hosts.
  if (t.dtype == "F32") {
    for (std::size_t k = 0; k < n; ++k) {
      float f;
      std::memcpy(&f, p + 4 * k, 4);
      out.data[k] = f;
    }
  } else if (t.dtype == "F64") {
    std::memcpy(out.data.data(), p, 8 * n);
  } else if (t.dtype == "F16" || t.dtype == "BF16") {
    const bool bf = t.dtype == "BF16";
    for (std::size_t k = 0; k < n; ++k) {
      std::uint16_t h;
      std::memcpy(&h, p + 2 * k, 2);
      out.data[k] = bf ? bfloat16_to_double(h) : half_to_double(h);
    }
  } else {
    throw InputError(path_ + ": tensor '" + name + "' has unsupported dtype " + t.dtype +
                     " (supported: F32, F16, BF16, F64)");
  }
  return out;
}

Checkpoint::Checkpoint(const std::string& dir) : dir_(dir) {
  namespace fs = std::filesystem;
  std::error_code ec;
  if (!fs::is_directory(dir, ec)) throw InputError(dir + ": not a checkpoint directory");
  const fs::path index = fs::path(dir) / "model.safetensors.index.json";
  const fs::path single = fs::path(dir) / "model.safetensors";
  if (fs::exists(index, ec)) {
    nlohmann::json j;
    try {
      std::ifstream in(index);
      j = nlohmann::json::parse(in);
    } catch (const nlohmann::json::exception& e) {
      throw InputError(index.string() + ": not valid JSON (" + e.what() + ")");
    }
    if (!j.contains("weight_map") || !j["weight_map"].is_object())
      throw InputError(index.string() + ": no 'weight_map' object");
    std::map<std::string, const SafetensorsFile*> by_file;
    for (auto it = j["weight_map"].begin(); it != j["weight_map"].end(); ++it) {
      if (!it.value().is_string()) throw InputError(index.string() + ": weight_map['" + it.key() + "'] is not a file name");
      const std::string shard = it.value().get<std::string>();
      if (shard.find('/') != std::string::npos || shard == ".." )
        throw InputError(index.string() + ": shard name '" + shard + "' must be a file in the checkpoint directory");
      if (!by_file.count(shard)) {
        const fs::path p = fs::path(dir) / shard;
        if (!fs::exists(p, ec))
          throw InputError(p.string() + ": shard listed in model.safetensors.index.json (for tensor '" + it.key() +
                           "') does not exist");
        files_.push_back(std::make_unique<SafetensorsFile>(p.string()));
        by_file[shard] = files_.back().get();
      }
      const SafetensorsFile* f = by_file[shard];
      if (!f->has(it.key()))
        throw InputError(f->path() + ": tensor '" + it.key() + "' is assigned to this shard by the index but is not in it");
      where_[it.key()] = f;
    }
  } else if (fs::exists(single, ec)) {
    files_.push_back(std::make_unique<SafetensorsFile>(single.string()));
    for (const auto& n : files_.back()->names()) where_[n] = files_.back().get();
  } else {
    throw InputError(dir + ": no model.safetensors or model.safetensors.index.json in the checkpoint directory");
  }
}

std::vector<std::string> Checkpoint::names() const {
  std::vector<std::string> v;
  for (const auto& [k, _] : where_) v.push_back(k);
  return v;
}

const TensorInfo& Checkpoint::info(const std::string& name) const {
  auto it = where_.find(name);
  if (it == where_.end()) throw InputError(dir_ + ": checkpoint has no tensor '" + name + "'");
  return it->second->info(name);
}

Tensor Checkpoint::read(const std::string& name) const {
  auto it = where_.find(name);
  if (it == where_.end()) throw InputError(dir_ + ": checkpoint has no tensor '" + name + "'");
  return it->second->read(name);
}

std::vector<std::string> Checkpoint::files() const {
  std::vector<std::string> v;
  for (const auto& f : files_) v.push_back(f->path());
  return v;
}

nlohmann::json parse_config_json(const std::string& text, const std::string& path) {
  // Replace the bare literals Infinity, -Infinity, NaN (outside strings) by unique string tokens,
  // parse, then turn those strings back into doubles.
  static const char* kPosInf = "__ess_literal_+Infinity__";
  static const char* kNegInf = "__ess_literal_-Infinity__";
  static const char* kNaN = "__ess_literal_NaN__";
  std::string out;
  out.reserve(text.size());
  bool in_string = false;
  for (std::size_t k = 0; k < text.size(); ++k) {
    const char c = text[k];
    if (in_string) {
      out += c;
      if (c == '\\' && k + 1 < text.size()) out += text[++k];
      else if (c == '"') in_string = false;
      continue;
    }
    if (c == '"') {
      in_string = true;
      out += c;
    } else if (text.compare(k, 9, "-Infinity") == 0) {
      out += std::string("\"") + kNegInf + "\"";
      k += 8;
    } else if (text.compare(k, 8, "Infinity") == 0) {
      out += std::string("\"") + kPosInf + "\"";
      k += 7;
    } else if (text.compare(k, 3, "NaN") == 0) {
      out += std::string("\"") + kNaN + "\"";
      k += 2;
    } else {
      out += c;
    }
  }
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(out);
  } catch (const nlohmann::json::exception& e) {
    throw InputError(path + ": not valid JSON (" + e.what() + ")");
  }
  std::function<void(nlohmann::json&)> restore = [&](nlohmann::json& v) {
    if (v.is_string()) {
      const auto& s = v.get_ref<const std::string&>();
      if (s == kPosInf) v = std::numeric_limits<double>::infinity();
      else if (s == kNegInf) v = -std::numeric_limits<double>::infinity();
      else if (s == kNaN) v = std::numeric_limits<double>::quiet_NaN();
    } else if (v.is_structured()) {
      for (auto& x : v) restore(x);
    }
  };
  restore(j);
  return j;
}

nlohmann::json read_config_json(const std::string& path) {
  std::ifstream in(path);
  if (!in) throw InputError(path + ": cannot be read");
  std::stringstream ss;
  ss << in.rdbuf();
  return parse_config_json(ss.str(), path);
}

}  // namespace ess::st
