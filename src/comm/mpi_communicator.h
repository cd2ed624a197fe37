#pragma once
// Open MPI on host buffers. This header does not include mpi.h (only comm/*.cpp do), so that the CLI
// can own the MPI session without the rest of moetrace seeing MPI (docs/DESIGN.md: nothing but comm
// includes MPI or NCCL).
//
// Every MPI call is wrapped in MOETRACE_MPI_CHECK, and every communicator moetrace uses has
// MPI_ERRORS_RETURN set, so that a failing call returns a code instead of killing the job silently.
// A failed check names the call and its file:line, prints "moetrace: rank R: ..." and aborts the
// job (an MPI error is seen by one rank only; throwing would leave the other ranks waiting in the
// next collective forever).
#include <memory>
#include <string>

#include "comm/communicator.h"

namespace moetrace {

// Initialises MPI (MPI_Init_thread, MPI_THREAD_FUNNELED: only the main thread calls MPI; the backends'
// OpenMP threads never do) unless it already is, and finalises it on destruction if it initialised
// it. Create one, in main(), before any communicator.
//
// `WhenLaunched` (the CLI) initialises MPI only when an MPI launcher started the process (mpirun,
// mpiexec, srun --mpi=...: see launched_by_mpi()); a plain `moetrace run` is then a job of one rank
// with no MPI runtime at all: no singleton helper daemon to be killed by a Slurm cancel, nothing
// for MPI_Finalize to complain about. `Always` (the MPI test suites) initialises it in any case, so a
// program started without a launcher is an MPI singleton.
class MpiSession {
 public:
  enum class Start { Always, WhenLaunched };
  MpiSession(int* argc, char*** argv, Start start = Start::Always);
  ~MpiSession();
  MpiSession(const MpiSession&) = delete;
  MpiSession& operator=(const MpiSession&) = delete;

  // MPI_Init has run and MPI_Finalize has not.
  static bool active();

 private:
  bool owns_ = false;
};

// True when the environment shows an MPI launcher started this process: Open MPI's mpirun
// (OMPI_COMM_WORLD_SIZE), PMIx (PMIX_RANK: srun --mpi=pmix, prrte), PMI-1/2 (PMI_RANK, PMI_SIZE:
// MPICH's hydra, srun --mpi=pmi2) or MVAPICH (MV2_COMM_WORLD_SIZE). MOETRACE_MPI=1 forces MPI on,
// MOETRACE_MPI=0 off.
bool launched_by_mpi();

// The MPI library's own version line (for provenance), e.g. "Open MPI v4.1.4, ...".
std::string mpi_library_version();

// MPI_COMM_WORLD (duplicated, with MPI_ERRORS_RETURN). Needs an active MpiSession.
std::unique_ptr<Communicator> make_mpi_world_communicator();

namespace detail {
// rc != MPI_SUCCESS: print the call, file:line and MPI's error string, then abort the job.
void mpi_check(int rc, const char* call, const char* file, int line);
}  // namespace detail

}  // namespace moetrace

// Checks the return code of an MPI call; on failure names the call and file:line and aborts the job.
#define MOETRACE_MPI_CHECK(call) ::moetrace::detail::mpi_check((call), #call, __FILE__, __LINE__)
