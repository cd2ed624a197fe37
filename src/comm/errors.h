#pragma once
// Errors in a job of several ranks (the LAMMPS distinction between error->all and error->one).
//
//  - An error every rank can see (a bad option, a missing file every rank reads, a check whose
//    inputs are replicated) is raised *collectively*: every rank calls check_all / fail_all at the
//    same point, the ranks agree on one message, and every rank throws CollectiveError. The job then
//    unwinds normally on every rank, MPI_Finalize runs, and the CLI exits with status 2.
//  - An error only one rank can see (its own shard, an unexpected exception, an MPI failure) must not
//    be thrown alone: the other ranks would wait forever in their next collective. fail_one prints
//    "moetrace: rank R: <message>" to stderr and aborts the whole job (MPI_Abort), so that mpirun
//    exits non-zero at once with that message.
//
// Rule of thumb: combine pass/fail across ranks (check_all) before any assertion that could make one
// rank skip a collective.
#include <optional>
#include <string>
#include <utility>

#include <fmt/format.h>

#include "comm/communicator.h"
#include "util/error.h"
#include "util/stop_signal.h"

namespace moetrace {

// Thrown on every rank of a group after the ranks agreed on a failure.
class CollectiveError : public InputError {
 public:
  using InputError::InputError;
};

// Collective. Each rank passes whether its own check passed and, if not, what went wrong. If any rank
// failed, every rank throws CollectiveError with the message of the lowest failing rank, prefixed
// with "rank R: " and followed by how many other ranks failed (just the message when every rank
// failed with the same one); otherwise it returns on every rank.
void check_all(Communicator& comm, bool ok, const std::string& message);

// Collective: every rank calls it, with the same message (an error all ranks detected). Throws
// CollectiveError on every rank once all have arrived.
[[noreturn]] void fail_all(Communicator& comm, const std::string& message);

template <typename... Args>
[[noreturn]] void fail_all(Communicator& comm, fmt::format_string<Args...> f, Args&&... args) {
  fail_all(comm, fmt::format(f, std::forward<Args>(args)...));
}

// Not collective: one rank's error. Prints "moetrace: rank R: <message>" to stderr and ends the whole
// job with exit code 1 (MPI_Abort on MPI communicators): never a hang.
[[noreturn]] void fail_one(Communicator& comm, const std::string& message);

template <typename... Args>
[[noreturn]] void fail_one(Communicator& comm, fmt::format_string<Args...> f, Args&&... args) {
  fail_one(comm, fmt::format(f, std::forward<Args>(args)...));
}

// Runs `body`. On a group of more than one rank, an exception other than CollectiveError (which every
// rank throws together) is one rank's error and becomes fail_one; on one rank everything propagates
// unchanged, so single-rank behaviour is that of the plain code.
// Runs `step` on every rank; an InputError on any rank (a missing or malformed file: every rank reads
// the same inputs) becomes a collective error on every rank instead of one rank leaving the group.
template <typename Step>
auto on_every_rank(Communicator& comm, Step&& step) -> decltype(step()) {
  std::optional<decltype(step())> result;
  std::string error;
  try {
    result.emplace(step());
  } catch (const InputError& e) {
    error = e.what();
  }
  check_all(comm, error.empty(), error);
  return std::move(*result);
}

template <typename Body>
void run_or_abort(Communicator& comm, Body&& body) {
  if (comm.size() == 1) {
    body();
    return;
  }
  try {
    body();
  } catch (const CollectiveError&) {
    throw;
  } catch (const StopRequested&) {  // every rank stops together (the coordinator decided)
    throw;
  } catch (const std::exception& e) {
    fail_one(comm, e.what());
  } catch (...) {
    fail_one(comm, "unknown exception");
  }
}

}  // namespace moetrace
