// Whole mpirun jobs, started from this (non-MPI) test process with a timeout:
//  - error semantics: one rank's failure (fail_one, or an unexpected exception) ends the job quickly
//    with a non-zero status and the rank's message, never a hang; a collective failure (check_all)
//    is raised on every rank and the job exits normally with status 2;
//  - the CLI: `mpirun -np 2 moetrace replay --ep 2` writes a file identical, dataset by dataset and
//    bit for bit, to the one-rank `moetrace replay`; a wrong --ep is a clear collective error.
#define BOOST_TEST_MODULE mpi_processes
#include <boost/test/unit_test.hpp>

#include <sys/wait.h>

#include <chrono>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>

#include <fmt/format.h>

#include "results/h5_file.h"
#include "support/test_paths.h"

namespace fs = std::filesystem;
using namespace moetrace;

namespace {

struct Run {
  int status = -1;  // exit status (124: killed by the timeout)
  std::string output;  // stdout and stderr
  double seconds = 0;
};

std::string quote(const std::string& s) { return "'" + s + "'"; }

Run run(const std::string& command, int timeout_s, const fs::path& log) {
  const std::string full =
      fmt::format("timeout -k 5 {} {} > {} 2>&1", timeout_s, command, quote(log.string()));
  BOOST_TEST_MESSAGE("$ " << command);
  const auto t0 = std::chrono::steady_clock::now();
  const int rc = std::system(full.c_str());
  Run r;
  r.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  r.status = WIFEXITED(rc) ? WEXITSTATUS(rc) : 128 + (WIFSIGNALED(rc) ? WTERMSIG(rc) : 0);
  std::ifstream in(log);
  std::stringstream ss;
  ss << in.rdbuf();
  r.output = ss.str();
  BOOST_TEST_MESSAGE("  status " << r.status << " after " << r.seconds << " s");
  return r;
}

std::string mpirun(int ranks) { return fmt::format("{} -np {} --oversubscribe", MOETRACE_MPIEXEC, ranks); }

bool contains(const std::string& haystack, const std::string& needle) {
  return haystack.find(needle) != std::string::npos;
}

void walk(const h5::File& f, const std::string& group, std::vector<std::string>& out) {
  for (const std::string& c : f.children(group)) {
    const std::string p = (group == "/" ? "" : group) + "/" + c;
    try {
      f.children(p);
      walk(f, p, out);
    } catch (...) {
      out.push_back(p);
    }
  }
}

// Every dataset of a and b: same names, shapes and bits (float -> double is exact, -0.0 included);
// and the `contrast` attribute of every fact.
std::vector<std::string> file_differences(const fs::path& a, const fs::path& b, int& checked) {
  const h5::File fa(a.string(), h5::File::Mode::ReadOnly), fb(b.string(), h5::File::Mode::ReadOnly);
  std::vector<std::string> da, db, out;
  walk(fa, "/", da);
  walk(fb, "/", db);
  if (da != db) out.push_back(fmt::format("dataset lists differ ({} vs {})", da.size(), db.size()));
  for (const std::string& d : da) {
    if (!fb.exists(d)) continue;
    ++checked;
    if (fa.shape(d) != fb.shape(d)) {
      out.push_back(d + ": shapes differ");
      continue;
    }
    if (d.ends_with("topk_idx")) {
      if (fa.read_int(d).data != fb.read_int(d).data) out.push_back(d + ": integers differ");
      continue;
    }
    const auto x = fa.read_double(d), y = fb.read_double(d);
    if (x.data.size() != y.data.size() ||
        (!x.data.empty() && std::memcmp(x.data.data(), y.data.data(), x.data.size() * sizeof(double)) != 0))
      out.push_back(d + ": values differ");
  }
  for (const std::string& fact : fa.children("/facts")) {
    const std::string g = "/facts/" + fact + "/clean";
    if (fa.has_attr(g, "contrast") && fa.attr_double(g, "contrast") != fb.attr_double(g, "contrast"))
      out.push_back(g + ": contrast attribute differs");
  }
  return out;
}

}  // namespace

BOOST_AUTO_TEST_CASE(a_healthy_helper_job_succeeds) {
  const fs::path tmp = test::fresh_temp_dir("mpi-ok");
  const Run r = run(mpirun(2) + " " + quote(MOETRACE_ERROR_HELPER) + " ok", 60, tmp / "log");
  BOOST_TEST(r.status == 0, r.output);
  BOOST_TEST(contains(r.output, "helper: all ranks passed"), r.output);
  fs::remove_all(tmp);
}

BOOST_AUTO_TEST_CASE(fail_one_aborts_the_job_quickly_with_the_ranks_message) {
  const fs::path tmp = test::fresh_temp_dir("mpi-fail-one");
  for (const char* mode : {"one", "exception"}) {
    const Run r = run(mpirun(2) + " " + quote(MOETRACE_ERROR_HELPER) + " " + mode, 60, tmp / "log");
    BOOST_TEST(r.status != 0, mode << ": " << r.output);
    BOOST_TEST(r.status != 124, mode << ": the job hung until the timeout");
    BOOST_TEST(r.seconds < 30, mode << ": took " << r.seconds << " s");
    const std::string message = std::string(mode) == "one" ? "moetrace: rank 1: rank-local failure for the test"
                                                           : "moetrace: rank 1: unexpected exception on one rank";
    BOOST_TEST(contains(r.output, message), mode << ": " << r.output);
  }
  fs::remove_all(tmp);
}

BOOST_AUTO_TEST_CASE(check_all_fails_every_rank_together) {
  const fs::path tmp = test::fresh_temp_dir("mpi-fail-all");
  const Run r = run(mpirun(3) + " " + quote(MOETRACE_ERROR_HELPER) + " all", 60, tmp / "log");
  BOOST_TEST(r.status == 2, r.output);
  for (int rank = 0; rank < 3; ++rank)
    BOOST_TEST(contains(r.output, fmt::format("helper rank {} caught: rank 1: bad shard on rank 1", rank)), r.output);
  fs::remove_all(tmp);
}

BOOST_AUTO_TEST_CASE(cli_replay_on_two_ranks_matches_one_rank_bit_for_bit) {
  const fs::path tmp = test::fresh_temp_dir("mpi-cli");
  const std::string bin = quote(test::moetrace_binary().string());
  for (const std::string m : {"qwen3moe-tiny", "mixtral-tiny"}) {
    const std::string args = fmt::format(" replay --model {} --in {}", quote((test::fixtures_dir() / m).string()),
                                         quote((test::fixtures_dir() / (m + ".golden.h5")).string()));
    const fs::path one = tmp / (m + ".one.h5"), two = tmp / (m + ".ep2.h5");
    const Run r1 = run(bin + args + " --out " + quote(one.string()), 300, tmp / "log1");
    BOOST_TEST_REQUIRE(r1.status == 0, r1.output);
    const Run r2 = run(mpirun(2) + " " + bin + args + " --ep 2 --out " + quote(two.string()), 300, tmp / "log2");
    BOOST_TEST_REQUIRE(r2.status == 0, r2.output);
    BOOST_TEST(contains(r2.output, "expert parallel over 2 mpi ranks"), r2.output);
    // Two groups of one rank (--ep 1 under -np 2): each replays every fact; the file is the same.
    const fs::path groups = tmp / (m + ".groups.h5");
    const Run r3 = run(mpirun(2) + " " + bin + args + " --out " + quote(groups.string()), 300, tmp / "log3");
    BOOST_TEST_REQUIRE(r3.status == 0, r3.output);
    int checked_groups = 0;
    for (const auto& d : file_differences(one, groups, checked_groups)) BOOST_ERROR(m << " (2 groups): " << d);
    BOOST_TEST(checked_groups > 0);
    // Log lines come from rank 0 only.
    std::size_t replayed = 0;
    for (std::size_t p = r2.output.find("replayed "); p != std::string::npos; p = r2.output.find("replayed ", p + 1))
      ++replayed;
    BOOST_TEST(replayed == 1u, r2.output);
    int checked = 0;
    const auto diffs = file_differences(one, two, checked);
    BOOST_TEST_MESSAGE(m << ": " << checked << " datasets compared");
    BOOST_TEST(checked > 0);
    for (const auto& d : diffs) BOOST_ERROR(m << ": " << d);
  }
  // The comparison can fail: two different models' replays differ.
  int checked = 0;
  BOOST_TEST(!file_differences(tmp / "qwen3moe-tiny.one.h5", tmp / "mixtral-tiny.one.h5", checked).empty());
  fs::remove_all(tmp);
}

BOOST_AUTO_TEST_CASE(a_wrong_group_size_is_a_clear_error_on_every_rank) {
  const fs::path tmp = test::fresh_temp_dir("mpi-cli-bad");
  const std::string bin = quote(test::moetrace_binary().string());
  const std::string m = "mixtral-tiny";
  const std::string args = fmt::format(" replay --model {} --in {} --out {}", quote((test::fixtures_dir() / m).string()),
                                       quote((test::fixtures_dir() / (m + ".golden.h5")).string()),
                                       quote((tmp / "never.h5").string()));
  const Run r = run(mpirun(2) + " " + bin + args + " --ep 3", 60, tmp / "log");
  BOOST_TEST(r.status == 2, r.output);
  // One rule for every command: R divides N.
  BOOST_TEST(contains(r.output, "--ep 3 must divide the number of MPI ranks 2"), r.output);
  const Run s = run(bin + args + " --ep 2", 60, tmp / "log");  // no mpirun: a job of one rank
  BOOST_TEST(s.status == 2, s.output);
  BOOST_TEST(contains(s.output, "--ep 2 must divide the number of MPI ranks 1"), s.output);
  // A missing model folder is seen by every rank: a collective error, exit status 2, no abort.
  const Run t = run(mpirun(2) + " " + bin + " replay --model " + quote((tmp / "no-such-model").string()) +
                        " --in " + quote((test::fixtures_dir() / (m + ".golden.h5")).string()) + " --out " +
                        quote((tmp / "never.h5").string()) + " --ep 2",
                    60, tmp / "log");
  BOOST_TEST(t.status == 2, t.output);
  BOOST_TEST(!fs::exists(tmp / "never.h5"));
  fs::remove_all(tmp);
}
