#pragma once
// The exclusive lock a run holds on its results file: `<out>.lock` beside it, locked with flock(2)
// and holding "host <name> pid <pid>". A second run on the same --out fails at once naming the
// holder; the lock goes with the process (also on SIGKILL), so a crash never leaves a stale lock.
#include <string>

namespace moetrace {

class OutputLock {
 public:
  // Takes the lock or throws InputError naming the holder's host and PID. Then removes a
  // `<out>.tmp` left by a crashed run (no other run can be writing it), saying so in the log.
  explicit OutputLock(const std::string& results_path);
  ~OutputLock();
  OutputLock(const OutputLock&) = delete;
  OutputLock& operator=(const OutputLock&) = delete;

 private:
  std::string lock_path_;
  int fd_ = -1;
};

}  // namespace moetrace
