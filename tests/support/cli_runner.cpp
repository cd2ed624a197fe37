#include "support/cli_runner.h"

#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <set>
#include <thread>

#include "results/h5_file.h"
#include "support/test_paths.h"

namespace moetrace::test {

int Process::wait() const {
  int status = 0;
  waitpid(pid, &status, 0);
  return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

Process spawn(const std::vector<std::string>& argv, const std::filesystem::path& log) {
  Process p;
  p.pid = fork();
  if (p.pid == 0) {
    if (!std::freopen(log.c_str(), "a", stdout)) _exit(126);
    dup2(fileno(stdout), fileno(stderr));
    std::vector<std::string> args = argv;
    std::vector<char*> c;
    for (auto& a : args) c.push_back(a.data());
    c.push_back(nullptr);
    execvp(c[0], c.data());
    _exit(127);
  }
  return p;
}

int run_to_end(const std::vector<std::string>& argv, const std::filesystem::path& log) { return spawn(argv, log).wait(); }

std::vector<std::string> moetrace_command(const std::vector<std::string>& args, const std::vector<std::string>& env) {
  std::vector<std::string> v;
  if (!env.empty()) v.push_back("/usr/bin/env");
  v.insert(v.end(), env.begin(), env.end());
  v.push_back(moetrace_binary().string());
  v.insert(v.end(), args.begin(), args.end());
  return v;
}

std::vector<std::string> mpirun_command(int ranks, const std::vector<std::string>& args,
                                        const std::vector<std::string>& env) {
  std::vector<std::string> v{"mpirun", "-np", std::to_string(ranks), "--oversubscribe", "-x", "OMP_NUM_THREADS",
                             "-x", "OMPI_MCA_mpi_yield_when_idle"};
  for (const std::string& e : env) v.insert(v.end(), {"-x", e});
  v.push_back(moetrace_binary().string());
  v.insert(v.end(), args.begin(), args.end());
  return v;
}

std::vector<std::string> pause_env(const std::string& point, long k, const std::filesystem::path& mark) {
  std::vector<std::string> env{"MOETRACE_TEST_PAUSE=" + point + ":" + (k == 0 ? std::string("count") : std::to_string(k))};
  if (!mark.empty()) env.push_back("MOETRACE_TEST_PAUSE_MARK=" + mark.string());
  return env;
}

namespace {
long count_occurrences(const std::string& text, const std::string& what) {
  long n = 0;
  for (auto at = text.find(what); at != std::string::npos; at = text.find(what, at + what.size())) ++n;
  return n;
}
}  // namespace

long pause_points_passed(const std::filesystem::path& log, const std::string& point) {
  return count_occurrences(slurp(log), "moetrace: test pause point " + point + " passed ");
}

bool wait_for_pauses(const std::filesystem::path& log, int count, int timeout_ms) {
  const auto until = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
  while (count_occurrences(slurp(log), "moetrace: test pause at ") < count) {
    if (std::chrono::steady_clock::now() >= until) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  return true;
}

std::vector<int> pids_matching(const std::string& pattern) {
  std::vector<int> pids;
  if (FILE* f = popen(("pgrep -f '" + pattern + "'").c_str(), "r")) {
    int pid = 0;
    while (std::fscanf(f, "%d", &pid) == 1) pids.push_back(pid);
    pclose(f);
  }
  return pids;
}

std::string slurp(const std::filesystem::path& p) {
  std::ifstream in(p);
  return {std::istreambuf_iterator<char>(in), {}};
}

namespace {

void collect(const h5::File& f, const std::string& group, std::set<std::string>& out) {
  for (const std::string& c : f.children(group)) {
    const std::string p = (group == "/" ? "" : group) + "/" + c;
    if (p == "/provenance") continue;
    try {
      f.children(p);
      collect(f, p, out);
    } catch (const std::exception&) {
      out.insert(p);
    }
  }
}

bool is_string_dataset(const std::string& d) {
  for (const char* s : {"prompt", "subject", "true_object", "foil_object", "reason", "relation_id", "token_text"})
    if (d.ends_with(s)) return true;
  return false;
}

}  // namespace

std::vector<std::string> differing_datasets(const std::filesystem::path& a, const std::filesystem::path& b,
                                            int* compared) {
  h5::File fa(a.string(), h5::File::Mode::ReadOnly), fb(b.string(), h5::File::Mode::ReadOnly);
  std::set<std::string> da, db;
  collect(fa, "/", da);
  collect(fb, "/", db);
  std::vector<std::string> out;
  int n = 0;
  for (const std::string& d : da) {
    if (!db.count(d)) {
      out.push_back(d + " (only in " + a.string() + ")");
      continue;
    }
    ++n;
    if (is_string_dataset(d)) {
      if (fa.read_strings(d) != fb.read_strings(d)) out.push_back(d);
      continue;
    }
    const auto x = fa.read_double(d), y = fb.read_double(d);
    bool same = x.shape == y.shape && x.data.size() == y.data.size();
    for (std::size_t i = 0; same && i < x.data.size(); ++i)
      same = (std::isnan(x.data[i]) && std::isnan(y.data[i])) || x.data[i] == y.data[i];
    if (!same) out.push_back(d);
  }
  for (const std::string& d : db)
    if (!da.count(d)) out.push_back(d + " (only in " + b.string() + ")");
  if (compared) *compared = n;
  return out;
}

}  // namespace moetrace::test
