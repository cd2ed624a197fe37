#pragma once
// A checksum over a whole results file, kept in the file's first 512 bytes (an HDF5 "user block":
// HDF5 reads the file from byte 512 on and leaves these bytes to the application).
//
// Why: HDF5 checks the data chunks (Fletcher32) but not its own metadata in the default file format
// (object and attribute headers, the global heap of variable-length strings), and the HDF5 1.10
// library can crash rather than fail on a damaged header. A file moetrace wrote is therefore
// checked as a whole *before* HDF5 parses any of it: damage anywhere is exit 2 naming the file.
//
// Layout of the seal (little-endian), the rest of the 512 bytes zero:
//   magic "MOETRACE-SEALED1" (16) | file size u64 | CRC-32 of bytes [512, size) u32 | CRC-32 of the
//   preceding 28 bytes u32
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace moetrace::h5::seal {

inline constexpr std::size_t kBlockBytes = 512;  // HDF5 user block size (a power of 2 >= 512)

// The first kBlockBytes of a sealed file whose remaining bytes are body[0, n).
std::vector<char> seal_block(const char* body, std::size_t n);

// Recomputes and writes the seal of a file on disk (after HDF5 closed it); fsyncs.
void seal_file(const std::string& path);

enum class State {
  Sealed,    // the seal is present and matches the file
  Unsealed,  // an HDF5 file without a seal (older moetrace or another program): not checked here
};

// Checks a file before HDF5 opens it. InputError (exit 2) naming the file when the seal is present
// and does not match (size or checksum), or when the file starts with a damaged seal. A file that
// is not HDF5 at all is left to the caller (State::Unsealed).
State check(const std::string& path);

}  // namespace moetrace::h5::seal
