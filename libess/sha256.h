#pragma once
#include <string>

namespace ess {
// Hex SHA-256 (FIPS 180-4, computed by OpenSSL) of a regular file's bytes, read in chunks. Throws
// InputError if it cannot be read or is not a regular file.
std::string sha256_file(const std::string& path);
// Hex SHA-256 of a byte string.
std::string sha256_hex(const std::string& bytes);
}  // namespace ess
