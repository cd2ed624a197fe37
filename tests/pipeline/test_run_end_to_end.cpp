// `moetrace run` end to end on the demo model, through the CLI as a user runs it: localisation is
// found, a run killed with SIGKILL or stopped with SIGTERM or its stop file and resumed gives exactly
// the results of an uninterrupted run (every stage, the case scan and robustness reruns included), a
// stop after the last save ends the run as done; every kill and signal lands at a pause point of the
// run (MOETRACE_TEST_PAUSE), never after a fixed sleep. Results do not
// depend on the chunk size, a resumed finished run does no engine work, and existing or damaged
// results files are never overwritten.
#define BOOST_TEST_MODULE run_end_to_end
#include <boost/test/unit_test.hpp>

#include <signal.h>

#include <algorithm>
#include <fstream>

#include <fmt/format.h>

#include "results/h5_file.h"
#include "results/results_file.h"
#include "support/cli_runner.h"
#include "support/test_paths.h"

namespace fs = std::filesystem;
using namespace moetrace;
using namespace moetrace::test;

namespace {

// The demo protocol without its robustness grids, so that the test stays quick.
fs::path write_config(const fs::path& dir) {
  const fs::path src = source_dir();
  std::ofstream(dir / "run.toml") << "[model]\npath = \"" << (src / "demo/model").string() << "\"\n"
                                  << "[data]\ncounterfact = \"" << (src / "demo/counterfact_demo.json").string()
                                  << "\"\nobject_rule = \"leading_space\"\n"
                                  << "[cases]\nn = 0\n[heatmap]\ncases = 2\n"
                                  << "[run]\ncheckpoint_every_s = 0\nprogress_every_s = 1\n";
  return dir / "run.toml";
}

// Every dataset, and every summary (stored as attributes), of the two files agree exactly.
void expect_identical(const fs::path& a, const fs::path& b) {
  int compared = 0;
  for (const std::string& d : differing_datasets(a, b, &compared)) BOOST_ERROR(d << " differs");
  BOOST_TEST(compared > 10);
  ResultsFile fa(a.string(), ResultsFile::Mode::Read), fb(b.string(), ResultsFile::Mode::Read);
  for (const char* g : {"/validation", "/discovery", "/robustness/noise_multiplier", "/robustness/filter",
                        "/robustness/splits"}) {
    const auto x = fa.read_summaries(g), y = fb.read_summaries(g);
    BOOST_TEST_REQUIRE(x.size() == y.size(), g);
    for (std::size_t i = 0; i < x.size(); ++i) {
      BOOST_TEST(x[i].name == y[i].name);
      const bool same = x[i].n == y[i].n && x[i].mean == y[i].mean && x[i].ci_low == y[i].ci_low &&
                        x[i].ci_high == y[i].ci_high && x[i].p_value == y[i].p_value;
      BOOST_TEST(same, g << "/" << x[i].name << " differs");
    }
  }
}

// The demo protocol with a robustness grid (its own scans and layer sweeps) and the given chunk size.
fs::path write_full_config(const fs::path& dir, const std::string& name, int chunk_tokens) {
  std::ofstream(dir / name) << slurp(write_config(dir)) << "chunk_tokens = " << chunk_tokens << "\n"
                            << "[robustness]\nnoise_multipliers = [2.0]\nrelaxed_filter = true\nsplit_seeds = [1]\n";
  return dir / name;
}

// "engine work on this rank: N engine calls, ..." from a run's log.
long engine_calls(const std::string& log) {
  const std::string key = "engine work on this rank: ";
  const auto at = log.rfind(key);
  if (at == std::string::npos) return -1;
  return std::stol(log.substr(at + key.size()));
}

// Layer-token steps spent in patched conditions (not in preparing clean and noised runs), from the
// last end-of-run line: what resume must never redo for a stored row.
long condition_steps(const std::string& log) {
  const auto at = log.rfind("engine work on this rank: ");
  if (at == std::string::npos) return -1;
  const std::string key = " case runs, ";
  const auto k = log.find(key, at);
  if (k == std::string::npos) return -1;
  return std::stol(log.substr(k + key.size()));
}

constexpr int kPauseTimeoutMs = 600000;  // reaching a pause point: a bound for a hang, not a timing

struct Reference {
  fs::path dir, config, results;
  long chunks = 0;  // chunk pause points (util/stop_signal.h) the run passes
  Reference() {
    dir = fresh_temp_dir("e2e");
    config = write_config(dir);
    results = dir / "reference.h5";
    const int rc = run_to_end(moetrace_command({"run", config.string(), "--out", results.string()}, pause_env("chunk", 0)),
                              dir / "reference.log");
    BOOST_TEST_REQUIRE(rc == 0, slurp(dir / "reference.log"));
    chunks = pause_points_passed(dir / "reference.log", "chunk");
    BOOST_TEST_REQUIRE(chunks >= 4, slurp(dir / "reference.log"));
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
  BOOST_TEST_REQUIRE(run_to_end(moetrace_command({"report", r.results.string()}), log) == 0);
  const std::string report = slurp(log);
  BOOST_TEST(report.find("Selected: layer") != std::string::npos, report);
  BOOST_TEST(report.find("Specificity of L") != std::string::npos, report);
  BOOST_TEST(report.find("validation rescue interval excludes zero") != std::string::npos, report);
}

BOOST_AUTO_TEST_CASE(a_run_killed_with_sigkill_and_resumed_matches_the_uninterrupted_run) {
  // Killed while held a third and two thirds of the way through its chunks (after the last one's save).
  const Reference& r = reference();
  for (const long k : {r.chunks / 3, 2 * r.chunks / 3}) {
    const fs::path out = r.dir / fmt::format("killed{}.h5", k);
    const fs::path log = r.dir / fmt::format("killed{}.log", k);
    Process p = spawn(moetrace_command({"run", r.config.string(), "--out", out.string()}, pause_env("chunk", k)), log);
    const bool paused = wait_for_pauses(log, 1, kPauseTimeoutMs);
    kill(p.pid, SIGKILL);
    BOOST_TEST_REQUIRE(paused, "the run never reached its pause point:\n" << slurp(log));
    BOOST_TEST(p.wait() == 128 + SIGKILL);
    BOOST_TEST_REQUIRE(fs::exists(out), "the rows saved before the kill are on disk");
    BOOST_TEST_REQUIRE(run_to_end(moetrace_command({"run", r.config.string(), "--out", out.string(), "--resume"}), log) == 0,
                       slurp(log));
    BOOST_TEST(!fs::exists(out.string() + ".tmp"));
    expect_identical(r.results, out);
  }
}

BOOST_AUTO_TEST_CASE(sigterm_saves_exits_75_and_resumes_to_the_same_results) {
  const Reference& r = reference();
  const fs::path out = r.dir / "stopped.h5", log = r.dir / "stopped.log";
  Process p = spawn(moetrace_command({"run", r.config.string(), "--out", out.string()}, pause_env("chunk", r.chunks / 2)), log);
  const bool paused = wait_for_pauses(log, 1, kPauseTimeoutMs);
  kill(p.pid, SIGTERM);
  BOOST_TEST_REQUIRE(paused, "the run never reached its pause point:\n" << slurp(log));
  const int rc = p.wait();
  BOOST_TEST_REQUIRE(rc == 75, "exit code " << rc << "\n" << slurp(log));
  BOOST_TEST(slurp(log).find("--resume") != std::string::npos);
  BOOST_TEST(slurp(log).find("signal " + std::to_string(SIGTERM)) != std::string::npos, slurp(log));
  BOOST_TEST_REQUIRE(run_to_end(moetrace_command({"run", r.config.string(), "--out", out.string(), "--resume"}), log) == 0,
                     slurp(log));
  expect_identical(r.results, out);
}

BOOST_AUTO_TEST_CASE(the_stop_file_stops_the_run_and_a_stop_after_the_last_save_ends_it_as_done) {
  const Reference& r = reference();
  // The stop file, created while the run is held between two chunks: saved, exit 75, then resumed.
  const fs::path out = r.dir / "stopfile.h5", log = r.dir / "stopfile.log", stop = r.dir / "stopfile.stop";
  Process p = spawn(moetrace_command({"run", r.config.string(), "--out", out.string(), "--stop-file", stop.string()},
                                     pause_env("chunk", r.chunks / 2)),
                    log);
  const bool paused = wait_for_pauses(log, 1, kPauseTimeoutMs);
  std::ofstream(stop) << "stop\n";
  BOOST_TEST_REQUIRE(paused, "the run never reached its pause point:\n" << slurp(log));
  BOOST_TEST_REQUIRE(p.wait() == 75, slurp(log));
  BOOST_TEST(slurp(log).find("stop file " + stop.string()) != std::string::npos, slurp(log));
  fs::remove(stop);
  BOOST_TEST_REQUIRE(run_to_end(moetrace_command({"run", r.config.string(), "--out", out.string(), "--resume"}), log) == 0,
                     slurp(log));
  expect_identical(r.results, out);

  // A stop (SIGTERM, SIGUSR1, SIGINT, the stop file) once the last result is saved: exit 0, complete.
  for (const int sig : {SIGTERM, SIGUSR1, SIGINT, 0}) {
    BOOST_TEST_CONTEXT((sig ? "signal " + std::to_string(sig) : std::string("stop file"))) {
      const fs::path done = r.dir / fmt::format("done{}.h5", sig), done_log = r.dir / fmt::format("done{}.log", sig);
      Process q = spawn(moetrace_command({"run", r.config.string(), "--out", done.string(), "--stop-file", stop.string()},
                                         pause_env("done", 1)),
                        done_log);
      const bool held = wait_for_pauses(done_log, 1, kPauseTimeoutMs);
      if (sig)
        kill(q.pid, sig);
      else
        std::ofstream(stop) << "stop\n";
      BOOST_TEST_REQUIRE(held, "the run never reached its pause point:\n" << slurp(done_log));
      BOOST_TEST_REQUIRE(q.wait() == 0, slurp(done_log));
      fs::remove(stop);
      expect_identical(r.results, done);
    }
  }
}

BOOST_AUTO_TEST_CASE(existing_and_damaged_results_are_never_overwritten) {
  const Reference& r = reference();
  const std::string before = slurp(r.results);
  const fs::path log = r.dir / "refuse.log";
  BOOST_TEST(run_to_end(moetrace_command({"run", r.config.string(), "--out", r.results.string()}), log) == 2);
  BOOST_TEST(slurp(log).find("already exists") != std::string::npos, slurp(log));
  BOOST_TEST((slurp(r.results) == before));

  const fs::path damaged = r.dir / "damaged.h5";
  std::ofstream(damaged) << "this is not HDF5";
  BOOST_TEST(run_to_end(moetrace_command({"run", r.config.string(), "--out", damaged.string(), "--resume"}), log) == 2);
  BOOST_TEST(slurp(log).find("damaged.h5") != std::string::npos);
  BOOST_TEST(slurp(damaged) == "this is not HDF5");

  // A different config cannot resume a run.
  const fs::path other = r.dir / "other.toml";
  std::ofstream(other) << slurp(r.config) << "[noise]\nmultiplier = 2.0\n";
  BOOST_TEST(run_to_end(moetrace_command({"run", other.string(), "--out", r.results.string(), "--resume"}), log) == 2);
  BOOST_TEST(slurp(log).find("differs") != std::string::npos);
  BOOST_TEST((slurp(r.results) == before));
}

BOOST_AUTO_TEST_CASE(bad_input_through_the_cli_is_reported_clearly) {
  const Reference& r = reference();
  const fs::path log = r.dir / "bad.log";
  auto run_cfg = [&](const std::string& text) {
    std::ofstream(r.dir / "bad.toml") << text;
    fs::remove(log);
    return run_to_end(moetrace_command({"run", (r.dir / "bad.toml").string(), "--out", (r.dir / "bad.h5").string()}), log);
  };
  const std::string model = (source_dir() / "demo/model").string();
  BOOST_TEST(run_cfg("[model]\npath = \"/no/such/model\"\n[data]\ncounterfact = \"x.json\"\n") == 2);
  BOOST_TEST(slurp(log).find("/no/such/model") != std::string::npos, slurp(log));
  BOOST_TEST(run_cfg("[model]\npath = \"" + model + "\"\n[data]\ncounterfact = \"/no/cf.json\"\n") == 2);
  BOOST_TEST(slurp(log).find("/no/cf.json") != std::string::npos, slurp(log));
  BOOST_TEST(run_cfg("[model]\npath = \"" + model + "\"\nbogus = 1\n[data]\ncounterfact = \"x.json\"\n") == 2);
  BOOST_TEST(slurp(log).find("unknown key 'bogus'") != std::string::npos, slurp(log));
  // Unusable records are counted under a reason and reported; with none left, the run stops.
  std::ofstream(r.dir / "cf.json")
      << R"([{"case_id": 1, "requested_rewrite": {"prompt": "no placeholder", "subject": "x", "target_true": {"str": "a"}, "target_new": {"str": "b"}}},)"
      << R"( {"case_id": 2, "requested_rewrite": {"prompt": "The capital of {} is", "subject": "nonexistentword", "target_true": {"str": "two words"}, "target_new": {"str": "b"}}},)"
      << R"( {"case_id": 3, "requested_rewrite": {"prompt": "The capital of {} is", "subject": "x", "target_true": {"str": "qqqnotaword"}, "target_new": {"str": "zzznotaword"}}}])";
  BOOST_TEST(run_cfg("[model]\npath = \"" + model + "\"\n[data]\ncounterfact = \"" + (r.dir / "cf.json").string() +
                     "\"\n") == 2);
  const std::string msg = slurp(log);
  BOOST_TEST(msg.find("prompt without {}") != std::string::npos, msg);
  BOOST_TEST(msg.find("multi-token true object") != std::string::npos, msg);
  BOOST_TEST(msg.find("object outside the vocabulary") != std::string::npos, msg);
  BOOST_TEST(msg.find("0 usable cases") != std::string::npos, msg);
}

BOOST_AUTO_TEST_CASE(the_plotting_script_draws_every_figure_of_a_results_file) {
  const Reference& r = reference();
  const fs::path plots = r.dir / "plots", log = r.dir / "plots.log";
  // Debian's python3 carries h5py and matplotlib (installed by .ci/install-deps).
  const int rc = run_to_end({"/usr/bin/python3", (source_dir() / "tools/plot_results.py").string(), r.results.string(),
                             "--out-dir", plots.string()},
                            log);
  BOOST_TEST_REQUIRE(rc == 0, slurp(log));
  for (const char* figure : {"layer_sweep", "experts", "heatmap"}) {
    const fs::path png = plots / (r.results.stem().string() + "." + figure + ".png");
    BOOST_TEST(fs::exists(png), png);
    BOOST_TEST((fs::exists(png) && fs::file_size(png) > 10000), png << " looks empty");
  }
}

BOOST_AUTO_TEST_CASE(results_do_not_depend_on_the_chunk_size_and_a_finished_run_resumes_without_engine_work) {
  const fs::path dir = fresh_temp_dir("chunks");
  // chunk_tokens 1: one case per chunk; 70: about seven demo cases; 100000: every case in one chunk.
  std::vector<fs::path> outs;
  for (int tokens : {1, 70, 100000}) {
    const fs::path config = write_full_config(dir, fmt::format("chunk{}.toml", tokens), tokens);
    const fs::path out = dir / fmt::format("chunk{}.h5", tokens), log = dir / fmt::format("chunk{}.log", tokens);
    BOOST_TEST_REQUIRE(run_to_end(moetrace_command({"run", config.string(), "--out", out.string()}), log) == 0, slurp(log));
    BOOST_TEST(engine_calls(slurp(log)) > 0, slurp(log));
    BOOST_TEST(slurp(log).find("layer-token steps") != std::string::npos);
    outs.push_back(out);
  }
  for (std::size_t i = 1; i < outs.size(); ++i) BOOST_TEST_CONTEXT(outs[i]) { expect_identical(outs[0], outs[i]); }

  // Resuming the finished run recomputes nothing: no scan, no stage, no robustness rerun.
  const fs::path log = dir / "resume-finished.log";
  const std::string before = slurp(outs[1]);
  BOOST_TEST_REQUIRE(run_to_end(moetrace_command({"run", (dir / "chunk70.toml").string(), "--out", outs[1].string(),
                                                  "--resume"}), log) == 0, slurp(log));
  BOOST_TEST(engine_calls(slurp(log)) == 0, slurp(log));
  expect_identical(outs[0], outs[1]);
}

BOOST_AUTO_TEST_CASE(every_stage_resumes_after_sigkill_to_the_same_results) {
  // Kills spread over the whole run's chunks (scan, sweeps, controls, heat maps, robustness scans and sweeps);
  // each resumed run must end with the uninterrupted run's file and never recompute a stored row: its
  // patched-condition work is at most the whole run's, and less for a kill late in the run. (Engine
  // calls are no measure: a resumed stage prepares its remaining cases again, which the uninterrupted
  // run had reused from the scan.)
  const fs::path dir = fresh_temp_dir("kills");
  const fs::path config = write_full_config(dir, "run.toml", 70);
  const fs::path ref = dir / "ref.h5", ref_log = dir / "ref.log";
  BOOST_TEST_REQUIRE(run_to_end(moetrace_command({"run", config.string(), "--out", ref.string()}, pause_env("chunk", 0)),
                                ref_log) == 0,
                     slurp(ref_log));
  const long chunks = pause_points_passed(ref_log, "chunk");
  const long all_calls = engine_calls(slurp(ref_log)), all_conditions = condition_steps(slurp(ref_log));
  BOOST_TEST_REQUIRE(all_conditions > 0, slurp(ref_log));
  BOOST_TEST_REQUIRE(chunks >= 8, slurp(ref_log));
  for (double at : {0.15, 0.4, 0.65, 0.9}) {
    // Held at that fraction of the run's chunks (after the last one's save), then killed.
    const long k = std::max(1L, static_cast<long>(at * static_cast<double>(chunks)));
    const fs::path out = dir / fmt::format("killed{}.h5", at), log = dir / fmt::format("killed{}.log", at);
    Process p = spawn(moetrace_command({"run", config.string(), "--out", out.string()}, pause_env("chunk", k)), log);
    const bool paused = wait_for_pauses(log, 1, kPauseTimeoutMs);
    kill(p.pid, SIGKILL);
    p.wait();
    BOOST_TEST_REQUIRE(paused, "the run never reached chunk " << k << " of " << chunks << ":\n" << slurp(log));
    const bool resumed = fs::exists(out);
    BOOST_TEST(resumed, "the rows saved before the kill at chunk " << k << " are on disk");
    const auto args = resumed ? std::vector<std::string>{"run", config.string(), "--out", out.string(), "--resume"}
                              : std::vector<std::string>{"run", config.string(), "--out", out.string()};
    BOOST_TEST_REQUIRE(run_to_end(moetrace_command(args), log) == 0, slurp(log));
    const long conditions = condition_steps(slurp(log));
    BOOST_TEST_MESSAGE("killed at " << at << " of the run: resumed run made " << engine_calls(slurp(log)) << " of "
                                    << all_calls << " engine calls, " << conditions << " of " << all_conditions
                                    << " condition steps");
    BOOST_TEST(conditions >= 0, slurp(log));
    BOOST_TEST(conditions <= all_conditions);
    if (at > 0.8) BOOST_TEST(conditions < all_conditions);
    expect_identical(ref, out);
  }
}
