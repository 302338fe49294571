// SHA-256 through OpenSSL's EVP interface, used to record the identity of source files in results.
#include "libess/sha256.h"

#include <openssl/evp.h>

#include <memory>
#include <stdexcept>
#include <vector>

#include "libess/error.h"
#include "libess/files.h"

namespace ess {
namespace {

struct DigestContext {
  std::unique_ptr<EVP_MD_CTX, decltype(&EVP_MD_CTX_free)> ctx{EVP_MD_CTX_new(), &EVP_MD_CTX_free};
  DigestContext() {
    if (!ctx || EVP_DigestInit_ex(ctx.get(), EVP_sha256(), nullptr) != 1)
      throw std::runtime_error("OpenSSL could not start a SHA-256 digest");
  }
  void update(const void* p, size_t n) {
    if (EVP_DigestUpdate(ctx.get(), p, n) != 1) throw std::runtime_error("OpenSSL SHA-256 update failed");
  }
  std::string hex() {
    unsigned char digest[EVP_MAX_MD_SIZE];
    unsigned int n = 0;
    if (EVP_DigestFinal_ex(ctx.get(), digest, &n) != 1) throw std::runtime_error("OpenSSL SHA-256 final failed");
    static const char* digits = "0123456789abcdef";
    std::string out;
    for (unsigned int k = 0; k < n; ++k) {
      out += digits[digest[k] >> 4];
      out += digits[digest[k] & 15];
    }
    return out;
  }
};

}  // namespace

std::string sha256_file(const std::string& path) {
  const InputFile file(path);  // regular files only, opened without blocking
  DigestContext digest;
  std::vector<char> buffer(1 << 20);
  for (;;) {
    const std::size_t n = file.read_some(buffer.data(), buffer.size());
    digest.update(buffer.data(), n);
    if (n < buffer.size()) break;
  }
  return digest.hex();
}

std::string sha256_hex(const std::string& bytes) {
  DigestContext digest;
  digest.update(bytes.data(), bytes.size());
  return digest.hex();
}

}  // namespace ess
