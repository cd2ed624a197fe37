#include "results/journal.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <bit>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <string_view>

#include <zlib.h>

#include "util/error.h"
#include "util/input_file.h"

namespace moetrace::journal {
namespace {

static_assert(std::endian::native == std::endian::little, "the journal stores raw data little-endian");

constexpr char kFileMagic[8] = {'M', 'T', 'J', 'R', 'N', 'L', '0', '1'};
constexpr char kRecordMagic[4] = {'M', 'T', 'R', 'C'};
constexpr std::size_t kHeaderBytes = 24;
constexpr std::size_t kRecordHeaderBytes = 20;

void put_u64(char* p, std::uint64_t v) {
  for (int i = 0; i < 8; ++i) p[i] = static_cast<char>(v >> (8 * i));
}
void put_u32(char* p, std::uint32_t v) {
  for (int i = 0; i < 4; ++i) p[i] = static_cast<char>(v >> (8 * i));
}
std::uint64_t get_u64(const char* p) {
  std::uint64_t v = 0;
  for (int i = 0; i < 8; ++i) v |= std::uint64_t{static_cast<unsigned char>(p[i])} << (8 * i);
  return v;
}
std::uint32_t get_u32(const char* p) {
  std::uint32_t v = 0;
  for (int i = 0; i < 4; ++i) v |= std::uint32_t{static_cast<unsigned char>(p[i])} << (8 * i);
  return v;
}

std::string file_header(const Base& base) {
  std::string h(kHeaderBytes, '\0');
  std::memcpy(h.data(), kFileMagic, 8);
  put_u64(h.data() + 8, base.size);
  put_u32(h.data() + 16, base.crc);
  put_u32(h.data() + 20, crc32_of(h.data(), 20));
  return h;
}

std::string record_header(const std::string& payload) {
  std::string h(kRecordHeaderBytes, '\0');
  std::memcpy(h.data(), kRecordMagic, 4);
  put_u64(h.data() + 4, payload.size());
  put_u32(h.data() + 12, crc32_of(payload.data(), payload.size()));
  put_u32(h.data() + 16, crc32_of(h.data(), 16));
  return h;
}

void write_all(int fd, const std::string& path, const std::string& bytes) {
  std::size_t done = 0;
  while (done < bytes.size()) {
    const ssize_t n = ::write(fd, bytes.data() + done, bytes.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      const int e = errno;
      ::close(fd);
      fail_input("cannot write the checkpoint journal {}: {}", path, std::strerror(e));
    }
    done += static_cast<std::size_t>(n);
  }
}

bool all_zero(const std::string& s, std::size_t from) {
  return std::all_of(s.begin() + static_cast<std::ptrdiff_t>(from), s.end(), [](char c) { return c == 0; });
}

// Whether a whole record header (its magic and a matching header checksum) starts anywhere in
// s[from, end): what tells a damaged record with records after it from a damaged last one, whose
// size field cannot be trusted to say where it ends.
bool record_header_after(const std::string& s, std::size_t from) {
  const std::string_view v(s);
  for (std::size_t at = v.find(std::string_view(kRecordMagic, 4), from);
       at != std::string_view::npos && at + kRecordHeaderBytes <= s.size();
       at = v.find(std::string_view(kRecordMagic, 4), at + 1))
    if (get_u32(s.data() + at + 16) == crc32_of(s.data() + at, 16)) return true;
  return false;
}

[[noreturn]] void fail_not_regular(const std::string& path, mode_t mode) {
  struct stat link;
  const bool symlink = ::lstat(path.c_str(), &link) == 0 && S_ISLNK(link.st_mode);
  fail_input("{} is not a regular file ({}{}): a checkpoint journal must be one. Move it away to resume from the "
             "last full snapshot ({}) alone", path, symlink ? "a symbolic link to " : "", file_type_name(mode),
             path.substr(0, path.size() - 8));
}

// The bytes of a journal known to exist: only a regular file is read (a directory, a FIFO, a
// socket, a device, or a link to one is an InputError before anything blocks), through one
// descriptor, and no more than the size it had when opened.
std::string read_regular_file(const std::string& path) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_NONBLOCK | O_CLOEXEC);
  if (fd < 0) fail_input("cannot read the checkpoint journal {}: {}", path, std::strerror(errno));
  struct stat st {};
  if (::fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {  // replaced since stat(2)
    ::close(fd);
    fail_not_regular(path, st.st_mode);
  }
  std::string s(static_cast<std::size_t>(st.st_size), '\0');
  std::size_t got = 0;
  while (got < s.size()) {
    const ssize_t n = ::pread(fd, s.data() + got, s.size() - got, static_cast<off_t>(got));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      const int e = errno;
      ::close(fd);
      fail_input("cannot read the checkpoint journal {}: {}", path, std::strerror(e));
    }
    if (n == 0) break;  // shortened since fstat
    got += static_cast<std::size_t>(n);
  }
  ::close(fd);
  s.resize(got);
  return s;
}

}  // namespace

std::uint32_t crc32_of(const void* data, std::size_t n, std::uint32_t start) {
  uLong crc = start;
  const auto* p = static_cast<const Bytef*>(data);
  for (std::size_t off = 0; off < n; off += 1u << 30)
    crc = crc32(crc, p + off, static_cast<uInt>(std::min<std::size_t>(n - off, 1u << 30)));
  return static_cast<std::uint32_t>(crc);
}

Base base_of_bytes(const void* data, std::size_t n, const Base& before) {
  return {before.size + n, crc32_of(data, n, before.crc)};
}

Base base_of_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) fail_input("cannot read {}", path);
  uLong crc = crc32(0L, Z_NULL, 0);
  std::uint64_t size = 0;
  std::vector<char> buf(1 << 20);
  while (in) {
    in.read(buf.data(), static_cast<std::streamsize>(buf.size()));
    const auto got = static_cast<std::size_t>(in.gcount());
    crc = crc32(crc, reinterpret_cast<const Bytef*>(buf.data()), static_cast<uInt>(got));
    size += got;
  }
  if (in.bad()) fail_input("cannot read {}", path);
  return {size, static_cast<std::uint32_t>(crc)};
}

std::size_t Writer::append(const Base& base, const std::string& payload) {
  std::string bytes;
  const bool create = size_ == 0;
  if (create) bytes = file_header(base);
  bytes += record_header(payload);
  bytes += payload;
  const int fd = ::open(path_.c_str(), O_WRONLY | O_CREAT | O_APPEND | (create ? O_TRUNC : 0), 0644);
  if (fd < 0) fail_input("cannot open the checkpoint journal {}: {}", path_, std::strerror(errno));
  write_all(fd, path_, bytes);
  if (::fsync(fd) != 0 || ::close(fd) != 0)
    fail_input("cannot sync the checkpoint journal {}: {}", path_, std::strerror(errno));
  size_ += bytes.size();
  return bytes.size();
}

void Writer::remove() {
  if (::unlink(path_.c_str()) != 0 && errno != ENOENT)
    fail_input("cannot remove the checkpoint journal {}: {}", path_, std::strerror(errno));
  size_ = 0;
}

ReadResult read(const std::string& path, const Base& base) {
  ReadResult r;
  struct stat st;
  if (::stat(path.c_str(), &st) != 0) {
    if (errno == ENOENT) return r;  // no journal (or a dangling link, removed with the next snapshot)
    fail_input("cannot read the checkpoint journal {}: {}", path, std::strerror(errno));
  }
  r.present = true;
  if (!S_ISREG(st.st_mode)) fail_not_regular(path, st.st_mode);  // before open(2) could block on a FIFO
  const std::string s = read_regular_file(path);
  // Created by one write of header + first record: a short or zero-filled header is a torn creation.
  if (s.size() < kHeaderBytes || all_zero(s, 0)) {
    r.dropped_bytes = s.size();
    return r;
  }
  if (std::memcmp(s.data(), kFileMagic, 8) != 0 || get_u32(s.data() + 20) != crc32_of(s.data(), 20))
    fail_input("{}: the checkpoint journal's header is damaged (not a moetrace journal, or corrupted): move it "
               "away to resume from the last full snapshot alone", path);
  if (Base{get_u64(s.data() + 8), get_u32(s.data() + 16)} != base) {
    r.stale = true;
    return r;
  }
  std::size_t pos = kHeaderBytes;
  r.good_bytes = pos;
  for (std::size_t record = 1; pos < s.size(); ++record) {
    const std::size_t left = s.size() - pos;
    const char* h = s.data() + pos;
    const bool header_ok = left >= kRecordHeaderBytes && std::memcmp(h, kRecordMagic, 4) == 0 &&
                           get_u32(h + 16) == crc32_of(h, 16);
    if (!header_ok) {
      // A record is appended by one write: a torn one is a prefix (or, after a power loss, zeros);
      // a damaged header hides the record's size, so records follow only if a whole header does.
      if (!record_header_after(s, pos + 1)) break;
      fail_input("{}: checkpoint journal record {} (at byte {}) is damaged (its header checksum does not match) and "
                 "records follow it: the journal cannot be trusted. Move it away to resume from the last full "
                 "snapshot ({}) alone", path, record, pos, path.substr(0, path.size() - 8));
    }
    const std::uint64_t n = get_u64(h + 4);
    if (n > left - kRecordHeaderBytes) break;  // torn: cut off by the end of the file
    const char* payload = h + kRecordHeaderBytes;
    if (get_u32(h + 12) != crc32_of(payload, n)) {
      if (!record_header_after(s, pos + kRecordHeaderBytes + n)) break;  // the last record: damaged, dropped
      fail_input("{}: checkpoint journal record {} (at byte {}) is damaged (its checksum does not match) and records "
                 "follow it: the journal cannot be trusted. Move it away to resume from the last full snapshot ({}) "
                 "alone", path, record, pos, path.substr(0, path.size() - 8));
    }
    r.payloads.emplace_back(payload, n);
    pos += kRecordHeaderBytes + n;
    r.good_bytes = pos;
  }
  r.dropped_bytes = s.size() - r.good_bytes;
  return r;
}

void PayloadWriter::u64(std::uint64_t v) {
  char b[8];
  put_u64(b, v);
  out_.append(b, 8);
}
void PayloadWriter::f64(double v) { u64(std::bit_cast<std::uint64_t>(v)); }
void PayloadWriter::str(const std::string& s) {
  u64(s.size());
  out_ += s;
}
void PayloadWriter::sizes(const std::vector<std::size_t>& v) {
  u64(v.size());
  for (std::size_t x : v) u64(x);
}
void PayloadWriter::bytes(const void* p, std::size_t n) { out_.append(static_cast<const char*>(p), n); }

void PayloadReader::fail(const std::string& why) const {
  fail_input("{}: {} (at byte {} of its payload)", what_, why, pos_);
}
const char* PayloadReader::bytes(std::size_t n) {
  if (n > p_.size() - pos_) fail("the record ends early");
  const char* p = p_.data() + pos_;
  pos_ += n;
  return p;
}
std::uint8_t PayloadReader::u8() { return static_cast<std::uint8_t>(*bytes(1)); }
std::uint64_t PayloadReader::u64() { return get_u64(bytes(8)); }
double PayloadReader::f64() { return std::bit_cast<double>(u64()); }
std::string PayloadReader::str() {
  const std::uint64_t n = u64();
  return std::string(bytes(n), n);
}
std::vector<std::size_t> PayloadReader::sizes() {
  const std::uint64_t n = u64();
  if (n > 32) fail("a shape of more than 32 dimensions");
  std::vector<std::size_t> v(n);
  for (auto& x : v) x = u64();
  return v;
}

}  // namespace moetrace::journal
