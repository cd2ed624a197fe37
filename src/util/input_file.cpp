#include "util/input_file.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "util/error.h"

namespace moetrace {
namespace {

std::string errno_text(int err) {
  if (err == ELOOP) return "too many levels of symbolic links (a symlink loop)";
  return std::strerror(err);
}

}  // namespace

const char* file_type_name(mode_t mode) {
  if (S_ISREG(mode)) return "a regular file";
  if (S_ISDIR(mode)) return "a directory";
  if (S_ISFIFO(mode)) return "a FIFO";
  if (S_ISCHR(mode)) return "a character device";
  if (S_ISBLK(mode)) return "a block device";
  if (S_ISSOCK(mode)) return "a socket";
  return "a special file";
}

FileDescriptor::~FileDescriptor() {
  if (fd_ >= 0) ::close(fd_);
}

FileDescriptor& FileDescriptor::operator=(FileDescriptor&& o) noexcept {
  if (this != &o) {
    if (fd_ >= 0) ::close(fd_);
    fd_ = o.fd_;
    o.fd_ = -1;
  }
  return *this;
}

RegularFile open_regular_file(const std::filesystem::path& path, std::string_view what) {
  const std::string p = path.string();
  FileDescriptor fd(::open(p.c_str(), O_RDONLY | O_NONBLOCK | O_CLOEXEC | O_NOCTTY));
  if (fd.get() < 0) {
    const int err = errno;
    if (err == ENOENT) fail_input("{} {} does not exist", what, p);
    fail_input("cannot open {} {}: {}", what, p, errno_text(err));
  }
  struct stat st {};
  if (::fstat(fd.get(), &st) != 0) fail_input("cannot stat {} {}: {}", what, p, errno_text(errno));
  if (!S_ISREG(st.st_mode)) fail_input("{} {} is {}, not a regular file", what, p, file_type_name(st.st_mode));
  // Regular files ignore O_NONBLOCK; clear it anyway so that reads behave as documented.
  const int flags = ::fcntl(fd.get(), F_GETFL);
  if (flags >= 0) ::fcntl(fd.get(), F_SETFL, flags & ~O_NONBLOCK);
  return {std::move(fd), static_cast<std::uintmax_t>(st.st_size)};
}

std::string read_regular_file(const std::filesystem::path& path, std::string_view what, std::uintmax_t max_bytes) {
  RegularFile f = open_regular_file(path, what);
  if (f.size > max_bytes)
    fail_input("{} {} is {} bytes, more than the {} bytes such a file may have", what, path.string(), f.size,
               max_bytes);
  std::string text;
  text.resize(static_cast<std::size_t>(f.size));
  std::size_t got = 0;
  for (;;) {
    if (got == text.size()) {
      // The file may have grown since fstat: read on, within the bound.
      if (text.size() >= max_bytes + 1) break;
      text.resize(std::min<std::uintmax_t>(max_bytes + 1, text.size() + 65536));
    }
    const ssize_t n = ::read(f.fd.get(), text.data() + got, text.size() - got);
    if (n < 0) {
      if (errno == EINTR) continue;
      fail_input("cannot read {} {}: {}", what, path.string(), errno_text(errno));
    }
    if (n == 0) break;
    got += static_cast<std::size_t>(n);
  }
  if (got > max_bytes)
    fail_input("{} {} is more than the {} bytes such a file may have", what, path.string(), max_bytes);
  text.resize(got);
  return text;
}

PathKind input_path_kind(const std::filesystem::path& path, std::string_view what) {
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) {
    const int err = errno;
    if (err == ENOENT || err == ENOTDIR) return PathKind::Missing;
    fail_input("cannot access {} {}: {}", what, path.string(), errno_text(err));
  }
  if (S_ISREG(st.st_mode)) return PathKind::RegularFile;
  if (S_ISDIR(st.st_mode)) return PathKind::Directory;
  return PathKind::Other;
}

}  // namespace moetrace

#include "util/message.h"

namespace moetrace {

void require_regular_file(const std::filesystem::path& path, const std::string& what) {
  open_regular_file(path, what);
}

void require_file_or_directory(const std::filesystem::path& path, const std::string& what) {
  switch (input_path_kind(path, what)) {
    case PathKind::Missing: fail_input("{} {} does not exist", what, path.string());
    case PathKind::Other: fail_input("{} {} is neither a folder nor a regular file", what, path.string());
    default: return;
  }
}

std::string read_input_file(const std::filesystem::path& path, const std::string& what, std::uintmax_t max_bytes) {
  return read_regular_file(path, what, max_bytes);
}

std::string shorten(std::string_view value, std::size_t max_chars) { return truncate_for_message(value, max_chars); }

}  // namespace moetrace
