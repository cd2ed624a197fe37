#include "results/file_seal.h"

#include <fcntl.h>
#include <unistd.h>

#include <array>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <vector>

#include "results/journal.h"
#include "util/error.h"

namespace moetrace::h5::seal {
namespace {

constexpr char kMagic[16] = {'M', 'O', 'E', 'T', 'R', 'A', 'C', 'E', '-', 'S', 'E', 'A', 'L', 'E', 'D', '1'};
constexpr unsigned char kHdf5Signature[8] = {0x89, 'H', 'D', 'F', '\r', '\n', 0x1a, '\n'};
constexpr std::size_t kHeaderBytes = 32;

std::uint32_t crc_of(std::uint32_t crc, const char* p, std::size_t n) { return journal::crc32_of(p, n, crc); }
std::uint32_t crc_start() { return 0; }

void put_u64(char* p, std::uint64_t v) {
  for (int i = 0; i < 8; ++i) p[i] = static_cast<char>((v >> (8 * i)) & 0xff);
}
void put_u32(char* p, std::uint32_t v) {
  for (int i = 0; i < 4; ++i) p[i] = static_cast<char>((v >> (8 * i)) & 0xff);
}
std::uint64_t get_u64(const char* p) {
  std::uint64_t v = 0;
  for (int i = 7; i >= 0; --i) v = (v << 8) | static_cast<unsigned char>(p[i]);
  return v;
}
std::uint32_t get_u32(const char* p) {
  std::uint32_t v = 0;
  for (int i = 3; i >= 0; --i) v = (v << 8) | static_cast<unsigned char>(p[i]);
  return v;
}

std::array<char, kHeaderBytes> header(std::uint64_t size, std::uint32_t body_crc) {
  std::array<char, kHeaderBytes> h{};
  std::memcpy(h.data(), kMagic, sizeof kMagic);
  put_u64(h.data() + 16, size);
  put_u32(h.data() + 24, body_crc);
  put_u32(h.data() + 28, crc_of(crc_start(), h.data(), 28));
  return h;
}

// The size of `path` and the CRC-32 of its bytes from kBlockBytes to the end (of none when the
// file is shorter than the block: a file cut inside its seal reports its real size).
std::pair<std::uint64_t, std::uint32_t> body_of(const std::string& path) {
  std::ifstream in(path, std::ios::binary | std::ios::ate);
  if (!in) fail_input("cannot read {}", path);
  const std::streamoff end = in.tellg();
  if (end < 0) fail_input("cannot read {}", path);
  std::uint32_t crc = crc_start();
  if (static_cast<std::uint64_t>(end) <= kBlockBytes) return {static_cast<std::uint64_t>(end), crc};
  in.seekg(static_cast<std::streamoff>(kBlockBytes));
  std::uint64_t size = kBlockBytes;
  std::vector<char> buf(1 << 20);
  while (in) {
    in.read(buf.data(), static_cast<std::streamsize>(buf.size()));
    const auto got = static_cast<std::size_t>(in.gcount());
    crc = crc_of(crc, buf.data(), got);
    size += got;
  }
  if (in.bad()) fail_input("cannot read {}", path);
  return {size, crc};
}

[[noreturn]] void fail_seal(const std::string& path, const std::string& what) {
  fail_input("{}: the file is damaged: {} (the whole-file checksum moetrace writes into its first 512 bytes). "
             "It was changed after moetrace wrote it (disk or copy error, truncation, or an edit by another "
             "program). Rerun from an earlier copy or afresh; the file is left as it is",
             path, what);
}

}  // namespace

std::vector<char> seal_block(const char* body, std::size_t n) {
  std::vector<char> block(kBlockBytes, '\0');
  const auto h = header(kBlockBytes + static_cast<std::uint64_t>(n), crc_of(crc_start(), body, n));
  std::memcpy(block.data(), h.data(), h.size());
  return block;
}

void seal_file(const std::string& path) {
  const auto [size, crc] = body_of(path);
  const auto h = header(size, crc);
  const int fd = ::open(path.c_str(), O_WRONLY);
  if (fd < 0) fail_input("cannot write {}: {}", path, std::strerror(errno));
  const ssize_t n = ::pwrite(fd, h.data(), h.size(), 0);
  const bool ok = n == static_cast<ssize_t>(h.size()) && ::fsync(fd) == 0;
  const int err = errno;
  ::close(fd);
  if (!ok) fail_input("cannot write {}: {}", path, std::strerror(err));
}

State check(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return State::Unsealed;  // the caller reports the missing or unreadable file
  std::array<char, kBlockBytes + 8> head{};
  in.read(head.data(), static_cast<std::streamsize>(head.size()));
  const auto got = static_cast<std::size_t>(in.gcount());
  const bool hdf5_at_0 = got >= 8 && std::memcmp(head.data(), kHdf5Signature, 8) == 0;
  const bool hdf5_at_block = got >= kBlockBytes + 8 && std::memcmp(head.data() + kBlockBytes, kHdf5Signature, 8) == 0;
  const bool magic = got >= kHeaderBytes && std::memcmp(head.data(), kMagic, sizeof kMagic) == 0;
  if (!magic) {
    // A file moetrace sealed has its HDF5 superblock at byte 512; one with the superblock there but
    // no seal had its first bytes damaged.
    if (hdf5_at_block && !hdf5_at_0) fail_seal(path, "its first 512 bytes (the seal) are not moetrace's");
    return State::Unsealed;
  }
  if (get_u32(head.data() + 28) != crc_of(crc_start(), head.data(), 28)) fail_seal(path, "its seal is damaged");
  const std::uint64_t want_size = get_u64(head.data() + 16);
  const std::uint32_t want_crc = get_u32(head.data() + 24);
  in.close();
  const auto [size, crc] = body_of(path);
  if (size != want_size)
    fail_seal(path, "it has " + std::to_string(size) + " bytes where " + std::to_string(want_size) + " were written");
  if (crc != want_crc) fail_seal(path, "its checksum does not match");
  return State::Sealed;
}

}  // namespace moetrace::h5::seal
