// `moetrace run --shard i/n` and `moetrace merge` through the CLI on the demo model: a staged run
// (shards of the per-case stages, one of them on two MPI ranks, merged after each, then a final
// unsharded resume) gives a file bit-identical to one uninterrupted run (every dataset and attribute
// outside /provenance); each shard computes exactly its cases and stops at the documented step; bad
// --shard values, inputs of different runs and conflicting rows are bad input (exit 2) named in the
// message.
#define BOOST_TEST_MODULE shard_merge
#include <boost/test/unit_test.hpp>

#include <fstream>

#include <fmt/format.h>

#include "results/h5_file.h"
#include "support/cli_runner.h"
#include "support/test_paths.h"

namespace fs = std::filesystem;
using namespace moetrace;
using namespace moetrace::test;

namespace {

constexpr int kShards = 2;

// The demo protocol, reduced (fewer noise samples), with heat maps and a robustness split so that the
// final unsharded run has work of its own.
fs::path write_config(const fs::path& dir) {
  const fs::path src = source_dir();
  std::ofstream(dir / "run.toml") << "[model]\npath = \"" << (src / "demo/model").string() << "\"\n"
                                  << "[data]\ncounterfact = \"" << (src / "demo/counterfact_demo.json").string()
                                  << "\"\nobject_rule = \"leading_space\"\n"
                                  << "[cases]\nn = 0\n[noise]\nsamples = 4\n[heatmap]\ncases = 2\n"
                                  << "[robustness]\nsplit_seeds = [1]\n"
                                  << "[run]\ncheckpoint_every_s = 0\nprogress_every_s = 5\n";
  return dir / "run.toml";
}

int run_cli(const std::vector<std::string>& args, const fs::path& log) { return run_to_end(moetrace_command(args), log); }

// tools/compare_results.py: every dataset and attribute outside /provenance, bit for bit.
int compare_results(const fs::path& reference, const fs::path& other, const fs::path& log) {
  return run_to_end({"/usr/bin/python3", (source_dir() / "tools/compare_results.py").string(), reference.string(),
                     other.string()},
                    log);
}

struct Staged {
  fs::path dir, config, reference;
  std::vector<fs::path> stage_logs;    // per stage: the shards' logs, appended
  std::vector<fs::path> stage0_files;  // the first stage's shard files
  std::vector<fs::path> merged;        // after each stage
  Staged() {
    dir = fresh_temp_dir("shard-merge");
    config = write_config(dir);
    reference = dir / "reference.h5";
    BOOST_TEST_REQUIRE(run_cli({"run", config.string(), "--out", reference.string()}, dir / "reference.log") == 0,
                       slurp(dir / "reference.log"));
    // Three rounds of shards: layer sweep, expert tracing, controls and coalitions.
    for (int stage = 0; stage < 3; ++stage) {
      const fs::path log = dir / fmt::format("stage{}.log", stage);
      std::vector<std::string> merge_args{"merge", "--out", (dir / fmt::format("merged{}.h5", stage)).string()};
      for (int i = 0; i < kShards; ++i) {
        const fs::path out = dir / fmt::format("stage{}.shard{}.h5", stage, i);
        std::vector<std::string> args{"run", config.string(), "--out", out.string(), "--shard",
                                      fmt::format("{}/{}", i, kShards)};
        if (stage > 0) {
          fs::copy_file(merged.back(), out);
          args.push_back("--resume");
        } else {
          stage0_files.push_back(out);
        }
        // Shard 1 runs on two MPI ranks: the distributed executor's shard of rows and its stop.
        BOOST_TEST_REQUIRE(run_to_end(i == 1 ? mpirun_command(2, args) : moetrace_command(args), log) == 0, slurp(log));
        merge_args.push_back(out.string());
      }
      stage_logs.push_back(log);
      BOOST_TEST_REQUIRE(run_cli(merge_args, log) == 0, slurp(log));
      merged.push_back(merge_args[2]);
    }
    final_file = dir / "final.h5";
    fs::copy_file(merged.back(), final_file);
    BOOST_TEST_REQUIRE(run_cli({"run", config.string(), "--out", final_file.string(), "--resume"}, dir / "final.log") == 0,
                       slurp(dir / "final.log"));
  }
  fs::path final_file;
};

Staged& staged() {
  static Staged s;
  return s;
}

std::size_t count(const std::string& text, const std::string& what) {
  std::size_t n = 0;
  for (auto at = text.find(what); at != std::string::npos; at = text.find(what, at + 1)) ++n;
  return n;
}

}  // namespace

BOOST_AUTO_TEST_CASE(a_staged_run_of_shards_and_merges_is_bit_identical_to_one_run) {
  const Staged& s = staged();
  const fs::path log = s.dir / "compare.log";
  BOOST_TEST(compare_results(s.reference, s.final_file, log) == 0, slurp(log));
  BOOST_TEST(slurp(log).find("all bit-identical") != std::string::npos, slurp(log));
  int compared = 0;
  for (const std::string& d : differing_datasets(s.reference, s.final_file, &compared)) BOOST_ERROR(d << " differs");
  BOOST_TEST(compared > 20);
  // The merged file of the last stage is not finished (no summaries yet): the comparison can fail.
  BOOST_TEST(compare_results(s.reference, s.merged.back(), s.dir / "compare-unfinished.log") == 1);
  h5::File f(s.final_file.string(), h5::File::Mode::ReadOnly);
  BOOST_TEST(f.attr_int("/provenance", "completed") == 1);
}

BOOST_AUTO_TEST_CASE(each_shard_computes_exactly_its_cases_and_stops_where_documented) {
  const Staged& s = staged();
  const char* stops[] = {"stopped before the layer selection", "stopped before the expert selection",
                         "stopped before the statistics"};
  for (int stage = 0; stage < 3; ++stage)
    BOOST_TEST(count(slurp(s.stage_logs[stage]), stops[stage]) == static_cast<std::size_t>(kShards),
               "stage " << stage << ": " << slurp(s.stage_logs[stage]));
  for (int i = 0; i < kShards; ++i) {
    h5::File f(s.stage0_files[i].string(), h5::File::Mode::ReadOnly);
    BOOST_TEST(f.attr_string("/provenance", "shard") == fmt::format("{}/{}", i, kShards));
    const auto done = f.read_int("/layer_sweep/rescue_done").data;
    BOOST_TEST_REQUIRE(done.size() > 4u);
    for (std::size_t r = 0; r < done.size(); ++r)
      BOOST_TEST((done[r] != 0) == (static_cast<int>(r % kShards) == i), "row " << r << " of shard " << i);
    BOOST_TEST(!f.exists("/layer_sweep/discovery_mean"));  // the selection is not a shard's
    BOOST_TEST(!f.exists("/validation"));
  }
  h5::File m(s.merged[0].string(), h5::File::Mode::ReadOnly);
  for (std::int64_t d : m.read_int("/layer_sweep/rescue_done").data) BOOST_TEST(d == 1);
  BOOST_TEST(!m.has_attr("/provenance", "shard"));
  BOOST_TEST(m.attr_string("/provenance", "merged_from").find("(shard 1/2)") != std::string::npos);
}

BOOST_AUTO_TEST_CASE(bad_shard_values_are_bad_input_naming_the_option) {
  const Staged& s = staged();
  for (const char* bad : {"x", "2/2", "-1/2", "1/0", "0/", "/2", "1/2/3", "0/99999999999", " 0/2"}) {
    const fs::path log = s.dir / "bad-shard.log";
    fs::remove(log);
    BOOST_TEST(run_cli({"run", s.config.string(), "--out", (s.dir / "never.h5").string(), "--shard", bad}, log) == 2,
               bad);
    BOOST_TEST(slurp(log).find("--shard") != std::string::npos, bad << ": " << slurp(log));
    BOOST_TEST(!fs::exists(s.dir / "never.h5"));
  }
}

BOOST_AUTO_TEST_CASE(merging_files_of_different_runs_is_bad_input_naming_file_and_field) {
  const Staged& s = staged();
  for (const char* field : {"config_text", "model_files_sha256"}) {
    const fs::path other = s.dir / fmt::format("other-{}.h5", field);
    fs::copy_file(s.stage0_files[1], other);
    {
      h5::File f(other.string(), h5::File::Mode::ReadWrite);
      f.set_attr("/provenance", field, f.attr_string("/provenance", field) + "\n# changed");
    }
    const fs::path out = s.dir / fmt::format("merged-other-{}.h5", field), log = s.dir / "merge-other.log";
    fs::remove(log);
    BOOST_TEST(run_cli({"merge", "--out", out.string(), s.stage0_files[0].string(), other.string()}, log) == 2);
    const std::string msg = slurp(log);
    BOOST_TEST(msg.find(other.string()) != std::string::npos, msg);
    BOOST_TEST(msg.find(field) != std::string::npos, msg);
    BOOST_TEST(!fs::exists(out));
    BOOST_TEST(!fs::exists(out.string() + ".tmp"));
  }
}

BOOST_AUTO_TEST_CASE(conflicting_rows_are_bad_input_naming_file_dataset_and_row) {
  const Staged& s = staged();
  // A copy of shard 0's file with one of its done layer-sweep rows changed: merged with the original,
  // the same row is done in both and differs.
  const fs::path changed = s.dir / "changed.h5";
  fs::copy_file(s.stage0_files[0], changed);
  {
    h5::File f(changed.string(), h5::File::Mode::ReadWrite);
    const auto shape = f.shape("/layer_sweep/rescue");
    std::vector<double> row(shape.at(1), 0.125);
    f.write_rows_double("/layer_sweep/rescue", 2, 1, row.data());
  }
  const fs::path out = s.dir / "merged-conflict.h5", log = s.dir / "merge-conflict.log";
  BOOST_TEST(run_cli({"merge", "--out", out.string(), s.stage0_files[0].string(), changed.string()}, log) == 2);
  const std::string msg = slurp(log);
  BOOST_TEST(msg.find(changed.string()) != std::string::npos, msg);
  BOOST_TEST(msg.find("row 2 of /layer_sweep/rescue") != std::string::npos, msg);
  BOOST_TEST(!fs::exists(out));
  // The shards' own files merge without conflict, in any order, and give the same file.
  const fs::path a = s.dir / "merged-ab.h5", b = s.dir / "merged-ba.h5";
  BOOST_TEST(run_cli({"merge", "--out", a.string(), s.stage0_files[0].string(), s.stage0_files[1].string()}, log) == 0);
  BOOST_TEST(run_cli({"merge", "--out", b.string(), s.stage0_files[1].string(), s.stage0_files[0].string()}, log) == 0);
  BOOST_TEST(compare_results(a, b, s.dir / "compare-ab.log") == 0, slurp(s.dir / "compare-ab.log"));
}

BOOST_AUTO_TEST_CASE(merge_never_overwrites_and_needs_results_files) {
  const Staged& s = staged();
  const fs::path log = s.dir / "merge-bad.log";
  // An existing --out.
  BOOST_TEST(run_cli({"merge", "--out", s.merged[0].string(), s.stage0_files[0].string(), s.stage0_files[1].string()},
                      log) == 2);
  BOOST_TEST(slurp(log).find("already exists") != std::string::npos, slurp(log));
  // Not a results file, and a missing input.
  std::ofstream(s.dir / "not.h5") << "not hdf5";
  for (const fs::path& bad : {s.dir / "not.h5", s.dir / "missing.h5"}) {
    fs::remove(log);
    BOOST_TEST(run_cli({"merge", "--out", (s.dir / "m-bad.h5").string(), s.stage0_files[0].string(), bad.string()},
                        log) == 2);
    BOOST_TEST(slurp(log).find(bad.string()) != std::string::npos, slurp(log));
  }
  // One input only.
  BOOST_TEST(run_cli({"merge", "--out", (s.dir / "m-one.h5").string(), s.stage0_files[0].string()}, log) == 2);
}
