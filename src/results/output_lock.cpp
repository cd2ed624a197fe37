#include "results/output_lock.h"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>

#include "util/error.h"
#include "util/input_file.h"
#include "util/logging.h"

namespace moetrace {
namespace {

std::string read_holder(int fd) {
  char buf[256];
  const ssize_t n = ::pread(fd, buf, sizeof buf - 1, 0);
  std::string s(buf, n > 0 ? static_cast<std::size_t>(n) : 0);
  while (!s.empty() && (s.back() == '\n' || s.back() == '\0')) s.pop_back();
  return s.empty() ? "an unknown process (it has not written its host and PID yet)" : shorten(s, 200);
}

}  // namespace

OutputLock::OutputLock(const std::string& results_path) : lock_path_(results_path + ".lock") {
  // Retried when the file we locked was unlinked by a finishing holder in the meantime: then the
  // lock must be taken on the file now at that path.
  for (int attempt = 0; attempt < 10; ++attempt) {
    const int fd = ::open(lock_path_.c_str(), O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK, 0644);
    if (fd < 0)
      fail_input("cannot create the lock file {} for --out {}: {}", lock_path_, results_path, std::strerror(errno));
    struct stat st;
    if (::fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
      ::close(fd);
      fail_input("{} (the lock file of --out {}) is not a regular file", lock_path_, results_path);
    }
    if (::flock(fd, LOCK_EX | LOCK_NB) != 0) {
      const int err = errno;
      const std::string holder = err == EWOULDBLOCK ? read_holder(fd) : std::string();
      ::close(fd);
      if (err == EWOULDBLOCK)
        fail_input("{} is being written by another moetrace run ({}; lock file {}): wait for it to finish, or "
                   "choose another --out", results_path, holder, lock_path_);
      fail_input("cannot lock {} for --out {}: {}", lock_path_, results_path, std::strerror(err));
    }
    struct stat now;
    if (::stat(lock_path_.c_str(), &now) != 0 || now.st_ino != st.st_ino || now.st_dev != st.st_dev) {
      ::close(fd);
      continue;
    }
    char host[256] = "unknown-host";
    ::gethostname(host, sizeof host - 1);
    host[sizeof host - 1] = '\0';
    const std::string text = fmt::format("host {} pid {}\n", host, ::getpid());
    if (::ftruncate(fd, 0) != 0 || ::pwrite(fd, text.data(), text.size(), 0) != static_cast<ssize_t>(text.size()))
      spdlog::warn("cannot write the holder into the lock file {}: {}", lock_path_, std::strerror(errno));
    fd_ = fd;
    break;
  }
  if (fd_ < 0) fail_input("cannot take the lock {} for --out {}: it keeps being replaced", lock_path_, results_path);

  // No other run holds the lock, so a temporary snapshot is what a crashed run left behind.
  const std::string tmp = results_path + ".tmp";
  std::error_code ec;
  const auto type = std::filesystem::symlink_status(tmp, ec).type();
  if (type == std::filesystem::file_type::regular) {
    if (std::filesystem::remove(tmp, ec))
      spdlog::warn("removed {}, an unfinished snapshot left by an interrupted run (the last complete snapshot, if "
                   "any, is {})", tmp, results_path);
    else
      fail_input("{} was left by an interrupted run and cannot be removed: {}", tmp, ec.message());
  } else if (type != std::filesystem::file_type::not_found && type != std::filesystem::file_type::none) {
    fail_input("{} exists and is not a regular file: move it away (the run writes its snapshots there)", tmp);
  }
}

OutputLock::~OutputLock() {
  if (fd_ < 0) return;
  // Unlink first, while still holding the lock: a run waiting on this file retries on the new one.
  ::unlink(lock_path_.c_str());
  ::close(fd_);
}

}  // namespace moetrace
