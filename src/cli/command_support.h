#pragma once
// What `moetrace run` and `moetrace localize` share: the default output path, the checks and lock
// on --out, opening the results file (create with provenance, or resume with the same config), the
// --shard option, and the row executor (local, or distributed over MPI ranks) with checkpoints and stop signals.
#include <functional>
#include <memory>
#include <optional>
#include <string>

#include "comm/communicator.h"
#include "protocols/row_executor.h"
#include "results/output_lock.h"
#include "results/results_file.h"

namespace moetrace::cli {

// The start every protocol command shares: stop-signal handlers installed and --stop-file watched
// (util/stop_signal.h), then check_ranks (command_session.h). Returns whether this is the writing
// rank (world rank 0).
bool start_ranks(Communicator& world, int ep, const std::string& stop_file);

// The help text of --stop-file, the same for every command that has it.
inline constexpr const char* kStopFileHelp =
    "FILE: stop as on SIGUSR1 (save, exit 75) once FILE exists; the Slurm scripts create it on their stop "
    "signal (a file there at the start stops the run at its first check: remove a stale one first)";

// results/<config name>.h5
std::string default_output(const std::string& config);

// prepare_output on the writing rank, as a collective (every rank fails together). Returns --out
// (`out`, or the default for `config` when empty).
std::string prepare_output_on_writer(Communicator& world, bool writer, const std::string& out,
                                     const std::string& config, bool resume, std::optional<OutputLock>& lock);

// The writing rank's checks on --out before any expensive work: its folder exists or is created,
// the path is a regular file (or absent), the run holds the lock on it (a second run on the same
// --out fails here, naming the holder), and it exists exactly when resuming.
void prepare_output(const std::string& out, bool resume, std::optional<OutputLock>& lock);

// On the writing rank (world rank 0): the results file, created (with `provenance()` written) or
// resumed (its stored config must equal `config_text`), and this run recorded in its history;
// `prepare` runs on it last. Elsewhere: a scratch file in memory. Collective.
std::unique_ptr<ResultsFile> open_results_file(Communicator& world, const std::string& out, bool resume,
                                               const std::string& config_path, const std::string& config_text,
                                               const std::function<Provenance()>& provenance,
                                               const std::function<void(ResultsFile&)>& prepare = {});

// --shard i/n (`run` and `localize`): 0 <= i < n, both decimal integers in range; empty: no shard.
// Anything else is an InputError naming --shard.
std::optional<CaseShard> parse_shard(const std::string& text);

// /provenance shard of a results file: "i/n" for a shard run, "all" for an unsharded run on a file
// that had one (a resumed merge); left out when there was never a shard.
void record_shard(ResultsFile& file, const std::optional<CaseShard>& shard);

// One rank: a local executor that checkpoints every `checkpoint_every_s` and, on a stop signal,
// saves and throws StopRequested. Several: the distributed executor (group: this rank's EP group,
// leaders: the group leaders' communicator).
std::unique_ptr<RowExecutor> make_row_executor(Communicator& world, Communicator& group, Communicator& leaders,
                                               ResultsFile& results, int chunk_tokens, double progress_every_s,
                                               double checkpoint_every_s);

}  // namespace moetrace::cli
