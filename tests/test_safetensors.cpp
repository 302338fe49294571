#include <doctest/doctest.h>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>

#include "libess/error.h"
#include "libess/safetensors.h"
#include "test_helpers.h"

using namespace ess;
using namespace ess::st;

namespace {

struct Entry {
  std::string name, dtype;
  std::vector<std::int64_t> shape;
  std::string bytes;
};

std::string le64(std::uint64_t n) {
  std::string s(8, '\0');
  for (int k = 0; k < 8; ++k) s[k] = static_cast<char>((n >> (8 * k)) & 0xff);
  return s;
}

template <class T>
std::string raw(std::initializer_list<T> values) {
  std::string s;
  for (T v : values) s.append(reinterpret_cast<const char*>(&v), sizeof(T));
  return s;
}

// Builds a safetensors file; offsets are computed unless `header_override` is given.
std::string build(const std::vector<Entry>& entries, const std::string& header_override = "") {
  std::string header = "{";
  std::string buffer;
  bool first = true;
  for (const auto& e : entries) {
    std::string shape = "[";
    for (size_t k = 0; k < e.shape.size(); ++k) shape += (k ? "," : "") + std::to_string(e.shape[k]);
    shape += "]";
    header += std::string(first ? "" : ",") + "\"" + e.name + "\":{\"dtype\":\"" + e.dtype + "\",\"shape\":" + shape +
              ",\"data_offsets\":[" + std::to_string(buffer.size()) + "," + std::to_string(buffer.size() + e.bytes.size()) +
              "]}";
    buffer += e.bytes;
    first = false;
  }
  header += ",\"__metadata__\":{\"format\":\"pt\"}}";
  if (!header_override.empty()) header = header_override;
  while (header.size() % 8) header += ' ';
  return le64(header.size()) + header + buffer;
}

std::string write(const std::string& dir, const std::string& name, const std::string& bytes) {
  const std::string path = dir + "/" + name;
  std::ofstream(path, std::ios::binary) << bytes;
  return path;
}

void expect_error(const std::string& path, const std::string& fragment) {
  CAPTURE(fragment);
  try {
    SafetensorsFile f(path);
    FAIL("no error for " << path);
  } catch (const InputError& e) {
    const std::string m = e.what();
    CHECK(m.find(path) != std::string::npos);
    CHECK(m.find(fragment) != std::string::npos);
  }
}

}  // namespace

TEST_CASE("safetensors: F32, F64, F16 and BF16 tensors read back exactly") {
  const auto dir = ess::test::temp_dir("st_ok");
  const std::uint16_t half[] = {0x3c00, 0xc100, 0x7bff, 0x0001, 0x7c00};  // 1, −2.5, 65504, 2^−24, +inf
  const std::uint16_t bf[] = {0x3f80, 0xc020, 0x0001};                     // 1, −2.5, smallest subnormal
  std::string half_bytes(reinterpret_cast<const char*>(half), sizeof half);
  std::string bf_bytes(reinterpret_cast<const char*>(bf), sizeof bf);
  const auto path = write(dir, "model.safetensors",
                          build({{"a.f32", "F32", {2, 2}, raw<float>({1.5f, -2.0f, 0.25f, 3.0f})},
                                 {"b.f64", "F64", {3}, raw<double>({0.1, -1e300, 7.0})},
                                 {"c.f16", "F16", {5}, half_bytes},
                                 {"d.bf16", "BF16", {3}, bf_bytes},
                                 {"e.scalar", "F32", {}, raw<float>({4.0f})}}));
  SafetensorsFile f(path);
  CHECK(f.names().size() == 5);
  CHECK(f.metadata().at("format") == "pt");
  auto a = f.read("a.f32");
  CHECK(a.shape == std::vector<std::int64_t>{2, 2});
  CHECK(a.data == std::vector<double>{1.5, -2.0, 0.25, 3.0});
  CHECK(f.read("b.f64").data == std::vector<double>{0.1, -1e300, 7.0});
  auto c = f.read("c.f16").data;
  CHECK(c[0] == 1.0);
  CHECK(c[1] == -2.5);
  CHECK(c[2] == 65504.0);
  CHECK(c[3] == std::ldexp(1.0, -24));
  CHECK(std::isinf(c[4]));
  auto d = f.read("d.bf16").data;
  CHECK(d[0] == 1.0);
  CHECK(d[1] == -2.5);
  CHECK(d[2] == std::ldexp(1.0, -133));  // bf16 0x0001 = float bits 0x00010000
  CHECK(f.read("e.scalar").data == std::vector<double>{4.0});
  CHECK_THROWS_WITH_AS(f.read("nope"), doctest::Contains("nope"), InputError);
  std::filesystem::remove_all(dir);
}

TEST_CASE("safetensors: malformed files are refused, naming the file and the tensor") {
  const auto dir = ess::test::temp_dir("st_bad");
  expect_error(write(dir, "short.safetensors", "abc"), "too short");
  expect_error(write(dir, "long_header.safetensors", le64(1000) + "{}"), "header length 1000");
  expect_error(write(dir, "json.safetensors", build({}, "{not json")), "not valid JSON");
  const std::string four = raw<float>({1, 2, 3, 4});
  expect_error(write(dir, "oob.safetensors",
                     build({}, "{\"w\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,16]}}") + four.substr(0, 8)),
               "'w'");
  expect_error(write(dir, "overlap.safetensors",
                     build({}, "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
                               "\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[4,12]}}") + four),
               "overlaps");
  expect_error(write(dir, "gap.safetensors",
                     build({}, "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
                               "\"b\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[8,12]}}") + four.substr(0, 12)),
               "gap");
  expect_error(write(dir, "count.safetensors",
                     build({}, "{\"w\":{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[0,16]}}") + four),
               "needs 12");
  expect_error(write(dir, "dtype.safetensors",
                     build({}, "{\"w\":{\"dtype\":\"Q4\",\"shape\":[4],\"data_offsets\":[0,16]}}") + four),
               "unknown dtype");
  std::filesystem::remove_all(dir);
}

TEST_CASE("checkpoint: single file, sharded index, missing shard and misplaced tensor") {
  const auto dir = ess::test::temp_dir("ckpt");
  namespace fs = std::filesystem;
  fs::create_directories(dir + "/single");
  write(dir + "/single", "model.safetensors", build({{"x", "F32", {1}, raw<float>({2.0f})}}));
  Checkpoint single(dir + "/single");
  CHECK(single.read("x").data == std::vector<double>{2.0});

  fs::create_directories(dir + "/sharded");
  write(dir + "/sharded", "model-00001-of-00002.safetensors", build({{"a", "F32", {1}, raw<float>({1.0f})}}));
  write(dir + "/sharded", "model-00002-of-00002.safetensors", build({{"b", "F64", {1}, raw<double>({3.0})}}));
  write(dir + "/sharded", "model.safetensors.index.json",
        R"({"metadata":{},"weight_map":{"a":"model-00001-of-00002.safetensors","b":"model-00002-of-00002.safetensors"}})");
  Checkpoint sharded(dir + "/sharded");
  CHECK(sharded.names() == std::vector<std::string>{"a", "b"});
  CHECK(sharded.read("b").data == std::vector<double>{3.0});
  CHECK(sharded.files().size() == 2);

  write(dir + "/sharded", "model.safetensors.index.json",
        R"({"weight_map":{"a":"model-00001-of-00002.safetensors","c":"model-00003-of-00003.safetensors"}})");
  CHECK_THROWS_WITH_AS(Checkpoint(dir + "/sharded"), doctest::Contains("model-00003-of-00003.safetensors"), InputError);
  write(dir + "/sharded", "model.safetensors.index.json",
        R"({"weight_map":{"b":"model-00001-of-00002.safetensors"}})");
  CHECK_THROWS_WITH_AS(Checkpoint(dir + "/sharded"), doctest::Contains("'b'"), InputError);
  fs::create_directories(dir + "/empty");
  CHECK_THROWS_WITH_AS(Checkpoint(dir + "/empty"), doctest::Contains("model.safetensors"), InputError);
  fs::remove_all(dir);
}

TEST_CASE("config.json with Infinity, -Infinity and NaN literals parses; strings stay strings") {
  auto j = parse_config_json(R"({"a": Infinity, "b": -Infinity, "c": NaN, "d": "Infinity", "e": [1, NaN], "f": 2.5})",
                             "config.json");
  CHECK(std::isinf(j["a"].get<double>()));
  CHECK(j["a"].get<double>() > 0);
  CHECK(j["b"].get<double>() < 0);
  CHECK(std::isnan(j["c"].get<double>()));
  CHECK(j["d"].get<std::string>() == "Infinity");
  CHECK(std::isnan(j["e"][1].get<double>()));
  CHECK(j["f"].get<double>() == 2.5);
  CHECK_THROWS_WITH_AS(parse_config_json("{\"a\": }", "cfg.json"), doctest::Contains("cfg.json"), InputError);
}
