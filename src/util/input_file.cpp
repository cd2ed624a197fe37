#include "util/input_file.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "util/error.h"

namespace moetrace {
namespace {

std::string kind_of(const struct stat& st) {
  if (S_ISDIR(st.st_mode)) return "a directory";
  if (S_ISFIFO(st.st_mode)) return "a FIFO";
  if (S_ISSOCK(st.st_mode)) return "a socket";
  if (S_ISCHR(st.st_mode) || S_ISBLK(st.st_mode)) return "a device";
  return "not a regular file";
}

// Opens without blocking (a FIFO would wait for a writer), then checks the opened file itself, so
// that a file swapped between a check and the open is still caught.
int open_regular(const std::filesystem::path& path, const std::string& what, struct stat& st) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_NONBLOCK | O_CLOEXEC | O_NOCTTY);
  if (fd < 0) {
    const int err = errno;
    if (err == ENOENT) fail_input("{} {}: cannot open: no such file", what, path.string());
    fail_input("{} {}: cannot open: {}", what, path.string(), std::strerror(err));
  }
  const bool stat_ok = ::fstat(fd, &st) == 0;
  if (!stat_ok || !S_ISREG(st.st_mode)) {
    ::close(fd);
    fail_input("{} {}: {}, not a file", what, path.string(), stat_ok ? kind_of(st) : std::string("cannot be examined"));
  }
  const int flags = ::fcntl(fd, F_GETFL);
  if (flags >= 0) ::fcntl(fd, F_SETFL, flags & ~O_NONBLOCK);
  return fd;
}

}  // namespace

void require_regular_file(const std::filesystem::path& path, const std::string& what) {
  struct stat st;
  const int fd = open_regular(path, what, st);
  ::close(fd);
}

void require_file_or_directory(const std::filesystem::path& path, const std::string& what) {
  struct stat st;
  if (::stat(path.c_str(), &st) != 0) {
    const int err = errno;
    fail_input("{} {}: {}", what, path.string(), err == ENOENT ? std::string("no such file or folder") : std::strerror(err));
  }
  if (!S_ISDIR(st.st_mode) && !S_ISREG(st.st_mode))
    fail_input("{} {}: {}, not a folder or a file", what, path.string(), kind_of(st));
}

std::string read_input_file(const std::filesystem::path& path, const std::string& what, std::uint64_t max_bytes) {
  struct stat st;
  const int fd = open_regular(path, what, st);
  if (static_cast<std::uint64_t>(st.st_size) > max_bytes) {
    ::close(fd);
    fail_input("{} {}: {} bytes, more than the {} allowed", what, path.string(), st.st_size, max_bytes);
  }
  std::string out(static_cast<std::size_t>(st.st_size), '\0');
  std::size_t got = 0;
  while (got < out.size()) {
    const ssize_t n = ::read(fd, out.data() + got, out.size() - got);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      const int err = errno;
      ::close(fd);
      fail_input("{} {}: read error: {}", what, path.string(), std::strerror(err));
    }
    if (n == 0) break;  // shrank while reading
    got += static_cast<std::size_t>(n);
  }
  ::close(fd);
  out.resize(got);
  return out;
}

std::string shorten(std::string_view value, std::size_t max_chars) {
  if (value.size() <= max_chars) return std::string(value);
  std::size_t cut = max_chars;
  while (cut > 0 && (static_cast<unsigned char>(value[cut]) & 0xC0) == 0x80) --cut;  // not inside a UTF-8 sequence
  return fmt::format("{}... ({} bytes)", value.substr(0, cut), value.size());
}

}  // namespace moetrace
