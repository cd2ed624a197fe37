// `moetrace run` end to end on the demo model, through the CLI as a user runs it: localisation is
// found, a run killed with SIGKILL or stopped with SIGTERM and resumed gives exactly the results of
// an uninterrupted run, and existing or damaged results files are never overwritten.
#define BOOST_TEST_MODULE run_end_to_end
#include <boost/test/unit_test.hpp>

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <fstream>
#include <random>
#include <thread>

#include <fmt/format.h>

#include "results/h5_file.h"
#include "support/test_paths.h"

namespace fs = std::filesystem;
using namespace moetrace;

namespace {

struct Child {
  pid_t pid = -1;
  int wait_status() const {
    int status = 0;
    waitpid(pid, &status, 0);
    return status;
  }
};

// Starts `moetrace args...` with stdout/stderr to `log`.
Child spawn(const std::vector<std::string>& args, const fs::path& log) {
  Child c;
  c.pid = fork();
  if (c.pid == 0) {
    FILE* f = std::freopen(log.c_str(), "a", stdout);
    (void)f;
    dup2(fileno(stdout), fileno(stderr));
    std::vector<std::string> full{test::moetrace_binary().string()};
    full.insert(full.end(), args.begin(), args.end());
    std::vector<char*> argv;
    for (auto& a : full) argv.push_back(a.data());
    argv.push_back(nullptr);
    execv(argv[0], argv.data());
    _exit(127);
  }
  return c;
}

int run_to_end(const std::vector<std::string>& args, const fs::path& log) {
  const int status = spawn(args, log).wait_status();
  return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

std::string slurp(const fs::path& p) {
  std::ifstream in(p);
  return {std::istreambuf_iterator<char>(in), {}};
}

// A smaller protocol than configs/demo.toml (no robustness grids) so the test stays quick.
fs::path write_config(const fs::path& dir) {
  const fs::path src = test::source_dir();
  std::ofstream(dir / "run.toml") << "[model]\npath = \"" << (src / "demo/model").string() << "\"\n"
                                  << "[data]\ncounterfact = \"" << (src / "demo/counterfact_demo.json").string()
                                  << "\"\nobject_rule = \"leading_space\"\n"
                                  << "[cases]\nn = 0\n[heatmap]\ncases = 2\n"
                                  << "[run]\ncheckpoint_every_s = 0\nprogress_every_s = 1\n";
  return dir / "run.toml";
}

void collect(const h5::File& f, const std::string& group, std::vector<std::string>& out) {
  for (const std::string& c : f.children(group)) {
    const std::string p = (group == "/" ? "" : group) + "/" + c;
    if (p == "/provenance") continue;
    try {
      f.children(p);
      collect(f, p, out);
    } catch (const std::exception&) {
      out.push_back(p);
    }
  }
}

// Every dataset (but provenance) equal, bit for bit (NaN positions included).
void expect_identical(const fs::path& a, const fs::path& b) {
  h5::File fa(a.string(), h5::File::Mode::ReadOnly), fb(b.string(), h5::File::Mode::ReadOnly);
  std::vector<std::string> da, db;
  collect(fa, "/", da);
  collect(fb, "/", db);
  BOOST_TEST(da == db, "dataset lists differ");
  int compared = 0;
  for (const std::string& d : da) {
    if (!fb.exists(d)) continue;
    if (d.ends_with("prompt") || d.ends_with("subject") || d.ends_with("object") || d.ends_with("reason") ||
        d.ends_with("relation_id")) {
      BOOST_TEST((fa.read_strings(d) == fb.read_strings(d)), d);
      continue;
    }
    auto x = fa.read_double(d), y = fb.read_double(d);
    BOOST_TEST((x.shape == y.shape), d);
    bool same = x.data.size() == y.data.size();
    for (std::size_t i = 0; same && i < x.data.size(); ++i)
      same = (std::isnan(x.data[i]) && std::isnan(y.data[i])) || x.data[i] == y.data[i];
    BOOST_TEST(same, d << " differs");
    ++compared;
  }
  BOOST_TEST(compared > 10);
}

struct Reference {
  fs::path dir, config, results;
  Reference() {
    dir = test::fresh_temp_dir("e2e");
    config = write_config(dir);
    results = dir / "reference.h5";
    const int rc = run_to_end({"run", config.string(), "--out", results.string()}, dir / "reference.log");
    BOOST_TEST_REQUIRE(rc == 0, slurp(dir / "reference.log"));
  }
};

Reference& reference() {
  static Reference r;
  return r;
}

}  // namespace

BOOST_AUTO_TEST_CASE(the_demo_localises_a_layer_and_an_expert) {
  const Reference& r = reference();
  h5::File f(r.results.string(), h5::File::Mode::ReadOnly);
  const double low = f.attr_double("/validation/layer_rescue", "ci_low");
  BOOST_TEST_MESSAGE("validation layer rescue " << f.attr_double("/validation/layer_rescue", "mean") << " [" << low
                                                << ", " << f.attr_double("/validation/layer_rescue", "ci_high") << "]");
  BOOST_TEST(low > 0.0);
  BOOST_TEST(f.attr_int("/experts", "selected_expert") >= 0);
  BOOST_TEST(f.attr_int("/provenance", "completed") == 1);
  BOOST_TEST(f.attr_string("/provenance", "config_text") == slurp(r.config));
  BOOST_TEST(f.attr_string("/provenance", "model_files_sha256").find("model.safetensors") != std::string::npos);
  // The report says which expert was selected and how specific it is.
  const fs::path log = r.dir / "report.log";
  BOOST_TEST_REQUIRE(run_to_end({"report", r.results.string()}, log) == 0);
  const std::string report = slurp(log);
  BOOST_TEST(report.find("Selected: layer") != std::string::npos, report);
  BOOST_TEST(report.find("Specificity of L") != std::string::npos, report);
  BOOST_TEST(report.find("validation rescue interval excludes zero") != std::string::npos, report);
}

BOOST_AUTO_TEST_CASE(a_run_killed_with_sigkill_and_resumed_matches_the_uninterrupted_run) {
  const Reference& r = reference();
  std::mt19937 rng(std::random_device{}());
  for (int attempt = 0; attempt < 2; ++attempt) {
    const fs::path out = r.dir / fmt::format("killed{}.h5", attempt);
    const fs::path log = r.dir / fmt::format("killed{}.log", attempt);
    Child c = spawn({"run", r.config.string(), "--out", out.string()}, log);
    std::this_thread::sleep_for(std::chrono::milliseconds(std::uniform_int_distribution<int>(300, 2500)(rng)));
    kill(c.pid, SIGKILL);
    c.wait_status();
    // Resume until done; a kill before the first snapshot leaves no file: then start afresh.
    int rc = fs::exists(out) ? run_to_end({"run", r.config.string(), "--out", out.string(), "--resume"}, log)
                             : run_to_end({"run", r.config.string(), "--out", out.string()}, log);
    BOOST_TEST_REQUIRE(rc == 0, slurp(log));
    BOOST_TEST(!fs::exists(out.string() + ".tmp"));
    expect_identical(r.results, out);
  }
}

BOOST_AUTO_TEST_CASE(sigterm_saves_exits_75_and_resumes_to_the_same_results) {
  const Reference& r = reference();
  const fs::path out = r.dir / "stopped.h5", log = r.dir / "stopped.log";
  Child c = spawn({"run", r.config.string(), "--out", out.string()}, log);
  std::this_thread::sleep_for(std::chrono::milliseconds(1500));
  kill(c.pid, SIGTERM);
  const int status = c.wait_status();
  BOOST_TEST_REQUIRE(WIFEXITED(status));
  const int rc = WEXITSTATUS(status);
  BOOST_TEST((rc == 75 || rc == 0), "exit code " << rc << "\n" << slurp(log));
  if (rc == 75) {
    BOOST_TEST(slurp(log).find("--resume") != std::string::npos);
    BOOST_TEST_REQUIRE(run_to_end({"run", r.config.string(), "--out", out.string(), "--resume"}, log) == 0, slurp(log));
  }
  expect_identical(r.results, out);
}

BOOST_AUTO_TEST_CASE(existing_and_damaged_results_are_never_overwritten) {
  const Reference& r = reference();
  const std::string before = slurp(r.results);
  const fs::path log = r.dir / "refuse.log";
  BOOST_TEST(run_to_end({"run", r.config.string(), "--out", r.results.string()}, log) == 2);
  BOOST_TEST(slurp(log).find("already exists") != std::string::npos, slurp(log));
  BOOST_TEST((slurp(r.results) == before));

  const fs::path damaged = r.dir / "damaged.h5";
  std::ofstream(damaged) << "this is not HDF5";
  BOOST_TEST(run_to_end({"run", r.config.string(), "--out", damaged.string(), "--resume"}, log) == 2);
  BOOST_TEST(slurp(log).find("damaged.h5") != std::string::npos);
  BOOST_TEST(slurp(damaged) == "this is not HDF5");

  // A different config cannot resume a run.
  const fs::path other = r.dir / "other.toml";
  std::ofstream(other) << slurp(r.config) << "[noise]\nmultiplier = 2.0\n";
  BOOST_TEST(run_to_end({"run", other.string(), "--out", r.results.string(), "--resume"}, log) == 2);
  BOOST_TEST(slurp(log).find("differs") != std::string::npos);
}

BOOST_AUTO_TEST_CASE(bad_input_through_the_cli_is_reported_clearly) {
  const Reference& r = reference();
  const fs::path log = r.dir / "bad.log";
  auto run_cfg = [&](const std::string& text) {
    std::ofstream(r.dir / "bad.toml") << text;
    fs::remove(log);
    return run_to_end({"run", (r.dir / "bad.toml").string(), "--out", (r.dir / "bad.h5").string()}, log);
  };
  const std::string model = (test::source_dir() / "demo/model").string();
  BOOST_TEST(run_cfg("[model]\npath = \"/no/such/model\"\n[data]\ncounterfact = \"x.json\"\n") == 2);
  BOOST_TEST(slurp(log).find("/no/such/model") != std::string::npos, slurp(log));
  BOOST_TEST(run_cfg("[model]\npath = \"" + model + "\"\n[data]\ncounterfact = \"/no/cf.json\"\n") == 2);
  BOOST_TEST(slurp(log).find("/no/cf.json") != std::string::npos, slurp(log));
  BOOST_TEST(run_cfg("[model]\npath = \"" + model + "\"\nbogus = 1\n[data]\ncounterfact = \"x.json\"\n") == 2);
  BOOST_TEST(slurp(log).find("unknown key 'bogus'") != std::string::npos, slurp(log));
  // Records that cannot be used are counted and reported, not fatal.
  std::ofstream(r.dir / "cf.json")
      << R"([{"case_id": 1, "requested_rewrite": {"prompt": "no placeholder", "subject": "x", "target_true": {"str": "a"}, "target_new": {"str": "b"}}},)"
      << R"( {"case_id": 2, "requested_rewrite": {"prompt": "{} is in", "subject": "qqqzzz unknownword", "target_true": {"str": "not-a-word-here"}, "target_new": {"str": "b"}}}])";
  BOOST_TEST(run_cfg("[model]\npath = \"" + model + "\"\n[data]\ncounterfact = \"" + (r.dir / "cf.json").string() +
                     "\"\n") == 2);
  const std::string msg = slurp(log);
  BOOST_TEST(msg.find("usable cases") != std::string::npos, msg);
}
