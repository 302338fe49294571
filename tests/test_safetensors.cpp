// safetensors reader, checkpoint directories and config.json (libess/safetensors.h).
// Files are written byte by byte here, independently of the reader, and every malformed case
// must throw InputError whose message names the file (and the tensor where there is one).
#include <doctest/doctest.h>
#include <unistd.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>
#include <string>
#include <vector>

#include "libess/error.h"
#include "models/safetensors.h"
#include "test_helpers.h"

using namespace ess;
using ess::test::expect_input_error;
using ess::test::write_file;
using namespace ess::st;

namespace {

using ess::test::TempDir;

namespace fs = std::filesystem;

std::string bytes(std::initializer_list<unsigned> b) {
  std::string s;
  for (unsigned v : b) s += static_cast<char>(v & 0xff);
  return s;
}

std::string le64(std::uint64_t n) {
  std::string s(8, '\0');
  for (int k = 0; k < 8; ++k) s[k] = static_cast<char>((n >> (8 * k)) & 0xff);
  return s;
}

// Little-endian encodings from bit patterns (no host float layout involved).
std::string le16s(std::initializer_list<std::uint16_t> v) {
  std::string s;
  for (auto x : v) s += bytes({x & 0xffu, (x >> 8) & 0xffu});
  return s;
}
std::string le32s(std::initializer_list<std::uint32_t> v) {
  std::string s;
  for (auto x : v) s += bytes({x & 0xffu, (x >> 8) & 0xffu, (x >> 16) & 0xffu, x >> 24});
  return s;
}
std::string le64s(std::initializer_list<std::uint64_t> v) {
  std::string s;
  for (auto x : v) s += le64(x);
  return s;
}

// header text (padded with spaces to a multiple of 8, as writers do) + buffer.
std::string file_bytes(std::string header, const std::string& buffer) {
  while (header.size() % 8) header += ' ';
  return le64(header.size()) + header + buffer;
}

std::string entry(const std::string& name, const std::string& dtype, const std::string& shape, std::uint64_t begin,
                  std::uint64_t end) {
  return "\"" + name + "\":{\"dtype\":\"" + dtype + "\",\"shape\":" + shape + ",\"data_offsets\":[" +
         std::to_string(begin) + "," + std::to_string(end) + "]}";
}

// One-tensor F32 file with the given value.
std::string one_f32(const std::string& name, std::uint32_t bits) {
  return file_bytes("{" + entry(name, "F32", "[1]", 0, 4) + "}", le32s({bits}));
}

// Opening `path` must throw InputError whose message has the path and every fragment.
void expect_bad(const std::string& path, std::initializer_list<const char*> fragments) {
  CAPTURE(path);
  try {
    SafetensorsFile f(path);
    FAIL("no error");
  } catch (const InputError& e) {
    const std::string m = e.what();
    CAPTURE(m);
    CHECK(m.find(path) != std::string::npos);
    for (const char* f : fragments) {
      CAPTURE(f);
      CHECK(m.find(f) != std::string::npos);
    }
  }
}

const double inf = std::numeric_limits<double>::infinity();

}  // namespace

TEST_CASE("safetensors: F32, F64, F16 and BF16 tensors read back bit-exactly") {
  TempDir dir("read");
  // F16: 1, −2.5, 65504 (max), 2^−24 (smallest subnormal), 1023·2^−24 (largest subnormal),
  //      +inf, −inf, −0, NaN.
  const std::string f16 = le16s({0x3c00, 0xc100, 0x7bff, 0x0001, 0x03ff, 0x7c00, 0xfc00, 0x8000, 0x7e00});
  // BF16: 1, −2.5, 65280 (0x477f), 2^−133 (smallest subnormal), +inf, NaN.
  const std::string bf16 = le16s({0x3f80, 0xc020, 0x477f, 0x0001, 0x7f80, 0x7fc0});
  // F32: 1, −2.5, 65504, 2^−149 (smallest subnormal), +inf, 0.1f.
  const std::string f32 = le32s({0x3f800000, 0xc0200000, 0x477fe000, 0x00000001, 0x7f800000, 0x3dcccccd});
  // F64: 1, −2.5, 2^−1074 (smallest subnormal), −inf.
  const std::string f64 = le64s({0x3ff0000000000000, 0xc004000000000000, 0x1, 0xfff0000000000000});
  // Scalar (shape []) F32 4.0, and an empty [0, 3] tensor.
  const std::string scalar = le32s({0x40800000});
  std::uint64_t o = 0;
  std::string header = "{\"__metadata__\":{\"format\":\"pt\"},";
  header += entry("w.f64", "F64", "[2,2]", o, o + f64.size()) + ",";
  o += f64.size();
  header += entry("w.f32", "F32", "[6]", o, o + f32.size()) + ",";
  o += f32.size();
  header += entry("w.f16", "F16", "[9]", o, o + f16.size()) + ",";
  o += f16.size();
  header += entry("w.bf16", "BF16", "[3,2]", o, o + bf16.size()) + ",";
  o += bf16.size();
  header += entry("w.scalar", "F32", "[]", o, o + 4) + ",";
  o += 4;
  header += entry("w.empty", "F32", "[0,3]", o, o) + ",";
  header += entry("w.i64", "I64", "[1]", o, o + 8) + "}";
  const auto path =
      write_file(dir / "model.safetensors", file_bytes(header, f64 + f32 + f16 + bf16 + scalar + le64(7)));

  SafetensorsFile f(path);
  CHECK(f.path() == path);
  CHECK(f.names() == std::vector<std::string>{"w.bf16", "w.empty", "w.f16", "w.f32", "w.f64", "w.i64", "w.scalar"});
  CHECK(f.has("w.f16"));
  CHECK_FALSE(f.has("__metadata__"));
  CHECK(f.metadata().size() == 1);
  CHECK(f.metadata().at("format") == "pt");
  CHECK(f.info("w.f32").dtype == "F32");
  CHECK(f.info("w.f32").begin == 32);
  CHECK(f.info("w.f32").end == 56);
  CHECK(f.info("w.f32").file == path);

  const Tensor t64 = f.read("w.f64");
  CHECK(t64.shape == std::vector<std::int64_t>{2, 2});
  CHECK(t64.data == std::vector<double>{1.0, -2.5, std::ldexp(1.0, -1074), -inf});

  const Tensor t32 = f.read("w.f32");
  CHECK(t32.shape == std::vector<std::int64_t>{6});
  CHECK(t32.data == std::vector<double>{1.0, -2.5, 65504.0, std::ldexp(1.0, -149), inf, double(0.1f)});

  const auto h = f.read("w.f16").data;
  REQUIRE(h.size() == 9);
  CHECK(h[0] == 1.0);
  CHECK(h[1] == -2.5);
  CHECK(h[2] == 65504.0);
  CHECK(h[3] == std::ldexp(1.0, -24));
  CHECK(h[4] == std::ldexp(1023.0, -24));
  CHECK(h[5] == inf);
  CHECK(h[6] == -inf);
  CHECK(h[7] == 0.0);
  CHECK(std::signbit(h[7]));
  CHECK(std::isnan(h[8]));

  const Tensor tb = f.read("w.bf16");
  CHECK(tb.shape == std::vector<std::int64_t>{3, 2});
  REQUIRE(tb.data.size() == 6);
  CHECK(tb.data[0] == 1.0);
  CHECK(tb.data[1] == -2.5);
  CHECK(tb.data[2] == 65280.0);
  CHECK(tb.data[3] == std::ldexp(1.0, -133));
  CHECK(tb.data[4] == inf);
  CHECK(std::isnan(tb.data[5]));

  const Tensor ts = f.read("w.scalar");
  CHECK(ts.shape.empty());
  CHECK(ts.data == std::vector<double>{4.0});
  const Tensor te = f.read("w.empty");
  CHECK(te.shape == std::vector<std::int64_t>{0, 3});
  CHECK(te.data.empty());

  // Listed but not convertible: the file is valid, reading it is not.
  expect_input_error([&] { f.read("w.i64"); }, {path, "'w.i64'", "unsupported dtype I64"});

  // Rows (the embedding lookup reads only the ids it needs): in the order asked, repeats allowed,
  // bit-identical to the same rows of a whole read, for every dtype.
  const Tensor rb = f.read_rows("w.bf16", {2, 0, 2});
  CHECK(rb.shape == std::vector<std::int64_t>{3, 2});
  REQUIRE(rb.data.size() == 6);
  CHECK(rb.data[0] == tb.data[4]);
  CHECK(std::isnan(rb.data[1]));
  CHECK(rb.data[2] == tb.data[0]);
  CHECK(rb.data[3] == tb.data[1]);
  CHECK(rb.data[4] == tb.data[4]);
  CHECK(f.read_rows("w.f64", {1}).data == std::vector<double>{std::ldexp(1.0, -1074), -inf});
  CHECK(f.read_rows("w.f64", {1}).shape == std::vector<std::int64_t>{1, 2});
  CHECK(f.read_rows("w.f32", {5, 1}).data == std::vector<double>{double(0.1f), -2.5});
  CHECK(f.read_rows("w.f16", {4}).data == std::vector<double>{std::ldexp(1023.0, -24)});
  CHECK(f.read_rows("w.f64", {}).shape == std::vector<std::int64_t>{0, 2});
  expect_input_error([&] { f.read_rows("w.bf16", {3}); }, {path, "'w.bf16'", "row 3", "out of range", "3 rows"});
  expect_input_error([&] { f.read_rows("w.bf16", {-1}); }, {path, "'w.bf16'", "row -1"});
  expect_input_error([&] { f.read_rows("w.scalar", {0}); }, {path, "'w.scalar'", "scalar"});
  expect_input_error([&] { f.read_rows("w.i64", {0}); }, {path, "'w.i64'", "unsupported dtype I64"});
}

TEST_CASE("safetensors: conversion helpers match IEEE half and bfloat16 for every bit pattern") {
  for (std::uint32_t b = 0; b < 0x10000; ++b) {
    // bfloat16 is the top half of a float32.
    const std::uint32_t bits = b << 16;
    float fl;
    std::memcpy(&fl, &bits, 4);
    const double bf = bfloat16_to_double(static_cast<std::uint16_t>(b));
    if (std::isnan(fl)) {
      CHECK(std::isnan(bf));
    } else if (bf != static_cast<double>(fl)) {
      FAIL_CHECK("bf16 " << b);
    }
    // half: value = (−1)^s · 2^(e−15) · (1 + m/1024), or m · 2^−24 when e = 0.
    const int s = (b >> 15) & 1, e = (b >> 10) & 0x1f, m = b & 0x3ff;
    const double hv = half_to_double(static_cast<std::uint16_t>(b));
    if (e == 31) {
      if (m ? !std::isnan(hv) : hv != (s ? -inf : inf)) FAIL_CHECK("f16 " << b);
    } else {
      const double want = (s ? -1.0 : 1.0) * (e ? std::ldexp(1024.0 + m, e - 25) : std::ldexp(double(m), -24));
      if (hv != want || std::signbit(hv) != bool(s)) FAIL_CHECK("f16 " << b);
    }
  }
}

TEST_CASE("safetensors: trailing-space padding and a header with only metadata are accepted") {
  TempDir dir("pad");
  const std::string h = "{\"x\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}";
  const auto p1 =
      write_file(dir / "pad.safetensors", le64(h.size() + 13) + h + std::string(13, ' ') + le32s({0x3f800000}));
  CHECK(SafetensorsFile(p1).read("x").data == std::vector<double>{1.0});
  const auto p2 = write_file(dir / "meta.safetensors", file_bytes("{\"__metadata__\":{}}", ""));
  CHECK(SafetensorsFile(p2).names().empty());
  const auto p3 = write_file(dir / "empty.safetensors", file_bytes("{}", ""));
  CHECK(SafetensorsFile(p3).names().empty());
}

TEST_CASE("safetensors: truncated files and bad headers are refused, naming the file") {
  TempDir dir("bad_header");
  expect_bad(write_file(dir / "empty.safetensors", ""), {"0 bytes", "too short"});
  expect_bad(write_file(dir / "short.safetensors", "abcdefg"), {"7 bytes", "too short"});
  expect_bad(write_file(dir / "long_header.safetensors", le64(1000) + "{}"), {"header length 1000", "2 bytes"});
  expect_bad(write_file(dir / "huge_header.safetensors", le64(~0ull) + "{}"), {"longer than the file"});
  expect_bad(write_file(dir / "json.safetensors", file_bytes("{not json", "")), {"not valid JSON"});
  expect_bad(write_file(dir / "array.safetensors", file_bytes("[1,2]", "")), {"does not start with '{'"});
  expect_bad(write_file(dir / "zero_header.safetensors", le64(0)), {"empty header"});
  expect_bad(write_file(dir / "trailing.safetensors", file_bytes("{} x", "")), {"not valid JSON"});
  expect_bad(write_file(dir / "meta.safetensors", file_bytes("{\"__metadata__\":{\"n\":3}}", "")),
             {"__metadata__", "'n'", "must be a string"});
  expect_bad(dir / "absent.safetensors", {"no such file"});
  fs::create_directories(dir / "a_dir.safetensors");
  expect_bad(dir / "a_dir.safetensors", {"not a regular file"});
}

TEST_CASE("safetensors: bad tensor entries are refused, naming the file and the tensor") {
  TempDir dir("bad_entry");
  const std::string four = le32s({1, 2, 3, 4});  // 16 bytes
  const auto one = [&](const std::string& file, const std::string& e, const std::string& buffer,
                       std::initializer_list<const char*> fragments) {
    expect_bad(write_file(dir / file, file_bytes("{" + e + "}", buffer)), fragments);
  };
  one("oob.safetensors", entry("w", "F32", "[4]", 0, 16), four.substr(0, 8), {"'w'", "beyond the data buffer"});
  one("reversed.safetensors", entry("w", "F32", "[0]", 8, 4), four, {"'w'", "reversed"});
  one("count.safetensors", entry("w", "F32", "[3]", 0, 16), four, {"'w'", "16 bytes", "needs 12"});
  one("count_f16.safetensors", entry("w", "F16", "[2,2]", 0, 16), four, {"'w'", "needs 8"});
  one("dtype.safetensors", entry("w", "Q4", "[4]", 0, 16), four, {"'w'", "unknown dtype 'Q4'"});
  one("neg_shape.safetensors", entry("w", "F32", "[-4]", 0, 16), four, {"'w'", "shape"});
  one("float_shape.safetensors", entry("w", "F32", "[4.0]", 0, 16), four, {"'w'", "shape"});
  // 2^32 × 2^32 × 4 bytes wraps to 0 in 64 bits; it must not pass as an empty tensor.
  one("overflow.safetensors", entry("w", "F32", "[4294967296,4294967296]", 0, 0), "", {"'w'", "too large"});
  one("no_offsets.safetensors", "\"w\":{\"dtype\":\"F32\",\"shape\":[4]}", four, {"'w'", "data_offsets"});
  one("bad_offsets.safetensors", "\"w\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0]}", four,
      {"'w'", "data_offsets"});
  one("not_object.safetensors", "\"w\":[1,2]", four, {"'w'", "must be an object"});
  one("dtype_type.safetensors", "\"w\":{\"dtype\":4,\"shape\":[4],\"data_offsets\":[0,16]}", four,
      {"'w'", "dtype must be a string"});
  one("duplicate.safetensors", entry("w", "F32", "[2]", 0, 8) + "," + entry("w", "F32", "[2]", 8, 16), four,
      {"'w'", "more than once"});
  // Two tensors sharing bytes 4..8.
  one("overlap.safetensors", entry("a", "F32", "[2]", 0, 8) + "," + entry("b", "F32", "[2]", 4, 12), four.substr(0, 12),
      {"'b'", "overlaps tensor 'a'"});
  // Bytes 4..8 belong to nobody.
  one("gap.safetensors", entry("a", "F32", "[1]", 0, 4) + "," + entry("b", "F32", "[1]", 8, 12), four.substr(0, 12),
      {"'a'", "'b'", "gap", "4..8"});
  one("first_gap.safetensors", entry("a", "F32", "[1]", 4, 8), four.substr(0, 8), {"'a'", "gap", "0..4"});
  one("tail.safetensors", entry("a", "F32", "[2]", 0, 8), four, {"16 bytes", "cover only 8", "'a'"});
}

TEST_CASE("safetensors: asking for a tensor the file does not have names the file and the tensor") {
  TempDir dir("missing");
  const auto path = write_file(dir / "model.safetensors", one_f32("x", 0x3f800000));
  SafetensorsFile f(path);
  CHECK_FALSE(f.has("nope"));
  expect_input_error([&] { f.read("nope"); }, {path + ": no tensor 'nope'"});
  expect_input_error([&] { f.info("nope"); }, {path, "'nope'"});
}

TEST_CASE("checkpoint: single model.safetensors") {
  TempDir dir("ckpt_single");
  write_file(dir / "model.safetensors", one_f32("x", 0x40000000));
  Checkpoint c(dir.path);
  CHECK(c.dir() == dir.path);
  CHECK(c.names() == std::vector<std::string>{"x"});
  CHECK(c.has("x"));
  CHECK(c.read("x").data == std::vector<double>{2.0});
  CHECK(c.info("x").file == dir / "model.safetensors");
  expect_input_error([&] { c.read("y"); }, {dir.path, "'y'", "model.safetensors"});
  expect_input_error([&] { c.info("y"); }, {dir.path, "'y'"});
}

TEST_CASE("checkpoint: sharded index maps every tensor to its shard") {
  TempDir dir("ckpt_sharded");
  write_file(dir / "model-00001-of-00002.safetensors",
             file_bytes("{" + entry("a", "F32", "[1]", 0, 4) + "," + entry("c", "BF16", "[1]", 4, 6) + "}",
                        le32s({0x3f800000}) + le16s({0xc020})));
  write_file(dir / "model-00002-of-00002.safetensors",
             file_bytes("{" + entry("b", "F64", "[1]", 0, 8) + "}", le64s({0x4008000000000000})));
  write_file(dir / "model.safetensors.index.json",
             R"({"metadata":{"total_size":14},"weight_map":{"a":"model-00001-of-00002.safetensors",)"
             R"("b":"model-00002-of-00002.safetensors","c":"model-00001-of-00002.safetensors"}})");
  Checkpoint c(dir.path);
  CHECK(c.names() == std::vector<std::string>{"a", "b", "c"});
  CHECK(c.read("a").data == std::vector<double>{1.0});
  CHECK(c.read("b").data == std::vector<double>{3.0});
  CHECK(c.read("c").data == std::vector<double>{-2.5});
  CHECK(c.info("b").file == dir / "model-00002-of-00002.safetensors");
  CHECK(c.files().size() == 2);
}

TEST_CASE("checkpoint: missing shard, tensor not in its shard and bad index are refused") {
  TempDir dir("ckpt_bad");
  write_file(dir / "model-00001-of-00002.safetensors", one_f32("a", 0x3f800000));
  const std::string index = dir / "model.safetensors.index.json";

  write_file(index,
             R"({"weight_map":{"a":"model-00001-of-00002.safetensors","c":"model-00003-of-00003.safetensors"}})");
  expect_input_error([&] { Checkpoint c(dir.path); },
                     {dir / "model-00003-of-00003.safetensors", "'c'", "does not exist"});

  write_file(index, R"({"weight_map":{"b":"model-00001-of-00002.safetensors"}})");
  expect_input_error([&] { Checkpoint c(dir.path); },
                     {dir / "model-00001-of-00002.safetensors", "'b'", "does not contain it"});

  write_file(index, R"({"weight_map":{"a":"../model-00001-of-00002.safetensors"}})");
  expect_input_error([&] { Checkpoint c(dir.path); }, {index, "'a'", "expected a file name"});

  write_file(index, R"({"weight_map": )");
  expect_input_error([&] { Checkpoint c(dir.path); }, {index + ": not valid JSON"});

  write_file(index, R"({"metadata":{}})");
  expect_input_error([&] { Checkpoint c(dir.path); }, {index, "'weight_map'"});

  // A shard that is itself malformed is reported by its own path.
  write_file(dir / "model-00002-of-00002.safetensors", "short");
  write_file(index, R"({"weight_map":{"a":"model-00002-of-00002.safetensors"}})");
  expect_input_error([&] { Checkpoint c(dir.path); }, {dir / "model-00002-of-00002.safetensors", "too short"});
}

TEST_CASE("checkpoint: a directory without weights says what was looked for") {
  TempDir dir("ckpt_none");
  expect_input_error([&] { Checkpoint c(dir.path); },
                     {dir.path, "looked for model.safetensors and model.safetensors.index.json"});
  write_file(dir / "pytorch_model.bin", "x");
  expect_input_error([&] { Checkpoint c(dir.path); }, {dir.path, "found instead: pytorch_model.bin"});
  expect_input_error([&] { Checkpoint c(dir / "absent"); }, {dir / "absent", "does not exist"});
  expect_input_error([&] { Checkpoint c(dir / "pytorch_model.bin"); }, {dir / "pytorch_model.bin", "found a file"});
}

TEST_CASE("config.json: Infinity, -Infinity and NaN literals parse as numbers but stay strings inside strings") {
  TempDir dir("config");
  const auto path = write_file(dir / "config.json", R"({
  "a": Infinity, "b": -Infinity, "c": NaN, "d": "Infinity", "e": [1, NaN, -Infinity],
  "f": 2.5, "g": "say \"NaN\" and -Infinity", "h": {"NaN": Infinity}, "i": "__ess_literal_NaN__",
  "j": null, "k": true, "l": -3
})");
  const auto j = read_config_json(path);
  CHECK(j["a"].get<double>() == inf);
  CHECK(j["b"].get<double>() == -inf);
  CHECK(std::isnan(j["c"].get<double>()));
  CHECK(j["d"].get<std::string>() == "Infinity");
  CHECK(j["e"][0].get<int>() == 1);
  CHECK(std::isnan(j["e"][1].get<double>()));
  CHECK(j["e"][2].get<double>() == -inf);
  CHECK(j["f"].get<double>() == 2.5);
  CHECK(j["g"].get<std::string>() == "say \"NaN\" and -Infinity");
  CHECK(j["h"]["NaN"].get<double>() == inf);
  CHECK(j["i"].get<std::string>() == "__ess_literal_NaN__");
  CHECK(j["j"].is_null());
  CHECK(j["k"].get<bool>());
  CHECK(j["l"].get<int>() == -3);

  expect_input_error([] { parse_config_json("{\"a\": }", "cfg.json"); }, {"cfg.json: not valid JSON"});
  expect_input_error([] { parse_config_json("{NaN: 1}", "cfg.json"); }, {"cfg.json: not valid JSON"});
  expect_input_error([] { parse_config_json("{\"a\": Infinit}", "cfg.json"); }, {"cfg.json: not valid JSON"});
  expect_input_error([] { parse_config_json("[1]", "cfg.json"); }, {"cfg.json", "expected a JSON object"});
  expect_input_error([&] { read_config_json(dir / "absent.json"); }, {dir / "absent.json", "no such file"});
  const auto bad = write_file(dir / "bad.json", "{\"a\": NaN,}");
  expect_input_error([&] { read_config_json(bad); }, {bad, "not valid JSON"});
}
