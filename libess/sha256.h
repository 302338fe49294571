#pragma once
#include <string>

namespace ess {
// Hex SHA-256 of a file's bytes (FIPS 180-4). Throws InputError if it cannot be read.
std::string sha256_file(const std::string& path);
// Hex SHA-256 of a byte string.
std::string sha256_hex(const std::string& bytes);
}  // namespace ess
