// SHA-256 through OpenSSL's EVP interface, used to record the identity of source files in results.
#include "libess/sha256.h"

#include <fcntl.h>
#include <openssl/evp.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <memory>
#include <stdexcept>
#include <vector>

#include "libess/error.h"

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

struct FileDescriptor {
  int fd;
  ~FileDescriptor() {
    if (fd >= 0) ::close(fd);
  }
};

}  // namespace

std::string sha256_file(const std::string& path) {
  // O_NONBLOCK: a FIFO or device given by mistake must not block the open.
  FileDescriptor f{::open(path.c_str(), O_RDONLY | O_NONBLOCK | O_CLOEXEC)};
  if (f.fd < 0) throw InputError(path + ": cannot read (" + std::strerror(errno) + ")");
  struct stat st {};
  if (::fstat(f.fd, &st) != 0 || !S_ISREG(st.st_mode)) throw InputError(path + ": not a regular file");
  DigestContext digest;
  std::vector<char> buffer(1 << 20);
  for (;;) {
    const ssize_t n = ::read(f.fd, buffer.data(), buffer.size());
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) throw InputError(path + ": read error (" + std::strerror(errno) + ")");
    if (n == 0) break;
    digest.update(buffer.data(), static_cast<size_t>(n));
  }
  return digest.hex();
}

std::string sha256_hex(const std::string& bytes) {
  DigestContext digest;
  digest.update(bytes.data(), bytes.size());
  return digest.hex();
}

}  // namespace ess
