// SHA-256: FIPS 180-4 / NIST known answers, and files read in chunks give the same digest.
#include <doctest/doctest.h>
#include <sys/stat.h>

#include <filesystem>
#include <fstream>

#include "libess/error.h"
#include "libess/sha256.h"
#include "test_helpers.h"

using namespace ess;

TEST_CASE("sha256: NIST known-answer vectors") {
  CHECK(sha256_hex("") == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  CHECK(sha256_hex("abc") == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  CHECK(sha256_hex("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq") ==
        "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
  CHECK(sha256_hex(std::string(1000000, 'a')) == "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0");
}

TEST_CASE("sha256: a file read in chunks has the digest of its bytes — non-regular files are refused") {
  const std::string dir = ess::test::temp_dir("sha256");
  std::string bytes;
  for (int k = 0; k < 3 * (1 << 20) + 17; ++k) bytes += static_cast<char>((k * 2654435761u) >> 24);  // spans chunks
  {
    std::ofstream f(dir + "/big.bin", std::ios::binary);
    f.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  }
  CHECK(sha256_file(dir + "/big.bin") == sha256_hex(bytes));
  CHECK_THROWS_AS(sha256_file(dir + "/missing.bin"), InputError);
  CHECK_THROWS_AS(sha256_file(dir), InputError);  // a directory
  REQUIRE(::mkfifo((dir + "/fifo").c_str(), 0600) == 0);
  CHECK_THROWS_AS(sha256_file(dir + "/fifo"), InputError);  // refused at once, never blocks
  std::filesystem::remove_all(dir);
}
