#pragma once
// One rank without MPI: collectives are copies. Used by single-process runs and by unit tests that do
// not initialise MPI; results are those of an MPI group of size 1.
#include <deque>
#include <utility>

#include "comm/communicator.h"

namespace moetrace {

class SingleRankCommunicator final : public Communicator {
 public:
  int rank() const override { return 0; }
  int size() const override { return 1; }
  std::string name() const override { return "single"; }
  void barrier() override {}
  void allreduce_sum(float*, std::size_t) override {}
  void allreduce_sum(double*, std::size_t) override {}
  void allreduce_sum(std::int64_t*, std::size_t) override {}
  void broadcast(Bytes& bytes, int root) override;
  std::vector<Bytes> gather(const Bytes& mine, int root) override;
  std::vector<Bytes> allgather(const Bytes& mine) override;
  void alltoallv(const float* send, const std::vector<int>& send_counts, const std::vector<int>& send_displs,
                 float* recv, const std::vector<int>& recv_counts, const std::vector<int>& recv_displs) override;
  void send(const Bytes& bytes, int dest, int tag) override;
  Bytes recv(int source, int tag, int* from) override;
  bool probe(int source, int tag) override;
  std::unique_ptr<Communicator> split(int color, int key) override;
  using Communicator::split;
  [[noreturn]] void abort(int code, const std::string& message) override;

 private:
  std::deque<std::pair<int, Bytes>> mailbox_;  // messages a lone rank sent to itself: (tag, bytes)
};

}  // namespace moetrace
