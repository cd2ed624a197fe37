// A tiny MPI program for test_mpi_errors: `mpirun -np R mpi_error_helper MODE`.
//   ok         every rank passes a barrier and exits 0
//   one        rank 1 calls fail_one while the others wait in a barrier (would hang without the abort)
//   exception  rank 1 throws inside run_or_abort while the others wait in a barrier
//   all        rank 1 fails a check_all: every rank throws CollectiveError, prints it and exits 2
#include <cstdio>
#include <stdexcept>
#include <string>

#include "comm/errors.h"
#include "comm/mpi_communicator.h"

int main(int argc, char** argv) {
  moetrace::MpiSession mpi(&argc, &argv);
  const std::string mode = argc > 1 ? argv[1] : "ok";
  auto comm = moetrace::make_world_communicator();
  try {
    moetrace::run_or_abort(*comm, [&] {
      if (mode == "one" && comm->rank() == 1) moetrace::fail_one(*comm, "rank-local failure for the test");
      if (mode == "exception" && comm->rank() == 1) throw std::runtime_error("unexpected exception on one rank");
      if (mode == "all") moetrace::check_all(*comm, comm->rank() != 1, "bad shard on rank 1");
      comm->barrier();
    });
  } catch (const moetrace::CollectiveError& e) {
    std::fprintf(stderr, "helper rank %d caught: %s\n", comm->rank(), e.what());
    return 2;
  }
  if (comm->rank() == 0) std::printf("helper: all ranks passed\n");
  return 0;
}
