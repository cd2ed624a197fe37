#pragma once
// Graceful stop on SIGTERM, SIGUSR1 (Slurm's warning signal) and SIGINT, or when a stop file
// appears (--stop-file, which the Slurm scripts use: docs/distribution.md): the handler only sets a
// flag; long loops poll it between work items, save what they have, and throw StopRequested,
// which the CLI turns into exit code kExitStopped so that batch scripts can requeue the job. A stop
// asked for after the last result is saved changes nothing: the run ends as done (exit 0).
#include <stdexcept>
#include <string>

namespace moetrace {

// Exit code of a run stopped by a signal after saving its results (resume with --resume).
inline constexpr int kExitStopped = 75;

class StopRequested : public std::runtime_error {
 public:
  StopRequested() : std::runtime_error("stopped; results saved, continue with --resume") {}
};

void install_stop_handlers();
// From now on, the existence of `path` asks to stop as a signal does (checked at most every 0.2 s;
// a file that is there at the start asks too: whoever starts the run removes a stale one). Empty:
// no stop file.
void watch_stop_file(const std::string& path);
bool stop_requested();
// The signal that asked to stop (0 if none).
int stop_signal_number();
// What asked to stop: "signal 10", "stop file PATH", or "" if nothing did.
std::string stop_reason();

// Test hook, for tests that signal or kill a run at a known point instead of after a fixed sleep
// (docs/distribution.md, "Stopping and resuming"). With MOETRACE_TEST_PAUSE=NAME[:K] in the
// environment, the K-th time (default 1) this process passes pause point `name` it writes
// "moetrace: test pause at NAME K (pid P)" to standard error and waits there until a stop signal
// arrives, then returns (the run stops at its next check for a stop, or ends as done past its last
// save), or until it is killed. With MOETRACE_TEST_PAUSE_MARK=FILE as well, the pause creates FILE
// ("pid P job J task T", J and T from Slurm's SLURM_JOB_ID and SLURM_ARRAY_TASK_ID, or "none") and
// is skipped where FILE already exists, so that the
// resumed or requeued run goes on. MOETRACE_TEST_PAUSE=NAME:count pauses nowhere and writes
// "moetrace: test pause point NAME passed N" at each pass instead, so that a test can choose K from
// a reference run. Without MOETRACE_TEST_PAUSE: nothing. The points: "chunk" (the writing rank,
// after each chunk of rows and its save, before its check for a stop) and "done" (every rank, the
// command finished and its results saved, before the process exits).
void test_pause_point(const char* name);

}  // namespace moetrace
