#include "comm/mpi_communicator.h"

#include <mpi.h>

#include <climits>
#include <cstdio>
#include <cstdlib>
#include <string>

#include "comm/single_rank_communicator.h"
#include "util/error.h"

namespace moetrace {
std::string mpi_library_version() {
  char text[MPI_MAX_LIBRARY_VERSION_STRING] = {0};
  int len = 0;
  MOETRACE_MPI_CHECK(MPI_Get_library_version(text, &len));
  std::string v(text, static_cast<std::size_t>(len));
  if (auto nl = v.find('\n'); nl != std::string::npos) v.resize(nl);
  return v;
}

namespace detail {

void mpi_check(int rc, const char* call, const char* file, int line) {
  if (rc == MPI_SUCCESS) return;
  char text[MPI_MAX_ERROR_STRING] = {0};
  int len = 0;
  if (MPI_Error_string(rc, text, &len) != MPI_SUCCESS) std::snprintf(text, sizeof text, "unknown MPI error");
  const std::string what = fmt::format("{}:{}: MPI call `{}` failed with code {}: {}", file, line, call, rc, text);
  if (!MpiSession::active()) fail_internal(file, line, what);
  int rank = -1;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  std::fprintf(stderr, "moetrace: rank %d: %s\n", rank, what.c_str());
  std::fflush(stderr);
  MPI_Abort(MPI_COMM_WORLD, 3);
  std::_Exit(3);  // not reached
}

}  // namespace detail

namespace {

int to_int(std::size_t n, const char* what) {
  if (n > static_cast<std::size_t>(INT_MAX))
    fail_internal(__FILE__, __LINE__, fmt::format("{}: {} elements exceed MPI's int counts", what, n));
  return static_cast<int>(n);
}

class MpiCommunicator final : public Communicator {
 public:
  // Takes ownership of `comm` (freed on destruction while MPI is active).
  explicit MpiCommunicator(MPI_Comm comm) : comm_(comm) {
    MOETRACE_MPI_CHECK(MPI_Comm_set_errhandler(comm_, MPI_ERRORS_RETURN));
    MOETRACE_MPI_CHECK(MPI_Comm_rank(comm_, &rank_));
    MOETRACE_MPI_CHECK(MPI_Comm_size(comm_, &size_));
  }
  ~MpiCommunicator() override {
    if (comm_ != MPI_COMM_NULL && MpiSession::active()) MPI_Comm_free(&comm_);  // no throwing here
  }

  int rank() const override { return rank_; }
  int size() const override { return size_; }
  std::string name() const override { return "mpi"; }

  void barrier() override { MOETRACE_MPI_CHECK(MPI_Barrier(comm_)); }

  void allreduce_sum(float* data, std::size_t n) override { reduce(data, n, MPI_FLOAT); }
  void allreduce_sum(double* data, std::size_t n) override { reduce(data, n, MPI_DOUBLE); }
  void allreduce_sum(std::int64_t* data, std::size_t n) override { reduce(data, n, MPI_INT64_T); }

  void send(const Bytes& bytes, int dest, int tag) override {
    check_rank(dest, "send destination");
    MOETRACE_MPI_CHECK(MPI_Send(bytes.data(), to_int(bytes.size(), "send"), MPI_BYTE, dest, tag, comm_));
  }

  Bytes recv(int source, int tag, int* from) override {
    if (source >= 0) check_rank(source, "recv source");
    MPI_Status status;
    MOETRACE_MPI_CHECK(MPI_Probe(source < 0 ? MPI_ANY_SOURCE : source, tag, comm_, &status));
    int n = 0;
    MOETRACE_MPI_CHECK(MPI_Get_count(&status, MPI_BYTE, &n));
    Bytes b(static_cast<std::size_t>(n));
    MOETRACE_MPI_CHECK(MPI_Recv(b.data(), n, MPI_BYTE, status.MPI_SOURCE, tag, comm_, MPI_STATUS_IGNORE));
    if (from) *from = status.MPI_SOURCE;
    return b;
  }

  bool probe(int source, int tag) override {
    int flag = 0;
    MOETRACE_MPI_CHECK(MPI_Iprobe(source < 0 ? MPI_ANY_SOURCE : source, tag, comm_, &flag, MPI_STATUS_IGNORE));
    return flag != 0;
  }

  void broadcast(Bytes& bytes, int root) override {
    check_rank(root, "broadcast root");
    std::uint64_t n = bytes.size();
    MOETRACE_MPI_CHECK(MPI_Bcast(&n, 1, MPI_UINT64_T, root, comm_));
    bytes.resize(n);
    if (n > 0) MOETRACE_MPI_CHECK(MPI_Bcast(bytes.data(), to_int(n, "broadcast"), MPI_BYTE, root, comm_));
  }

  std::vector<Bytes> gather(const Bytes& mine, int root) override {
    check_rank(root, "gather root");
    const int n = to_int(mine.size(), "gather");
    std::vector<int> counts(rank_ == root ? size_ : 0);
    MOETRACE_MPI_CHECK(MPI_Gather(&n, 1, MPI_INT, counts.data(), 1, MPI_INT, root, comm_));
    std::vector<int> displs;
    Bytes all;
    if (rank_ == root) layout(counts, displs, all);
    MOETRACE_MPI_CHECK(MPI_Gatherv(mine.data(), n, MPI_BYTE, all.data(), counts.data(), displs.data(), MPI_BYTE,
                                   root, comm_));
    return rank_ == root ? split_buffers(all, counts, displs) : std::vector<Bytes>{};
  }

  std::vector<Bytes> allgather(const Bytes& mine) override {
    const int n = to_int(mine.size(), "allgather");
    std::vector<int> counts(size_), displs;
    MOETRACE_MPI_CHECK(MPI_Allgather(&n, 1, MPI_INT, counts.data(), 1, MPI_INT, comm_));
    Bytes all;
    layout(counts, displs, all);
    MOETRACE_MPI_CHECK(
        MPI_Allgatherv(mine.data(), n, MPI_BYTE, all.data(), counts.data(), displs.data(), MPI_BYTE, comm_));
    return split_buffers(all, counts, displs);
  }

  void alltoallv(const float* send, const std::vector<int>& send_counts, const std::vector<int>& send_displs,
                 float* recv, const std::vector<int>& recv_counts, const std::vector<int>& recv_displs) override {
    const std::size_t R = static_cast<std::size_t>(size_);
    MOETRACE_ASSERT(send_counts.size() == R && send_displs.size() == R && recv_counts.size() == R &&
                        recv_displs.size() == R,
                    "alltoallv needs one count and displacement per rank");
    MOETRACE_MPI_CHECK(MPI_Alltoallv(send, send_counts.data(), send_displs.data(), MPI_FLOAT, recv,
                                     recv_counts.data(), recv_displs.data(), MPI_FLOAT, comm_));
  }

  std::unique_ptr<Communicator> split(int color, int key) override {
    MOETRACE_ASSERT(color >= 0, "split colour must be non-negative");
    MPI_Comm sub = MPI_COMM_NULL;
    MOETRACE_MPI_CHECK(MPI_Comm_split(comm_, color, key, &sub));
    return std::make_unique<MpiCommunicator>(sub);
  }
  using Communicator::split;

  [[noreturn]] void abort(int code, const std::string&) override {
    std::fflush(stdout);
    std::fflush(stderr);
    MPI_Abort(MPI_COMM_WORLD, code);  // every group of the job, not only this communicator
    std::_Exit(code);                 // not reached
  }

 private:
  template <typename T>
  void reduce(T* data, std::size_t n, MPI_Datatype type) {
    if (n == 0) return;
    MOETRACE_MPI_CHECK(MPI_Allreduce(MPI_IN_PLACE, data, to_int(n, "allreduce"), type, MPI_SUM, comm_));
  }
  void check_rank(int r, const char* what) const {
    MOETRACE_ASSERT(r >= 0 && r < size_, std::string(what) + " out of range");
  }
  static void layout(const std::vector<int>& counts, std::vector<int>& displs, Bytes& all) {
    std::size_t total = 0;
    displs.resize(counts.size());
    for (std::size_t r = 0; r < counts.size(); ++r) {
      displs[r] = to_int(total, "gathered bytes");
      total += static_cast<std::size_t>(counts[r]);
    }
    to_int(total, "gathered bytes");
    all.resize(total);
  }
  static std::vector<Bytes> split_buffers(const Bytes& all, const std::vector<int>& counts,
                                          const std::vector<int>& displs) {
    std::vector<Bytes> out(counts.size());
    for (std::size_t r = 0; r < counts.size(); ++r)
      out[r].assign(all.begin() + displs[r], all.begin() + displs[r] + counts[r]);
    return out;
  }

  MPI_Comm comm_ = MPI_COMM_NULL;
  int rank_ = 0, size_ = 1;
};

}  // namespace

bool launched_by_mpi() {
  if (const char* force = std::getenv("MOETRACE_MPI"); force && *force) return std::string(force) != "0";
  for (const char* var : {"OMPI_COMM_WORLD_SIZE", "PMIX_RANK", "PMI_RANK", "PMI_SIZE", "MV2_COMM_WORLD_SIZE"})
    if (std::getenv(var)) return true;
  return false;
}

MpiSession::MpiSession(int* argc, char*** argv, Start start) {
  if (start == Start::WhenLaunched && !launched_by_mpi()) return;
  int initialized = 0;
  MOETRACE_MPI_CHECK(MPI_Initialized(&initialized));
  if (initialized) return;
  int provided = 0;
  MOETRACE_MPI_CHECK(MPI_Init_thread(argc, argv, MPI_THREAD_FUNNELED, &provided));
  owns_ = true;
  MOETRACE_MPI_CHECK(MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN));
  if (provided < MPI_THREAD_FUNNELED)
    std::fprintf(stderr, "moetrace: warning: MPI provides thread level %d < MPI_THREAD_FUNNELED\n", provided);
}

MpiSession::~MpiSession() {
  if (owns_ && active()) MPI_Finalize();  // a destructor must not abort; nothing is pending here
}

bool MpiSession::active() {
  int initialized = 0, finalized = 0;
  MPI_Initialized(&initialized);
  MPI_Finalized(&finalized);
  return initialized && !finalized;
}

std::unique_ptr<Communicator> make_mpi_world_communicator() {
  MOETRACE_ASSERT(MpiSession::active(), "an MPI communicator needs an MpiSession");
  MPI_Comm world = MPI_COMM_NULL;
  MOETRACE_MPI_CHECK(MPI_Comm_dup(MPI_COMM_WORLD, &world));
  return std::make_unique<MpiCommunicator>(world);
}

std::unique_ptr<Communicator> make_world_communicator() {
  if (MpiSession::active()) return make_mpi_world_communicator();
  return std::make_unique<SingleRankCommunicator>();
}

}  // namespace moetrace
