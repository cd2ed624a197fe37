#pragma once
// SHA-256 of files (OpenSSL), recorded in every results file so that a result names the exact
// model files it came from.
#include <cstddef>
#include <filesystem>
#include <string>

namespace moetrace {

// Lower-case hex digest of the whole file; errors name the file.
std::string sha256_file(const std::filesystem::path& path);

// Lower-case hex digest of `bytes` bytes at `data`.
std::string sha256_bytes(const void* data, std::size_t bytes);

}  // namespace moetrace
