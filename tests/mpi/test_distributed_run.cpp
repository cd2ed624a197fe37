// `mpirun -np N moetrace run CONFIG --ep R`: results do not depend on the number of ranks, the EP
// group size, or on being killed and resumed with another rank count; SIGUSR1 (which mpirun
// forwards to the ranks) or the stop file stops the job cleanly with exit code 75, and a stop that
// arrives after the last save ends it as done (0). Every kill and signal lands at a pause point of the
// run (MOETRACE_TEST_PAUSE, util/stop_signal.h), never after a fixed sleep, so each test takes the same
// path however loaded the machine is.
#define BOOST_TEST_MODULE distributed_run
#include <boost/test/unit_test.hpp>

#include <signal.h>

#include <chrono>
#include <cstdio>
#include <fstream>
#include <thread>

#include "support/cli_runner.h"
#include "support/test_paths.h"

namespace fs = std::filesystem;
using namespace moetrace::test;

namespace {

constexpr int kPauseTimeoutMs = 600000;  // reaching a pause point: a bound for a hang, not a timing

struct Setup {
  fs::path dir, config, reference;
  long chunks = 0;  // chunk pause points a run of the config passes
  Setup() {
    dir = fresh_temp_dir("dist");
    const fs::path src = source_dir();
    std::ofstream(dir / "run.toml") << "[model]\npath = \"" << (src / "demo/model").string() << "\"\n"
                                    << "[data]\ncounterfact = \"" << (src / "demo/counterfact_demo.json").string()
                                    << "\"\nobject_rule = \"leading_space\"\n[cases]\nn = 80\n"
                                    << "[robustness]\nsplit_seeds = [1]\n[run]\ncheckpoint_every_s = 0\n";
    config = dir / "run.toml";
    reference = dir / "single.h5";
    BOOST_TEST_REQUIRE(run_to_end(moetrace_command({"run", config.string(), "--out", reference.string()},
                                                   pause_env("chunk", 0)),
                                  dir / "single.log") == 0, slurp(dir / "single.log"));
    chunks = pause_points_passed(dir / "single.log", "chunk");
    BOOST_TEST_REQUIRE(chunks >= 4, slurp(dir / "single.log"));
  }
};

Setup& setup() {
  static Setup s;
  return s;
}

void expect_same_as_reference(const fs::path& out) {
  int compared = 0;
  for (const std::string& d : differing_datasets(setup().reference, out, &compared)) BOOST_ERROR(d << " differs");
  BOOST_TEST(compared > 10);
}

// The rank processes of the job writing `out` (mpirun, `launcher`, excluded).
std::vector<int> ranks_of(const fs::path& out, int launcher) {
  std::vector<int> ranks;
  for (int pid : pids_matching("[m]oetrace run .*" + out.string()))
    if (pid != launcher) ranks.push_back(pid);
  return ranks;
}

// Waits until no process of the job writing `out` is left (a bound of 60 s against a hang).
void wait_until_gone(const fs::path& out) {
  for (int tries = 0; tries < 600 && !pids_matching("[m]oetrace run .*" + out.string()).empty(); ++tries)
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
}

}  // namespace

BOOST_AUTO_TEST_CASE(results_do_not_depend_on_ranks_or_ep_size) {
  const Setup& s = setup();
  for (auto [ranks, ep] : {std::pair{2, 1}, std::pair{4, 2}, std::pair{3, 3}}) {
    const fs::path out = s.dir / ("np" + std::to_string(ranks) + "ep" + std::to_string(ep) + ".h5");
    const fs::path log = s.dir / (out.stem().string() + ".log");
    const int rc = run_to_end(mpirun_command(ranks, {"run", s.config.string(), "--out", out.string(), "--ep",
                                                     std::to_string(ep)}), log);
    BOOST_TEST_REQUIRE(rc == 0, slurp(log));
    BOOST_TEST_CONTEXT("mpirun -np " << ranks << " --ep " << ep) { expect_same_as_reference(out); }
  }
}

BOOST_AUTO_TEST_CASE(a_job_killed_and_resumed_with_another_rank_count_matches) {
  const Setup& s = setup();
  const fs::path out = s.dir / "killed.h5", log = s.dir / "killed.log";
  // Held half way through its chunks (after the save of the last one), then killed as a node failure
  // kills it: mpirun and every rank at once.
  Process p = spawn(mpirun_command(2, {"run", s.config.string(), "--out", out.string()}, pause_env("chunk", s.chunks / 2)), log);
  BOOST_TEST_REQUIRE(wait_for_pauses(log, 1, kPauseTimeoutMs), "the job never reached its pause point:\n" << slurp(log));
  kill(p.pid, SIGKILL);
  for (int pid : ranks_of(out, p.pid)) kill(pid, SIGKILL);
  p.wait();
  wait_until_gone(out);
  BOOST_TEST_REQUIRE(fs::exists(out), "the rows saved before the kill are on disk");
  BOOST_TEST_REQUIRE(run_to_end(mpirun_command(3, {"run", s.config.string(), "--out", out.string(), "--resume"}), log) == 0,
                     slurp(log));
  expect_same_as_reference(out);
}

BOOST_AUTO_TEST_CASE(sigusr1_stops_the_job_with_code_75_and_it_resumes) {
  const Setup& s = setup();
  const fs::path out = s.dir / "stopped.h5", log = s.dir / "stopped.log";
  Process p = spawn(mpirun_command(2, {"run", s.config.string(), "--out", out.string()}, pause_env("chunk", s.chunks / 2)), log);
  // The coordinator is held between two chunks: mpirun is running, not shutting down, and forwards
  // the signal to every rank.
  const bool paused = wait_for_pauses(log, 1, kPauseTimeoutMs);
  kill(p.pid, SIGUSR1);
  BOOST_TEST_REQUIRE(paused, "the job never reached its pause point:\n" << slurp(log));
  const int rc = p.wait();
  BOOST_TEST_REQUIRE(rc == 75, "exit code " << rc << "\n" << slurp(log));
  BOOST_TEST_REQUIRE(run_to_end(mpirun_command(2, {"run", s.config.string(), "--out", out.string(), "--resume"}), log) == 0,
                     slurp(log));
  expect_same_as_reference(out);
}

BOOST_AUTO_TEST_CASE(the_stop_file_stops_the_job_with_code_75_and_it_resumes) {
  const Setup& s = setup();
  const fs::path out = s.dir / "stopfile.h5", log = s.dir / "stopfile.log", stop = s.dir / "stopfile.stop";
  Process p = spawn(mpirun_command(2, {"run", s.config.string(), "--out", out.string(), "--stop-file", stop.string()},
                                   pause_env("chunk", s.chunks / 3)),
                    log);
  const bool paused = wait_for_pauses(log, 1, kPauseTimeoutMs);
  std::ofstream(stop) << "stop\n";
  BOOST_TEST_REQUIRE(paused, "the job never reached its pause point:\n" << slurp(log));
  const int rc = p.wait();
  BOOST_TEST_REQUIRE(rc == 75, "exit code " << rc << "\n" << slurp(log));
  BOOST_TEST(slurp(log).find("stop file " + stop.string()) != std::string::npos, slurp(log));
  fs::remove(stop);
  BOOST_TEST_REQUIRE(run_to_end(mpirun_command(2, {"run", s.config.string(), "--out", out.string(), "--resume",
                                                   "--stop-file", stop.string()}), log) == 0,
                     slurp(log));
  expect_same_as_reference(out);
}

BOOST_AUTO_TEST_CASE(a_stop_after_the_last_save_ends_the_job_as_done) {
  // Every rank held after the run's last save, before it exits. A stop then (a signal to the ranks,
  // to mpirun while its ranks still run, or the stop file) changes nothing: exit 0, the results complete.
  const Setup& s = setup();
  int n = 0;
  for (const std::string how : {"ranks", "mpirun", "stop file"}) {
    BOOST_TEST_CONTEXT("stop sent to " << how) {
      const fs::path out = s.dir / ("done" + std::to_string(++n) + ".h5");
      const fs::path log = fs::path(out.string() + ".log"), stop = fs::path(out.string() + ".stop");
      Process p = spawn(mpirun_command(2, {"run", s.config.string(), "--out", out.string(), "--stop-file", stop.string()},
                                       pause_env("done", 1)),
                        log);
      const bool paused = wait_for_pauses(log, 2, kPauseTimeoutMs);
      if (how == "ranks")
        for (int pid : ranks_of(out, p.pid)) kill(pid, SIGUSR1);
      else if (how == "mpirun")
        kill(p.pid, SIGUSR1);
      else
        std::ofstream(stop) << "stop\n";
      BOOST_TEST_REQUIRE(paused, "the job never reached its pause points:\n" << slurp(log));
      const int rc = p.wait();
      BOOST_TEST_REQUIRE(rc == 0, "exit code " << rc << "\n" << slurp(log));
      expect_same_as_reference(out);
    }
  }
}

BOOST_AUTO_TEST_CASE(an_ep_size_that_does_not_divide_the_ranks_is_an_error) {
  const Setup& s = setup();
  const fs::path log = s.dir / "bad-ep.log";
  const int rc = run_to_end(mpirun_command(4, {"run", s.config.string(), "--out", (s.dir / "bad.h5").string(), "--ep", "3"}), log);
  BOOST_TEST(rc != 0);
  BOOST_TEST(slurp(log).find("--ep 3 must divide") != std::string::npos, slurp(log));
}

BOOST_AUTO_TEST_CASE(a_rank_that_dies_takes_the_job_down_and_the_run_resumes) {
  const Setup& s = setup();
  const fs::path out = s.dir / "rank-died.h5", log = s.dir / "rank-died.log";
  Process p = spawn(mpirun_command(2, {"run", s.config.string(), "--out", out.string()}, pause_env("chunk", s.chunks / 2)), log);
  // The coordinator (world rank 0) is held between two chunks; the other rank, a worker, is killed.
  BOOST_TEST_REQUIRE(wait_for_pauses(log, 1, kPauseTimeoutMs), "the job never reached its pause point:\n" << slurp(log));
  const std::string line = slurp(log).substr(slurp(log).find("moetrace: test pause at"));
  const int coordinator = std::stoi(line.substr(line.find("(pid ") + 5));
  int victim = -1;
  for (int pid : ranks_of(out, p.pid))
    if (pid != coordinator) victim = pid;
  BOOST_TEST_REQUIRE(victim > 0, "no worker rank found under mpirun " << p.pid);
  kill(victim, SIGKILL);
  const auto t0 = std::chrono::steady_clock::now();
  const int rc = p.wait();  // ctest's timeout would catch a hang; it must end quickly
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  BOOST_TEST_MESSAGE("mpirun ended " << secs << " s after a rank was killed, exit code " << rc);
  BOOST_TEST(rc != 0);
  BOOST_TEST(secs < 60.0);
  wait_until_gone(out);
  BOOST_TEST_REQUIRE(fs::exists(out), "the rows saved before the kill are on disk");
  BOOST_TEST_REQUIRE(run_to_end(mpirun_command(2, {"run", s.config.string(), "--out", out.string(), "--resume"}), log) == 0,
                     slurp(log));
  expect_same_as_reference(out);
}
