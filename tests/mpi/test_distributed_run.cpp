// `mpirun -np N moetrace run CONFIG --ep R`: results do not depend on the number of ranks, the EP
// group size, or on being killed and resumed with another rank count; SIGUSR1 (which mpirun
// forwards to the ranks) stops the job cleanly with exit code 75.
#define BOOST_TEST_MODULE distributed_run
#include <boost/test/unit_test.hpp>

#include <signal.h>

#include <chrono>
#include <cstdio>
#include <fstream>
#include <random>
#include <thread>

#include "support/cli_runner.h"
#include "support/test_paths.h"

namespace fs = std::filesystem;
using namespace moetrace::test;

namespace {

struct Setup {
  fs::path dir, config, reference;
  Setup() {
    dir = fresh_temp_dir("dist");
    const fs::path src = source_dir();
    std::ofstream(dir / "run.toml") << "[model]\npath = \"" << (src / "demo/model").string() << "\"\n"
                                    << "[data]\ncounterfact = \"" << (src / "demo/counterfact_demo.json").string()
                                    << "\"\nobject_rule = \"leading_space\"\n[cases]\nn = 80\n"
                                    << "[robustness]\nsplit_seeds = [1]\n[run]\ncheckpoint_every_s = 0\n";
    config = dir / "run.toml";
    reference = dir / "single.h5";
    BOOST_TEST_REQUIRE(run_to_end(moetrace_command({"run", config.string(), "--out", reference.string()}),
                                  dir / "single.log") == 0, slurp(dir / "single.log"));
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
  std::mt19937 rng(std::random_device{}());
  const fs::path out = s.dir / "killed.h5", log = s.dir / "killed.log";
  Process p = spawn(mpirun_command(2, {"run", s.config.string(), "--out", out.string()}), log);
  std::this_thread::sleep_for(std::chrono::milliseconds(std::uniform_int_distribution<int>(1500, 4000)(rng)));
  kill(p.pid, SIGKILL);  // mpirun dies at once; its ranks are orphaned and die with their pipes
  p.wait();
  // Until the orphaned ranks are gone, rank 0 may still save the file: wait for them (they are the
  // only processes naming this test's output path), so that "does the file exist" is decided once.
  for (int tries = 0; tries < 300; ++tries) {
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    int alive = 0;
    if (FILE* f = popen(("pgrep -f '[m]oetrace run.*" + out.string() + "' | wc -l").c_str(), "r")) {
      if (std::fscanf(f, "%d", &alive) != 1) alive = 0;
      pclose(f);
    }
    if (alive == 0) break;
  }
  const std::vector<std::string> args = fs::exists(out)
                                            ? std::vector<std::string>{"run", s.config.string(), "--out", out.string(), "--resume"}
                                            : std::vector<std::string>{"run", s.config.string(), "--out", out.string()};
  BOOST_TEST_REQUIRE(run_to_end(mpirun_command(3, args), log) == 0, slurp(log));
  expect_same_as_reference(out);
}

BOOST_AUTO_TEST_CASE(sigusr1_stops_the_job_with_code_75_and_it_resumes) {
  const Setup& s = setup();
  const fs::path out = s.dir / "stopped.h5", log = s.dir / "stopped.log";
  Process p = spawn(mpirun_command(2, {"run", s.config.string(), "--out", out.string()}), log);
  // Every rank installs its stop handlers before the collective config load that precedes this line.
  const bool started = wait_for_log(log, "CounterFact records from", 120000);
  if (started) std::this_thread::sleep_for(std::chrono::milliseconds(1000));
  kill(p.pid, SIGUSR1);
  BOOST_TEST_REQUIRE(started, "the job never logged its inputs:\n" << slurp(log));
  const int rc = p.wait();
  BOOST_TEST((rc == 75 || rc == 0), "exit code " << rc << "\n" << slurp(log));
  if (rc == 75)
    BOOST_TEST_REQUIRE(run_to_end(mpirun_command(2, {"run", s.config.string(), "--out", out.string(), "--resume"}), log) == 0,
                       slurp(log));
  expect_same_as_reference(out);
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
  Process p = spawn(mpirun_command(2, {"run", s.config.string(), "--out", out.string()}), log);
  // Kill one rank (a child of mpirun), not mpirun itself.
  int victim = -1;
  for (int tries = 0; tries < 100 && victim < 0; ++tries) {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
    if (FILE* f = popen(("pgrep -P " + std::to_string(p.pid) + " -f 'moetrace run' | tail -n 1").c_str(), "r")) {
      if (std::fscanf(f, "%d", &victim) != 1) victim = -1;
      pclose(f);
    }
  }
  BOOST_TEST_REQUIRE(victim > 0, "no rank process found under mpirun " << p.pid);
  std::this_thread::sleep_for(std::chrono::milliseconds(1500));
  kill(victim, SIGKILL);
  const auto t0 = std::chrono::steady_clock::now();
  const int rc = p.wait();  // ctest's timeout would catch a hang; it must end quickly
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  BOOST_TEST_MESSAGE("mpirun ended " << secs << " s after a rank was killed, exit code " << rc);
  if (rc != 0) {  // 0 only if the run had already finished
    BOOST_TEST(secs < 60.0);
    const std::vector<std::string> args =
        fs::exists(out) ? std::vector<std::string>{"run", s.config.string(), "--out", out.string(), "--resume"}
                        : std::vector<std::string>{"run", s.config.string(), "--out", out.string()};
    BOOST_TEST_REQUIRE(run_to_end(mpirun_command(2, args), log) == 0, slurp(log));
  }
  expect_same_as_reference(out);
}
