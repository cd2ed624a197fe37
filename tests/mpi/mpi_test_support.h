#pragma once
// Shared pieces of the MPI test suites: the MPI session as a Boost.Test global fixture, and the rule
// that pass/fail is combined across ranks before anything is asserted (an assertion that fails on
// one rank only must never make that rank skip a collective the others are waiting in).
#include <cstdint>

#include <boost/test/unit_test.hpp>

#include "comm/communicator.h"
#include "comm/mpi_communicator.h"

namespace moetrace::test {

struct MpiFixture {
  MpiFixture() : session(&boost::unit_test::framework::master_test_suite().argc,
                         &boost::unit_test::framework::master_test_suite().argv) {}
  MpiSession session;
};

// Collective: true on every rank iff `ok` on every rank.
inline bool everywhere(Communicator& comm, bool ok) {
  std::int64_t failed = ok ? 0 : 1;
  comm.allreduce_sum(&failed, 1);
  return failed == 0;
}

}  // namespace moetrace::test
