// safetensors files (single or sharded Hugging Face checkpoints) and config.json (DESIGN §5, §7).
// Format: 8-byte little-endian header size N, N bytes of JSON header (name → {dtype, shape,
// data_offsets [begin, end)} relative to the byte buffer, optional "__metadata__" string map),
// then the buffer. Everything is validated when the file is opened, as the reference reader does:
// a regular file (opened without blocking), header within the file (and ≤ 100 MB), a JSON object
// starting with '{' parsed with ess::parse_json's limits (nesting ≤ 64, no NUL byte: padding may
// only be whitespace), no duplicate names (nor keys),
// each entry with dtype/shape/data_offsets of the right types, offsets in bounds, contiguous,
// non-overlapping and covering the buffer exactly, byte counts equal to dtype size × elements
// (shape [] is one element). Every failure is an ess::InputError naming the file, the tensor
// where there is one, and what was expected vs found.
#pragma once
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "libess/error.h"
#include "libess/tensor.h"

namespace ess::st {

struct TensorInfo {
  std::string name, dtype;
  std::vector<std::int64_t> shape;
  std::uint64_t begin = 0, end = 0;  // byte range in the buffer
  std::string file;
};

class SafetensorsFile {
 public:
  explicit SafetensorsFile(const std::string& path);  // memory-maps and validates; InputError
  ~SafetensorsFile();
  SafetensorsFile(const SafetensorsFile&) = delete;
  SafetensorsFile& operator=(const SafetensorsFile&) = delete;

  const std::string& path() const { return path_; }
  std::vector<std::string> names() const;
  bool has(const std::string& name) const { return tensors_.count(name) > 0; }
  const TensorInfo& info(const std::string& name) const;
  // Converted to float64 (F32, F16, BF16, F64); NaN/Inf are returned as they are.
  Tensor read(const std::string& name) const;
  // Only the given rows (indices along dim 0, in this order) as float64: shape [rows.size(), the
  // other dims]. InputError on an index out of range.
  Tensor read_rows(const std::string& name, const std::vector<std::int64_t>& rows) const;
  const std::map<std::string, std::string>& metadata() const { return metadata_; }

 private:
  const TensorInfo& convertible(const std::string& name) const;  // info(); InputError on a dtype read() cannot convert
  std::string path_;
  const unsigned char* map_ = nullptr;
  std::size_t size_ = 0;
  std::uint64_t buffer_start_ = 0;
  std::map<std::string, TensorInfo> tensors_;
  std::map<std::string, std::string> metadata_;
};

// A checkpoint directory: model.safetensors, or model.safetensors.index.json with its shards
// (the single file wins when both exist, as in transformers). Every shard named by the index is
// opened and validated up front, and must contain the tensors the index assigns to it.
class Checkpoint {
 public:
  explicit Checkpoint(const std::string& dir);
  const std::string& dir() const { return dir_; }
  std::vector<std::string> names() const;
  bool has(const std::string& name) const { return where_.count(name) > 0; }
  const TensorInfo& info(const std::string& name) const;
  Tensor read(const std::string& name) const;
  Tensor read_rows(const std::string& name, const std::vector<std::int64_t>& rows) const;
  std::vector<std::string> files() const;  // the weight files, in order

 private:
  std::string dir_;
  std::vector<std::unique_ptr<SafetensorsFile>> files_;
  std::map<std::string, const SafetensorsFile*> where_;
  InputError missing(const std::string& name) const;
};

// Parses config.json (must be a JSON object of at most 16 MiB, nesting ≤ 64; a regular file),
// accepting the bare Infinity, -Infinity and NaN literals Python's json writes; they become
// ±infinity / quiet NaN doubles. Inside strings they stay strings.
nlohmann::json read_config_json(const std::string& path);
// Same for a string (path is used in messages).
nlohmann::json parse_config_json(const std::string& text, const std::string& path);

// IEEE half and bfloat16 to double, bit-exact (subnormals, infinities, NaN).
double half_to_double(std::uint16_t h);
double bfloat16_to_double(std::uint16_t b);

}  // namespace ess::st
