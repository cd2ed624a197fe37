#pragma once
// The communicator layer: the collectives moetrace needs, behind one interface, so that the engine and
// the protocols never include MPI or NCCL (docs/distribution.md).
//
// Implementations:
//  - SingleRankCommunicator (single_rank_communicator.h): one rank, no MPI; every collective is a copy.
//  - MpiCommunicator (mpi_communicator.h): Open MPI on host buffers; every return code is checked.
//  - an NCCL communicator on device buffers belongs with the CUDA backend in kernels/ (not built yet);
//    it implements the same calls for device pointers, and the expert exchange picks it when the
//    backend's tensors live on the GPU.
//
// Every call below is *collective* over the communicator unless it says otherwise: all ranks of the
// group must make the same calls in the same order, or the job hangs. Code that may fail on one rank
// only must therefore either agree on the failure first (check_all / fail_all in comm/errors.h) or
// abort the whole job (fail_one).
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace moetrace {

using Bytes = std::vector<char>;

class Communicator {
 public:
  virtual ~Communicator() = default;

  // Not collective.
  virtual int rank() const = 0;
  virtual int size() const = 0;
  virtual std::string name() const = 0;  // "single", "mpi"

  virtual void barrier() = 0;

  // In place: data[i] = sum over ranks of data[i]. The order of the reduction is the MPI library's,
  // so float sums may depend on the group size: moetrace never uses them for model outputs.
  virtual void allreduce_sum(float* data, std::size_t n) = 0;
  virtual void allreduce_sum(double* data, std::size_t n) = 0;
  virtual void allreduce_sum(std::int64_t* data, std::size_t n) = 0;

  // `bytes` of `root` are copied to every rank (whatever their size was before).
  virtual void broadcast(Bytes& bytes, int root) = 0;

  // Buffers of any size per rank. gather: `root` gets one buffer per rank in rank order, the other
  // ranks get an empty vector. allgather: every rank gets every buffer, in rank order.
  virtual std::vector<Bytes> gather(const Bytes& mine, int root) = 0;
  virtual std::vector<Bytes> allgather(const Bytes& mine) = 0;

  // All-to-all of floats with per-rank counts and displacements (in elements), as MPI_Alltoallv:
  // send[send_displs[r] .. + send_counts[r]) goes to rank r, and what rank r sends lands in
  // recv[recv_displs[r] .. + recv_counts[r]). Send ranges may overlap; receive ranges must not.
  // recv_counts[r] must equal what rank r sends here.
  virtual void alltoallv(const float* send, const std::vector<int>& send_counts, const std::vector<int>& send_displs,
                         float* recv, const std::vector<int>& recv_counts, const std::vector<int>& recv_displs) = 0;

  // A new communicator per colour (color >= 0) holding the ranks that passed it, ordered by `key`
  // and then by rank in this communicator.
  // Point-to-point messages (the scheduler's work items and results). recv with source -1 takes
  // the next message with `tag` from any rank and reports the sender in *from.
  virtual void send(const Bytes& bytes, int dest, int tag) = 0;
  virtual Bytes recv(int source, int tag, int* from) = 0;
  // True when a message with `tag` from `source` (-1: any) is waiting; never blocks.
  virtual bool probe(int source, int tag) = 0;
  virtual std::unique_ptr<Communicator> split(int color, int key) = 0;
  std::unique_ptr<Communicator> split(int color) { return split(color, rank()); }

  // Not collective: ends the whole job (every rank of every group) with `code`. Callers print their
  // message first (see fail_one); `message` is only used where the implementation can report it.
  [[noreturn]] virtual void abort(int code, const std::string& message) = 0;
};

// The communicator of every rank of this job: MPI_COMM_WORLD when MPI is initialised (an MpiSession
// exists), a single rank otherwise.
std::unique_ptr<Communicator> make_world_communicator();

}  // namespace moetrace
