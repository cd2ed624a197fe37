#pragma once
// Running the built `moetrace` CLI from tests (directly or under mpirun) and comparing the results
// files it writes.
#include <filesystem>
#include <string>
#include <vector>

namespace moetrace::test {

struct Process {
  int pid = -1;
  int wait() const;  // exit code, or 128 + signal
};

// Starts argv[0] with the rest as arguments; stdout and stderr are appended to `log`.
Process spawn(const std::vector<std::string>& argv, const std::filesystem::path& log);
int run_to_end(const std::vector<std::string>& argv, const std::filesystem::path& log);

// `moetrace args...` and `mpirun -np N --oversubscribe moetrace args...` command lines; `env`
// ("NAME=VALUE") is set for moetrace (through env(1), or mpirun's -x for every rank).
std::vector<std::string> moetrace_command(const std::vector<std::string>& args, const std::vector<std::string>& env = {});
std::vector<std::string> mpirun_command(int ranks, const std::vector<std::string>& args,
                                        const std::vector<std::string>& env = {});

// The environment that pauses a run the k-th time it passes `point` (MOETRACE_TEST_PAUSE,
// util/stop_signal.h): it waits there for a stop signal or a kill. With `mark`, the pause creates that
// file and is skipped where it exists. k = 0: "count" mode, every pass is logged and nothing pauses.
std::vector<std::string> pause_env(const std::string& point, long k, const std::filesystem::path& mark = {});
// How often `log` says the run passed `point` (from a run with pause_env(point, 0)).
long pause_points_passed(const std::filesystem::path& log, const std::string& point);
// Polls until `log` shows `count` pauses (one per paused process) or `timeout_ms` passed. Never a
// fixed sleep: the run is held at its pause point for as long as the test needs.
bool wait_for_pauses(const std::filesystem::path& log, int count, int timeout_ms);
// The PIDs of the processes whose command line matches the extended regular expression `pattern` (pgrep -f).
std::vector<int> pids_matching(const std::string& pattern);

std::string slurp(const std::filesystem::path& p);

// Datasets (outside /provenance) that differ between two results files, bit for bit with NaN
// equal to NaN, or that exist in only one of them. `compared` receives the number compared.
std::vector<std::string> differing_datasets(const std::filesystem::path& a, const std::filesystem::path& b,
                                            int* compared = nullptr);

}  // namespace moetrace::test
