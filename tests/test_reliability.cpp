// Reliability (issue 9, docs/reliability.md): bounded JSON, regular-file inputs that never block,
// overflow-checked sizes, the memory limit and guard, outputs that never replace an input, atomic
// writes that survive a full disk, stale temporary files, validated config numbers, bounded
// tokens files. Each case pins down one failure found by hand or by fuzzing.
#include <doctest/doctest.h>
#include <hdf5.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <limits>

#include "analysis/bench_cases.h"
#include "analysis/summary.h"
#include "libess/checked.h"
#include "libess/compute.h"
#include "libess/error.h"
#include "libess/files.h"
#include "libess/hdf5.h"
#include "libess/json.h"
#include "libess/memory.h"
#include "libess/output_path.h"
#include "libess/pipeline.h"
#include "libess/results_io.h"
#include "models/model.h"
#include "models/safetensors.h"
#include "models/tokens.h"
#include "operators/registry.h"
#include "test_helpers.h"

using namespace ess;
using ess::test::expect_input_error;
using ess::test::write_file;
namespace fs = std::filesystem;

namespace {

using ess::test::TempDir;

std::string read(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(f), {});
}

std::string nested(int depth, char open, char close, const std::string& inner = "") {
  return std::string(depth, open) + inner + std::string(depth, close);
}

// Restores the memory-limit override when a test ends.
struct MemoryOverride {
  explicit MemoryOverride(std::uint64_t bytes) { set_memory_limit_override(bytes); }
  ~MemoryOverride() { set_memory_limit_override(0); }
};

// Lowers RLIMIT_FSIZE (and ignores SIGXFSZ) for the scope, like `ulimit -f` on a full disk.
struct FileSizeLimit {
  struct rlimit old {};
  void (*old_handler)(int);
  explicit FileSizeLimit(rlim_t bytes) {
    ::getrlimit(RLIMIT_FSIZE, &old);
    old_handler = ::signal(SIGXFSZ, SIG_IGN);
    struct rlimit r = old;
    r.rlim_cur = bytes;
    ::setrlimit(RLIMIT_FSIZE, &r);
  }
  ~FileSizeLimit() {
    ::setrlimit(RLIMIT_FSIZE, &old);
    ::signal(SIGXFSZ, old_handler);
  }
};

// A PID that no process has: a child that has exited and been reaped.
pid_t dead_pid() {
  const pid_t child = ::fork();
  if (child == 0) ::_exit(0);
  int status = 0;
  ::waitpid(child, &status, 0);
  return child;
}

// An operator file whose datasets are declared (chunked, never written): a few KB on disk
// whatever the shapes say.
struct DeclaredDataset {
  std::string name;
  std::vector<hsize_t> dims;
};
std::string declared_operator_file(const std::string& path, const std::string& family,
                                   const std::vector<DeclaredDataset>& datasets, long long layer_index = 0,
                                   long long seq_len = 0) {
  {
    h5::OutputFile out(path);
    out.root().set_attr("format", std::string("ess-operators"));
    out.root().set_attr("format_version", std::vector<long long>{1, 0});
    auto g = out.root().create_group("layers/blk");
    g.set_attr("family", family);
    g.set_attr("layer_index", layer_index);
    if (seq_len) g.set_attr("seq_len", seq_len);
    for (const auto& d : datasets) {
      const hid_t space = H5Screate_simple(static_cast<int>(d.dims.size()), d.dims.data(), nullptr);
      REQUIRE(space >= 0);
      const hid_t dcpl = H5Pcreate(H5P_DATASET_CREATE);
      std::vector<hsize_t> chunk(d.dims.size(), 1);
      H5Pset_chunk(dcpl, static_cast<int>(chunk.size()), chunk.data());
      const hid_t ds = H5Dcreate2(g.id(), d.name.c_str(), H5T_IEEE_F32LE, space, H5P_DEFAULT, dcpl, H5P_DEFAULT);
      REQUIRE(ds >= 0);
      H5Dclose(ds);
      H5Pclose(dcpl);
      H5Sclose(space);
    }
    out.commit();
  }
  return path;
}

}  // namespace

// --- bounded JSON ---------------------------------------------------------------------------------

TEST_CASE("json: nesting deeper than the limit is refused while parsing, 100 000 deep does not crash") {
  JsonLimits limits;
  CHECK(parse_json(nested(64, '[', ']'), "t").is_array());  // exactly the limit
  expect_input_error([&] { parse_json(nested(65, '[', ']'), "t.json"); }, {"t.json", "deeper than 64"});
  expect_input_error([&] { parse_json(nested(100000, '[', ']'), "t.json"); }, {"deeper than 64"});
  std::string objects;
  for (int k = 0; k < 100000; ++k) objects += "{\"a\":";
  objects += "1" + std::string(100000, '}');
  expect_input_error([&] { parse_json(objects, "o.json"); }, {"deeper than 64"});
  limits.max_depth = 3;
  CHECK_NOTHROW(parse_json("{\"a\":{\"b\":[1]}}", "t", limits));
  expect_input_error([&] { parse_json("{\"a\":{\"b\":[[1]]}}", "t", limits); }, {"deeper than 3"});
}

TEST_CASE("json: a NUL byte anywhere is refused (nlohmann would stop reading there)") {
  using namespace std::string_literals;
  expect_input_error([] { parse_json("{}\0\0\0"s, "h"); }, {"h: not valid JSON", "NUL byte at offset 2"});
  expect_input_error([] { parse_json("{}\0garbage"s, "h"); }, {"NUL byte at offset 2"});
  expect_input_error([] { parse_json("{\"a\":\"x\0y\"}"s, "h"); }, {"NUL byte at offset 7"});
  CHECK(parse_json("{}   \n\t ", "h").empty());                             // trailing whitespace is fine
  expect_input_error([] { parse_json("{} x", "h"); }, {"not valid JSON"});  // anything else is not
}

TEST_CASE("json: size, value count and duplicate keys") {
  JsonLimits limits;
  limits.max_bytes = 10;
  expect_input_error([&] { parse_json("[1,2,3,4,5,6]", "big.json", limits); }, {"big.json", "13 bytes", "10"});
  limits = {};
  limits.max_values = 4;
  CHECK_NOTHROW(parse_json("[1,2,3]", "t", limits));
  expect_input_error([&] { parse_json("[1,2,3,4]", "t", limits); }, {"more than 4 values"});
  limits = {};
  CHECK(parse_json("{\"a\":1,\"a\":2}", "t")["a"] == 2);  // default: last wins, as in Python
  limits.unique_keys = true;
  expect_input_error([&] { parse_json("{\"a\":{\"b\":1,\"b\":2}}", "t", limits); }, {"'b'", "more than once"});
  CHECK_NOTHROW(parse_json("{\"a\":{\"b\":1},\"c\":{\"b\":2}}", "t", limits));  // same key in two objects
}

TEST_CASE("json: Python's bare Infinity/NaN only when asked, restored without recursion") {
  JsonLimits limits;
  expect_input_error([] { parse_json("{\"a\": NaN}", "t"); }, {"not valid JSON"});
  limits.python_literals = true;
  const auto j = parse_json("{\"a\": [Infinity, -Infinity, NaN, \"NaN\"], \"b\": {\"c\": NaN}}", "t", limits);
  CHECK(j["a"][0].get<double>() == std::numeric_limits<double>::infinity());
  CHECK(j["a"][1].get<double>() == -std::numeric_limits<double>::infinity());
  CHECK(std::isnan(j["a"][2].get<double>()));
  CHECK(j["a"][3] == "NaN");
  CHECK(std::isnan(j["b"]["c"].get<double>()));
  expect_input_error([&] { parse_json("{NaN: 1}", "t", limits); }, {"object key"});
  expect_input_error([&] { parse_json(nested(100000, '[', ']', "NaN"), "t", limits); }, {"deeper than 64"});
}

TEST_CASE("safetensors: NUL padding, deep headers and deep index files are refused — space padding is fine") {
  TempDir dir("st");
  const auto file = [](const std::string& header) {
    std::string out(8, '\0');
    for (int k = 0; k < 8; ++k) out[k] = static_cast<char>((header.size() >> (8 * k)) & 0xff);
    return out + header;
  };
  using namespace std::string_literals;
  expect_input_error([&] { st::SafetensorsFile f(write_file(dir / "nul.safetensors", file("{}\0\0\0\0"s))); },
                     {"nul.safetensors", "NUL byte"});
  expect_input_error([&] { st::SafetensorsFile f(write_file(dir / "nul2.safetensors", file("{}\0garbage"s))); },
                     {"NUL byte"});
  CHECK(st::SafetensorsFile(write_file(dir / "spaces.safetensors", file("{}      "))).names().empty());
  const std::string deep =
      "{\"w\":{\"dtype\":\"F32\",\"shape\":" + nested(100000, '[', ']') + ",\"data_offsets\":[0,0]}}";
  expect_input_error([&] { st::SafetensorsFile f(write_file(dir / "deep.safetensors", file(deep))); },
                     {"deep.safetensors", "deeper than 64"});
  fs::create_directories(dir.path / "ckpt");
  write_file(dir / "ckpt/model.safetensors.index.json", "{\"weight_map\":" + nested(100000, '[', ']') + "}");
  expect_input_error([&] { st::Checkpoint c(dir / "ckpt"); }, {"index.json", "deeper than 64"});
  write_file(dir / "ckpt/model.safetensors.index.json",
             "{\"weight_map\":{\"a\":\"x.safetensors\",\"a\":\"y.safetensors\"}}");
  expect_input_error([&] { st::Checkpoint c(dir / "ckpt"); }, {"'a'", "more than once"});
  write_file(dir / "cfg.json", "{\"a\":" + nested(100000, '[', ']') + "}");
  expect_input_error([&] { st::read_config_json(dir / "cfg.json"); }, {"cfg.json", "deeper than 64"});
}

TEST_CASE("safetensors: an empty F64 tensor reads as an empty tensor (fuzz: memcpy to a null pointer)") {
  // tools/fuzz/corpus/safetensors/crash-empty-f64-tensor; UBSan (tools/sanitize.sh) flagged the copy.
  const std::string input = std::string(ESS_SOURCE_DIR) + "/tools/fuzz/corpus/safetensors/crash-empty-f64-tensor";
  st::SafetensorsFile f(input);
  const Tensor t = f.read("z");
  CHECK(t.shape == std::vector<std::int64_t>{0, 4});
  CHECK(t.data.empty());
}

// --- files -----------------------------------------------------------------------------------------

TEST_CASE("files: FIFOs, directories and devices are refused at once, never waited on") {
  TempDir dir("files");
  REQUIRE(::mkfifo((dir / "fifo").c_str(), 0600) == 0);
  const auto t0 = std::chrono::steady_clock::now();
  expect_input_error([&] { InputFile f(dir / "fifo", "tokens file"); }, {"fifo", "tokens file", "a FIFO"});
  expect_input_error([&] { check_input_file(dir / "fifo", "HDF5 file"); }, {"a FIFO"});
  expect_input_error([&] { h5::open_file(dir / "fifo"); }, {"a FIFO"});
  expect_input_error([&] { st::SafetensorsFile f(dir / "fifo"); }, {"a FIFO"});
  expect_input_error([&] { st::read_config_json(dir / "fifo"); }, {"a FIFO"});
  expect_input_error([&] { read_tokens_file(dir / "fifo", 10); }, {"a FIFO"});
  expect_input_error([&] { read_operator_file(dir / "fifo"); }, {"a FIFO"});
  expect_input_error([&] { InputFile f(dir.path.string()); }, {"a directory"});
  expect_input_error([&] { InputFile f("/dev/zero"); }, {"a character device"});
  expect_input_error([&] { read_tokens_file("/dev/zero", 10); }, {"/dev/zero", "a character device"});
  expect_input_error([&] { InputFile f(dir / "absent"); }, {"no such file"});
  CHECK(std::chrono::steady_clock::now() - t0 < std::chrono::seconds(5));
  // A regular file reads back; a size cap is enforced before reading.
  write_file(dir / "f.txt", "hello");
  CHECK(read_input_file(dir / "f.txt", 5) == "hello");
  expect_input_error([&] { read_input_file(dir / "f.txt", 4); }, {"5 bytes", "4"});
}

TEST_CASE("files: an output may not be an input, however it is spelled") {
  TempDir dir("same");
  fs::create_directories(dir.path / "sub");
  const std::string in = write_file(dir / "in.h5", "data");
  expect_input_error([&] { check_output_path(in, {in}); }, {"refusing to write the output over the input"});
  expect_input_error([&] { check_output_path(dir / "sub/../in.h5", {in}); }, {"over the input"});
  fs::create_symlink(in, dir.path / "link.h5");
  expect_input_error([&] { check_output_path(in, {dir / "link.h5"}); }, {"over the input"});
  fs::create_hard_link(in, dir.path / "hard.h5");
  expect_input_error([&] { check_output_path(dir / "hard.h5", {in}); }, {"over the input"});
  CHECK_NOTHROW(check_output_path(dir / "out.h5", {in}));
  // Not existing yet, but the same name once resolved.
  expect_input_error([&] { check_output_path(dir / "sub/../new.h5", {dir / "new.h5"}); }, {"over the input"});
  // Outputs that are not regular files are refused (rename would replace a device node).
  REQUIRE(::mkfifo((dir / "fifo").c_str(), 0600) == 0);
  expect_input_error([&] { check_output_path(dir / "fifo"); }, {"not a regular file"});
  // With input tracking (the CLI), every file read is protected, even when not named.
  set_input_tracking(true);
  InputFile{in};
  expect_input_error([&] { write_file_atomically(dir / "hard.h5", std::string("x")); }, {"over the input"});
  CHECK(read(in) == "data");
  set_input_tracking(false);
  CHECK_NOTHROW(write_file_atomically(dir / "out.h5", std::string("x")));
}

TEST_CASE("files: atomic writes leave the old file and no temporary when the disk is full") {
  TempDir dir("atomic");
  const std::string out = dir / "out.bin";
  write_file_atomically(out, std::string("old"));
  CHECK(read(out) == "old");
  {
    FileSizeLimit limit(4096);  // like a full disk: writes past 4 KiB fail with EFBIG
    expect_input_error([&] { write_file_atomically(out, std::string(100000, 'x')); },
                       {out, "write failed", "File too large"});
  }
  CHECK(read(out) == "old");
  CHECK(std::distance(fs::directory_iterator(dir.path), fs::directory_iterator()) == 1);  // no .out.bin.tmpPID
  write_file_atomically(out, std::string("new"));
  CHECK(read(out) == "new");
}

TEST_CASE("hdf5: a results file that cannot be written fails cleanly — HDF5 stays usable") {
  TempDir dir("h5full");
  const std::string out = dir / "r.h5";
  const auto make = [&](std::size_t n) {
    h5::OutputFile f(out);
    std::vector<double> v(n);
    for (std::size_t k = 0; k < n; ++k) v[k] = std::sin(static_cast<double>(k));  // incompressible
    f.root().write("x", {static_cast<std::int64_t>(n)}, v.data());
    f.commit();
  };
  make(10);
  const std::string before = read(out);
  {
    FileSizeLimit limit(8192);
    expect_input_error([&] { make(100000); }, {out, "File too large"});
  }
  CHECK(read(out) == before);
  CHECK(std::distance(fs::directory_iterator(dir.path), fs::directory_iterator()) == 1);
  make(100000);  // the library is still in a clean state
  CHECK(h5::open_file(out).shape("x") == std::vector<std::int64_t>{100000});
}

TEST_CASE("files: stale temporary files of dead processes are removed, live ones kept") {
  TempDir dir("stale");
  const std::string out = dir / "r.h5";
  const std::string dead = dir / (".r.h5.tmp" + std::to_string(dead_pid()));
  const std::string mine = temp_path_for(out);
  const std::string init = dir / ".r.h5.tmp1";  // PID 1 is alive
  for (const auto& p : {dead, mine, init, dir / ".r.h5.tmpx1", dir / ".other.h5.tmp999999999"}) write_file(p, "x");
  CHECK(remove_stale_temp_files(out) == 1);
  CHECK(!fs::exists(dead));
  CHECK(fs::exists(mine));
  CHECK(fs::exists(init));
  CHECK(fs::exists(dir / ".r.h5.tmpx1"));
  CHECK(fs::exists(dir / ".other.h5.tmp999999999"));
}

TEST_CASE("files: a signal during the write phase removes the temporary file and kills the process") {
  TempDir dir("signal");
  const std::string out = dir / "r.bin";
  for (int sig : {SIGINT, SIGTERM, SIGHUP}) {
    CAPTURE(sig);
    int ready[2];
    REQUIRE(::pipe(ready) == 0);
    const pid_t child = ::fork();
    if (child == 0) {
      install_signal_cleanup();
      const std::string tmp = temp_path_for(out);
      register_temp_file(tmp);
      write_file(tmp, "partial");
      char c = 1;
      if (::write(ready[1], &c, 1) != 1) ::_exit(3);
      for (;;) ::pause();
    }
    char c;
    REQUIRE(::read(ready[0], &c, 1) == 1);
    ::kill(child, sig);
    int status = 0;
    ::waitpid(child, &status, 0);
    ::close(ready[0]);
    ::close(ready[1]);
    CHECK(WIFSIGNALED(status));
    CHECK(WTERMSIG(status) == sig);
    CHECK(std::distance(fs::directory_iterator(dir.path), fs::directory_iterator()) == 0);
  }
}

// --- sizes and memory ------------------------------------------------------------------------------

TEST_CASE("checked sizes: no signed overflow, no wrap-around") {
  CHECK(element_count({2, 3, 4}) == 24u);
  CHECK(element_count({}) == 1u);
  CHECK(element_count({0, std::numeric_limits<std::int64_t>::max()}) == 0u);
  CHECK(!element_count({-1, 2}));
  CHECK(!element_count({1LL << 40, 1LL << 40}));  // 2^80
  CHECK(!element_count({1LL << 32, 1LL << 31}));  // 2^63 > int64 max
  CHECK(checked_mul<int>(1 << 16, 1 << 15) == std::nullopt);
  CHECK(saturating_mul(1ULL << 40, 1ULL << 40) == std::numeric_limits<std::uint64_t>::max());
  CHECK(saturating_add(std::numeric_limits<std::uint64_t>::max(), 1) == std::numeric_limits<std::uint64_t>::max());
}

TEST_CASE("memory: sizes parse with binary and decimal units — bad sizes are usage errors") {
  CHECK(parse_memory_size("1000") == 1000u);
  CHECK(parse_memory_size("8G") == 8ULL << 30);
  CHECK(parse_memory_size("8g") == 8ULL << 30);
  CHECK(parse_memory_size("512MiB") == 512ULL << 20);
  CHECK(parse_memory_size("1.5GB") == 1500000000u);
  CHECK(parse_memory_size("2 kB") == 2000u);
  CHECK(parse_memory_size("3T") == 3ULL << 40);
  for (const char* bad : {"", "G", "-1G", "0", "1.2.3G", "8X", "8GiBs", "1e3", "99999999999T"}) {
    CAPTURE(bad);
    CHECK_THROWS_AS(parse_memory_size(bad), UsageError);
  }
  CHECK(format_bytes(999) == "999 bytes");
  CHECK(format_bytes(28'800'000'000ULL) == "28.8 GB");
  CHECK(format_bytes(1'073'741'824ULL) == "1.07 GB");
}

TEST_CASE("memory: the limit is the smallest of MemAvailable and the cgroup (v1 and v2, with ancestors)") {
  TempDir dir("mem");
  MemorySources s;
  s.meminfo = write_file(dir / "meminfo", "MemTotal: 64000000 kB\nMemAvailable:   40000000 kB\n");
  s.self_cgroup = dir / "cgroup";
  s.cgroup_root = dir / "sys";
  s.self_status = dir / "status";
  s.use_rlimits = false;
  write_file(s.self_cgroup, "0::/job/step\n");
  auto limit = memory_limit(s);
  CHECK(limit.bytes == 40000000ULL * 1024);
  CHECK(limit.source == "MemAvailable");
  // v2: the parent's memory.max binds (8 GB − 3 GB used + 1 GB inactive file cache = 6 GB).
  fs::create_directories(dir.path / "sys/job/step");
  write_file(dir / "sys/job/step/memory.max", "max\n");
  write_file(dir / "sys/job/memory.max", "8000000000\n");
  write_file(dir / "sys/job/memory.current", "3000000000\n");
  write_file(dir / "sys/job/memory.stat", "anon 2000000000\ninactive_file 1000000000\nactive_file 5\n");
  limit = memory_limit(s);
  CHECK(limit.bytes == 6000000000ULL);
  CHECK(limit.source.find("cgroup memory.max") != std::string::npos);
  CHECK(limit.source.find("/job") != std::string::npos);
  // v1 memory controller, tighter still; unlimited (≈2^63) values ignored.
  write_file(s.self_cgroup, "4:memory:/batch\n2:cpu:/\n");
  fs::create_directories(dir.path / "sys/memory/batch");
  write_file(dir / "sys/memory/memory.limit_in_bytes", "9223372036854771712\n");
  write_file(dir / "sys/memory/batch/memory.limit_in_bytes", "2000000000\n");
  write_file(dir / "sys/memory/batch/memory.usage_in_bytes", "500000000\n");
  write_file(dir / "sys/memory/batch/memory.stat", "total_inactive_file 100000000\n");
  limit = memory_limit(s);
  CHECK(limit.bytes == 1600000000ULL);
  CHECK(limit.source.find("memory.limit_in_bytes") != std::string::npos);
  // Nothing readable: unlimited.
  MemorySources none;
  none.meminfo = none.self_cgroup = dir / "absent";
  none.use_rlimits = false;
  CHECK(memory_limit(none).bytes == kUnlimitedMemory);
}

#if defined(__SANITIZE_ADDRESS__)
#define ESS_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define ESS_ASAN 1
#endif
#endif

TEST_CASE("memory: RLIMIT_AS minus what is mapped limits the process") {
#ifdef ESS_ASAN
  return;  // AddressSanitizer reserves terabytes of address space: an RLIMIT_AS would break it
#endif
  struct rlimit old {};
  ::getrlimit(RLIMIT_AS, &old);
  if (old.rlim_max != RLIM_INFINITY && old.rlim_max < (64ULL << 30)) return;
  MemorySources s;
  s.meminfo = s.self_cgroup = "/nonexistent";
  const std::uint64_t unlimited = memory_limit(s).bytes;
  struct rlimit r = old;
  r.rlim_cur = 64ULL << 30;  // far above what the test maps, far below what sanitizers reserve
  if (::setrlimit(RLIMIT_AS, &r) != 0) return;
  const MemoryLimit limit = memory_limit(s);
  ::setrlimit(RLIMIT_AS, &old);
  if (limit.source.find("RLIMIT_AS") == std::string::npos) return;  // ASan maps terabytes: nothing left
  CHECK(limit.bytes < (64ULL << 30));
  CHECK(limit.bytes <= unlimited);
}

TEST_CASE("memory: check_memory names the size, the limit, its source and the options") {
  MemoryOverride limit(1'000'000'000);
  CHECK_NOTHROW(check_memory(1'000'000'000, "x"));
  expect_input_error([] { check_memory(28'800'000'000ULL, "layer 'blk'", "use --indices"); },
                     {"layer 'blk' needs 28.8 GB", "at most 1.00 GB (--max-memory)", "use --indices", "--max-memory"});
  expect_input_error([] { check_memory(kUnlimitedMemory, "overflow"); }, {"more than 2^64 bytes"});
}

// --- operator files --------------------------------------------------------------------------------

TEST_CASE("operator files: dims multiplying past 2^64 and huge declared sizes are refused before reading") {
  TempDir dir("ops");
  expect_input_error(
      [&] {
        read_operator_file(declared_operator_file(dir / "overflow.h5", "dense",
                                                  {{"T", {1ULL << 40, 1ULL << 40, 1ULL << 20, 1ULL << 20}}}));
      },
      {"overflow.h5:/layers/blk/T", "multiply to more than 2^63"});
  MemoryOverride limit(4ULL << 30);
  // Mamba with L = 3·10^9: 8 KB on disk, 72+ GB declared.
  const hsize_t L = 3'000'000'000ULL;
  const auto t0 = std::chrono::steady_clock::now();
  expect_input_error(
      [&] {
        read_operator_file(declared_operator_file(
            dir / "mamba.h5", "mamba", {{"dt", {1, 2, L}}, {"A", {2, 4}}, {"B", {1, L, 4}}, {"C", {1, L, 4}}}));
      },
      {"mamba.h5", "needs 240 GB", "4.29 GB (--max-memory)", "/layers/blk/B [1, 3000000000, 4]"});
  // Dense L = 60000: refused before reading 28.8 GB (in well under a second).
  expect_input_error(
      [&] {
        read_operator_file(declared_operator_file(dir / "dense.h5", "dense", {{"T", {1, 1, 60000, 60000}}}));
      },
      {"dense.h5", "28.8 GB", "4.29 GB"});
  CHECK(std::chrono::steady_clock::now() - t0 < std::chrono::seconds(10));
  // An axis beyond int with nothing to allocate (another axis is 0).
  set_memory_limit_override(0);
  expect_input_error(
      [&] {
        read_operator_file(declared_operator_file(dir / "wide.h5", "linear_attention",
                                                  {{"q", {1, 1, 1ULL << 33, 0}}, {"k", {1, 1, 1ULL << 33, 0}}}));
      },
      {"wide.h5", "axis 2 is longer than 2147483647"});
}

TEST_CASE("results files: the total of all datasets is checked, not only each one (fuzz: 2 GB from 17 kB)") {
  // tools/fuzz/corpus/results/crash-fill-value-datasets (made by hand after CI's fuzz run saved an
  // input that timed out, then used 2.1 GB): two layer groups link the same chunked datasets whose
  // chunks were never written, so they read as their fill value. Each [1, 30, 10^6] dataset fits a
  // 256 MB limit on its own (240 MB); the layers' nine of them together need 2.2 GB.
  const std::string input = std::string(ESS_SOURCE_DIR) + "/tools/fuzz/corpus/results/crash-fill-value-datasets";
  MemoryOverride limit(256ULL << 20);
  const auto t0 = std::chrono::steady_clock::now();
  expect_input_error(
      [&] { (void)read_results(input); },
      {"crash-fill-value-datasets: the results read so far, up to", "crash-fill-value-datasets:/layers/x/",
       "268 MB (--max-memory)", "more data in all than this process may use"});
  CHECK(std::chrono::steady_clock::now() - t0 < std::chrono::seconds(10));
}

TEST_CASE("operator files: layer_index must lie in [0, 2^31 − 1] (2^40 was stored as 0)") {
  TempDir dir("index");
  for (long long index : {1LL << 40, -1LL}) {
    CAPTURE(index);
    expect_input_error(
        [&] {
          read_operator_file(declared_operator_file(dir / "i.h5", "dense", {{"T", {1, 1, 4, 4}}}, index));
        },
        {"layer_index", std::to_string(index), "out of range"});
  }
}

TEST_CASE("compute: a conv layer declaring seq_len 2^30 is refused before allocating, naming size and limit") {
  TempDir dir("conv");
  const std::string path = dir / "conv.h5";
  {
    h5::OutputFile out(path);
    out.root().set_attr("format", std::string("ess-operators"));
    out.root().set_attr("format_version", std::vector<long long>{1, 0});
    auto g = out.root().create_group("layers/c");
    g.set_attr("family", std::string("conv"));
    g.set_attr("layer_index", 0);
    g.set_attr("seq_len", 1LL << 30);
    const std::vector<double> h{1, 0.5, 0.25, 0.1};
    g.write("h", {1, 4}, h.data());
    out.commit();
  }
  const auto layers = read_operator_file(path);  // 32 bytes of data: reading is fine
  REQUIRE(layers.size() == 1);
  MemoryOverride limit(8ULL << 30);
  EssOptions o;
  // Through the pipeline, which puts the layer's name in front of the library's message.
  expect_input_error([&] { Pipeline(o).measure(layers[0]); },
                     {"layer 'c': ", "L = 1073741824", "8.59 GB (--max-memory)", "--indices"});
  o.indices = "1:3";
  expect_input_error([&] { compute_layer(layers[0], o); }, {"2 block(s)", "auto engine", "103 GB"});
  o.indices = "1:3";
  o.engine = EngineKind::dense;
  expect_input_error([&] { compute_layer(layers[0], o); }, {"dense engine", "set --engine to structured"});
  try {
    compute_layer(layers[0], o);
  } catch (const Error& e) {
    CHECK(e.options() == std::vector<std::string>{"max_memory", "indices", "engine", "max_memory"});
  }
}

TEST_CASE("pipeline: a layer that cannot fit is refused, named, before the first layer is measured") {
  std::mt19937 rng(3);
  std::vector<OperatorLayer> layers;
  for (int L : {8, 4000}) {  // the second layer's dense T alone is 128 MB (2 L² doubles)
    std::vector<Matrix> Ts{Matrix::Zero(L, L)};
    Ts[0].topLeftCorner(8, 8) = ess::test::random_matrix(rng, 8, 8).triangularView<Eigen::Lower>();
    layers.push_back({"layer" + std::to_string(L), 0, std::make_unique<ess::test::ExplicitOperator>(1, 1, Ts)});
  }
  MemoryOverride limit(64'000'000);
  EssOptions o;
  o.engine = EngineKind::dense;
  int progress_calls = 0;
  const Pipeline pipeline(o, [&](const MeasureProgress&) { ++progress_calls; });
  expect_input_error([&] { pipeline.measure_all(layers); },
                     {"layer 'layer4000': ", "L = 4000", "dense engine", "256 MB", "64.0 MB (--max-memory)"});
  CHECK(progress_calls == 0);  // refused before the first layer was measured
  CHECK(pipeline.measure(layers[0]).tolerance_ess.size() == 7);
  // With a smaller block selection the estimate counts only those blocks' results (T stays L×L).
  o.indices = "1:3";
  expect_input_error([&] { Pipeline(o).measure(layers[1]); }, {"2 block(s)", "256 MB"});
}

TEST_CASE("pipeline: a layer with no usable block is a numerical error (exit 4) naming the layer") {
  std::mt19937 rng(4);
  const int L = 6;
  Matrix good = ess::test::random_matrix(rng, L, L).triangularView<Eigen::Lower>();
  Matrix nan = good;
  nan.setConstant(std::numeric_limits<double>::quiet_NaN());
  Matrix huge = Matrix::Constant(L, L, 1e308).triangularView<Eigen::Lower>();  // finite, σ overflows
  const Pipeline pipeline{EssOptions{}};
  for (const Matrix* T : {&nan, &huge}) {
    OperatorLayer layer{"mixer.3", 3, std::make_unique<ess::test::ExplicitOperator>(1, 2, std::vector<Matrix>{*T, *T})};
    try {
      pipeline.measure(layer);
      FAIL("no error");
    } catch (const Error& e) {
      CHECK(e.code() == ExitCode::numerical);
      const std::string m = e.what();
      CAPTURE(m);
      CHECK(m.find("layer 'mixer.3': no usable block: 10 of 10 block(s) have non-finite singular values") == 0);
    }
  }
  // One usable channel is enough: the other's blocks keep their status.
  OperatorLayer mixed{"mixed", 0, std::make_unique<ess::test::ExplicitOperator>(1, 2, std::vector<Matrix>{good, nan})};
  const LayerResult R = pipeline.measure(mixed);
  CHECK(R.status[R.at(0, 0, 0)] == block_ok);
  CHECK(R.status[R.at(0, 1, 0)] == block_non_finite);
  // Uncertified blocks (lanczos: values with error bounds, a tolerance-ESS lower bound, an entropy
  // interval) are a result: a layer of them only is not an error (it was, with a message blaming
  // non-finite values and failed SVDs — 0 of each).
  EssOptions lo;
  lo.engine = EngineKind::lanczos;
  lo.lanczos.max_block_bytes = 64;  // the Spectra solver; a diffuse head's ~64 values do not fit it
  lo.indices = "60:160:20";
  OperatorLayer diffuse{"attn.0", 0, make_bench_case("long-diffuse", 200, 1, 8, 2).op};
  const LayerResult U = Pipeline(lo).measure(diffuse);
  for (std::uint8_t st : U.status) CHECK(st == block_uncertified);
  // Its summary (`ess report`): no usable block, so neither a mean nor a maximum (the maximum was 0).
  const LayerSummary S = summarize(U);
  CHECK(S.uncertified_blocks == 5);
  CHECK(std::isnan(S.mean_tolerance_ess));
  CHECK(std::isnan(S.max_tolerance_ess));
  CHECK(std::isnan(S.max_entropy_ess));
  // Nor a total: it was 0.0, summed into the model total as if the layer held no state.
  CHECK(S.measured_channels == 0);
  CHECK(std::isnan(S.total_tolerance_ess));
  CHECK(std::isnan(S.total_entropy_ess));
  // The mixed layer's totals cover its one measured channel; the model total leaves the
  // unmeasured layer out and counts it.
  const LayerSummary M = summarize(R);
  CHECK(M.measured_channels == 1);
  CHECK(M.total_tolerance_ess == M.mean_tolerance_ess);
  ResultsFile file;
  file.layers = {R, U};
  const ResultsSummary F = summarize(file);
  CHECK(F.unmeasured_layers == 1);
  CHECK(F.total_tolerance_ess == M.total_tolerance_ess);
  CHECK(F.total_entropy_ess == M.total_entropy_ess);
  file.layers = {U};
  CHECK(std::isnan(summarize(file).total_tolerance_ess));
}

TEST_CASE("models: a forward pass that cannot fit is refused before anything is computed") {
  const auto model = models::load_causal_lm(std::string(ESS_SOURCE_DIR) + "/data/checkpoints/tiny-llama");
  // tiny-llama: hidden 48, widest layer dimension 96 (intermediate), vocabulary 96.
  const std::uint64_t bound = models::forward_bytes_lower_bound(model->weights().declarations(), 96, 2, 1000, false);
  std::uint64_t layer_weights = 0;
  for (const auto& d : model->weights().declarations().list())
    if (d.active && d.per_layer) {
      std::uint64_t n = 1;
      for (auto x : d.shape) n *= static_cast<std::uint64_t>(x);
      layer_weights += n;
    }
  CHECK(bound == 8 * (2 * 1000 * (2 * 48 + 96) + 1000 * 96 + layer_weights + 96 * 48));
  CHECK(models::forward_bytes_lower_bound(model->weights().declarations(), 96, 2, 1000, true) == bound + 8 * 1000 * 96);
  MemoryOverride limit(50'000'000);
  const models::Tokens tokens(1, std::vector<int>(200'000, 1));
  const auto t0 = std::chrono::steady_clock::now();
  expect_input_error([&] { model->run(tokens); }, {"LlamaForCausalLM: the forward pass over 1 × 200000 tokens needs",
                                                   "50.0 MB (--max-memory)", "use fewer or shorter sequences"});
  CHECK(std::chrono::steady_clock::now() - t0 < std::chrono::seconds(5));
  CHECK(model->run(models::Tokens(1, std::vector<int>(16, 1))).layers.size() == 2);
}

TEST_CASE("compute: --indices with a huge step neither overflows nor allocates per position") {
  std::mt19937 rng(1);
  std::vector<Matrix> Ts{ess::test::random_matrix(rng, 6, 6).triangularView<Eigen::Lower>()};
  OperatorLayer layer{"x", 0, std::make_unique<ess::test::ExplicitOperator>(1, 1, Ts)};
  EssOptions o;
  o.indices = "1:6:9223372036854775807";
  CHECK(compute_layer(layer, o).indices == std::vector<int>{1});
  o.indices = "-9223372036854775807:-1";
  CHECK(compute_layer(layer, o).indices == std::vector<int>{1, 2, 3, 4});
  CHECK(count_indices("::2", 1 << 30) == (1 << 29));
}

// --- config.json numbers ---------------------------------------------------------------------------

TEST_CASE("config: integers in range, numbers finite, products within int — layers ≥ 1") {
  using models::Config;
  JsonLimits py;
  py.python_literals = true;
  const auto cfg = [&](const std::string& text) { return Config(parse_json(text, "c.json", py), "c.json"); };
  CHECK(cfg("{\"n\": 4}").integer("n") == 4);
  CHECK(cfg("{\"n\": 4.0}").integer("n") == 4);
  expect_input_error([&] { cfg("{\"num_hidden_layers\": 0}").integer("num_hidden_layers"); },
                     {"c.json", "'num_hidden_layers' = 0", "out of range [1,"});
  CHECK(cfg("{\"w\": 0}").integer("w", 5, Config::kNonNegative) == 0);
  for (const char* bad : {"NaN", "Infinity", "1e300", "-3", "4.5", "18446744073709551615", "\"4\"", "268435457"}) {
    CAPTURE(bad);
    expect_input_error([&] { cfg(std::string("{\"n\": ") + bad + "}").integer("n"); }, {"c.json", "'n'"});
  }
  for (const char* bad : {"NaN", "Infinity", "-Infinity"}) {
    CAPTURE(bad);
    expect_input_error([&] { cfg(std::string("{\"x\": ") + bad + "}").number("x"); }, {"c.json", "'x'"});
  }
  expect_input_error([&] { cfg("{\"x\": 1e400}"); }, {"c.json", "number overflow"});
  CHECK(cfg("{\"x\": 1e300}").number("x") == 1e300);
  expect_input_error([&] { cfg("{\"eps\": -1}").number("eps", Config::kNonNegativeNumber); }, {"'eps'"});
  // expand × hidden_size: finite, > 0, the product within [1, 2^28].
  CHECK(cfg("{\"expand\": 2}").scaled("expand", 2, 48) == 96);
  CHECK(cfg("{}").scaled("expand", 0.5, 48) == 24);
  for (const char* bad : {"NaN", "Infinity", "0", "-2", "1e300", "0.001"}) {
    CAPTURE(bad);
    expect_input_error([&] { cfg(std::string("{\"expand\": ") + bad + "}").scaled("expand", 2, 48); }, {"'expand'"});
  }
  // head_dim × heads overflowing int.
  const Config c = cfg("{}");
  CHECK(c.product({4, 16}, "heads × head_dim") == 64);
  expect_input_error(
      [&] {
        c.product({1 << 20, 1 << 20}, "heads × head_dim");
      },
      {"heads × head_dim", "1048576 × 1048576"});
  expect_input_error([&] { c.product({4, 0}, "heads × head_dim"); }, {"outside [1,"});
  // time_step_limit may be [0, Infinity] (the transformers default), never NaN.
  const auto lim = cfg("{\"t\": [0.0, Infinity]}").numbers("t", 2, {0.0, std::numeric_limits<double>::infinity()});
  CHECK(std::isinf(lim[1]));
  expect_input_error([&] { cfg("{\"t\": [NaN, 1]}").numbers("t", 2, {0.0, 1e9}); }, {"'t[0]'", "not a number"});
}

TEST_CASE("config: bad numbers in a checkpoint's config.json are refused when the model loads") {
  TempDir dir("cfg");
  const std::string src = std::string(ESS_SOURCE_DIR) + "/data/checkpoints/";
  struct Case {
    std::string fixture, field, value, fragment;
  };
  const std::vector<Case> cases = {
      {"tiny-mamba", "num_hidden_layers", "0", "'num_hidden_layers' = 0"},
      {"tiny-mamba", "expand", "NaN", "'expand'"},
      {"tiny-mamba2", "expand", "Infinity", "'expand'"},
      {"tiny-mamba2", "time_step_limit", "[NaN, 1.0]", "time_step_limit"},
      {"tiny-mamba2", "head_dim", "268435456", "num_heads × head_dim"},
      {"tiny-llama", "head_dim", "268435456", "num_attention_heads × head_dim"},
      {"tiny-llama", "rope_theta", "-1", "'rope_theta'"},
      {"tiny-llama", "rms_norm_eps", "NaN", "'rms_norm_eps'"},
      {"tiny-gla", "expand_k", "1e300", "'expand_k'"},
  };
  for (const auto& c : cases) {
    CAPTURE(c.fixture);
    CAPTURE(c.field);
    const fs::path d = dir.path / (c.fixture + "-" + c.field);
    fs::create_directories(d);
    for (const auto& e : fs::directory_iterator(src + c.fixture))
      if (e.path().extension() == ".safetensors" || e.path().filename() == "model.safetensors.index.json")
        fs::copy_file(e.path(), d / e.path().filename());
    auto j = st::read_config_json(src + c.fixture + "/config.json");
    if (c.fixture == "tiny-mamba" && c.field == "expand") j.erase("intermediate_size");
    j.erase(c.field);
    const std::string text = "{\"" + c.field + "\": " + c.value + ", " + j.dump().substr(1);
    write_file((d / "config.json").string(), text);
    expect_input_error([&] { models::load_causal_lm(d.string()); }, {"config.json", c.fragment});
  }
}

// --- tokens ----------------------------------------------------------------------------------------

TEST_CASE("tokens: a huge single line is refused before it is stored — limits are checked while reading") {
  TempDir dir("tokens");
  std::string line;
  while (line.size() <= kMaxTokenLineBytes) line += "1 2 3 4 5 6 7 8 9 ";
  write_file(dir / "long.txt", line + "\n");
  expect_input_error([&] { read_tokens_file(dir / "long.txt", 10); },
                     {"long.txt:1", "longer than " + std::to_string(kMaxTokenLineBytes) + " bytes"});
  write_file(dir / "word.txt", "1 " + std::string(1000, '7') + "\n");
  expect_input_error([&] { read_tokens_file(dir / "word.txt", 10); }, {"word.txt:1", "is not a token id", "..."});
  write_file(dir / "ok.txt", "\n1 2 3\n\n4 5 6");  // blank lines skipped, last line without a newline
  const auto batch = read_tokens_file(dir / "ok.txt", 10);
  CHECK(batch.tokens == models::Tokens{{1, 2, 3}, {4, 5, 6}});
}

TEST_CASE("tokens: --mqar numbers within int and n × len bounded like a tokens file") {
  CHECK(parse_mqar("kv=4,len=16,n=2").len == 16);
  for (const char* bad : {"len=99999999999", "n=-1", "kv=3000000000", "n=100000,len=1000000"}) {
    CAPTURE(bad);
    CHECK_THROWS_AS(parse_mqar(bad), UsageError);
  }
}
