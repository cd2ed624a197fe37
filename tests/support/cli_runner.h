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

// `moetrace args...` and `mpirun -np N --oversubscribe moetrace args...` command lines.
std::vector<std::string> moetrace_command(const std::vector<std::string>& args);
std::vector<std::string> mpirun_command(int ranks, const std::vector<std::string>& args);

std::string slurp(const std::filesystem::path& p);
// Polls `log` until it contains `text` (true) or `timeout_ms` passed (false): for signalling a
// spawned run only once it reached a known point, never after a fixed sleep.
bool wait_for_log(const std::filesystem::path& log, const std::string& text, int timeout_ms);

// Datasets (outside /provenance) that differ between two results files, bit for bit with NaN
// equal to NaN, or that exist in only one of them. `compared` receives the number compared.
std::vector<std::string> differing_datasets(const std::filesystem::path& a, const std::filesystem::path& b,
                                            int* compared = nullptr);

}  // namespace moetrace::test
