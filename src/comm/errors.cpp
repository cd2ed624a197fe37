#include "comm/errors.h"

#include <cstdio>
#include <cstdlib>

namespace moetrace {

void check_all(Communicator& comm, bool ok, const std::string& message) {
  if (comm.size() == 1) {
    if (!ok) throw CollectiveError(message);
    return;
  }
  // One flag byte per rank plus the failing ranks' messages: every rank sees the same buffers, so
  // every rank takes the same decision and throws the same message.
  const std::string tagged = ok ? std::string(1, '\0') : '\1' + message;
  const Bytes mine(tagged.begin(), tagged.end());
  const std::vector<Bytes> all = comm.allgather(mine);
  int first = -1, failed = 0;
  for (int r = 0; r < static_cast<int>(all.size()); ++r)
    if (!all[r].empty() && all[r][0] != 0) {
      if (first < 0) first = r;
      ++failed;
    }
  if (first < 0) return;
  bool same_everywhere = failed == comm.size();
  for (const Bytes& b : all) same_everywhere = same_everywhere && b == all[first];
  if (same_everywhere) throw CollectiveError(std::string(all[first].begin() + 1, all[first].end()));
  std::string what = fmt::format("rank {}: {}", first, std::string(all[first].begin() + 1, all[first].end()));
  if (failed > 1) what += fmt::format(" (and {} other rank{})", failed - 1, failed > 2 ? "s" : "");
  throw CollectiveError(what);
}

void fail_all(Communicator& comm, const std::string& message) {
  check_all(comm, false, message);
  throw CollectiveError(message);  // not reached: check_all throws when a rank failed
}

void fail_one(Communicator& comm, const std::string& message) {
  std::fprintf(stderr, "moetrace: rank %d: %s\n", comm.rank(), message.c_str());
  std::fflush(stderr);
  comm.abort(1, message);
  std::abort();  // not reached: abort() does not return
}

}  // namespace moetrace
