#pragma once
// Graceful stop on SIGTERM, SIGUSR1 (Slurm's warning signal) and SIGINT: the handler only sets a
// flag; long loops poll it between work items, save what they have, and throw StopRequested,
// which the CLI turns into exit code kExitStopped so that batch scripts can requeue the job.
#include <stdexcept>

namespace moetrace {

// Exit code of a run stopped by a signal after saving its results (resume with --resume).
inline constexpr int kExitStopped = 75;

class StopRequested : public std::runtime_error {
 public:
  StopRequested() : std::runtime_error("stopped by a signal; results saved, continue with --resume") {}
};

void install_stop_handlers();
bool stop_requested();
// The signal that asked to stop (0 if none).
int stop_signal_number();

}  // namespace moetrace
