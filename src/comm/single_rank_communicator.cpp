#include "comm/single_rank_communicator.h"

#include <algorithm>
#include <cstdio>
#include <cstdlib>

#include "util/error.h"

namespace moetrace {

void SingleRankCommunicator::broadcast(Bytes&, int root) {
  MOETRACE_ASSERT(root == 0, "broadcast root out of range");
}

std::vector<Bytes> SingleRankCommunicator::gather(const Bytes& mine, int root) {
  MOETRACE_ASSERT(root == 0, "gather root out of range");
  return {mine};
}

std::vector<Bytes> SingleRankCommunicator::allgather(const Bytes& mine) { return {mine}; }

void SingleRankCommunicator::alltoallv(const float* send, const std::vector<int>& send_counts,
                                       const std::vector<int>& send_displs, float* recv,
                                       const std::vector<int>& recv_counts, const std::vector<int>& recv_displs) {
  MOETRACE_ASSERT(send_counts.size() == 1 && send_displs.size() == 1 && recv_counts.size() == 1 &&
                      recv_displs.size() == 1,
                  "alltoallv needs one count and displacement per rank");
  MOETRACE_ASSERT(send_counts[0] == recv_counts[0], "alltoallv: send and receive counts differ");
  std::copy_n(send + send_displs[0], send_counts[0], recv + recv_displs[0]);
}

void SingleRankCommunicator::send(const Bytes& bytes, int dest, int tag) {
  MOETRACE_ASSERT(dest == 0, "a single rank can only send to itself");
  mailbox_.emplace_back(tag, bytes);
}

Bytes SingleRankCommunicator::recv(int source, int tag, int* from) {
  MOETRACE_ASSERT(source == 0 || source == -1, "a single rank can only receive from itself");
  for (auto it = mailbox_.begin(); it != mailbox_.end(); ++it)
    if (it->first == tag) {
      Bytes b = std::move(it->second);
      mailbox_.erase(it);
      if (from) *from = 0;
      return b;
    }
  fail_internal(__FILE__, __LINE__, "a single rank waits for a message it never sent itself (deadlock)");
}

bool SingleRankCommunicator::probe(int, int tag) {
  for (const auto& m : mailbox_)
    if (m.first == tag) return true;
  return false;
}

std::unique_ptr<Communicator> SingleRankCommunicator::split(int color, int) {
  MOETRACE_ASSERT(color >= 0, "split colour must be non-negative");
  return std::make_unique<SingleRankCommunicator>();
}

void SingleRankCommunicator::abort(int code, const std::string&) {
  std::fflush(stdout);
  std::fflush(stderr);
  std::_Exit(code);
}

}  // namespace moetrace
