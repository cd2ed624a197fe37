// The packed weight store (docs/weights.md) through the CLI: results bit-identical with and without
// it (every fixture, both CPU modes, fast path and full recompute, two expert-parallel ranks, the
// demo's whole run); a checkpoint rewritten in place with its size and times restored is detected and
// the store rebuilt; a truncated or damaged store is rebuilt (said in the log) or, for `store verify`,
// exit 2 naming it; processes that start at once build it once; non-finite weights are refused from
// what the build recorded; `store ls` and `store rm` do what they say.
#define BOOST_TEST_MODULE weight_store
#include <boost/test/unit_test.hpp>

#include <sys/stat.h>

#include <fstream>
#include <regex>

#include <fmt/format.h>

#include "model/weight_store.h"
#include "support/cli_runner.h"
#include "support/test_paths.h"
#include "util/error.h"

namespace fs = std::filesystem;
using namespace moetrace;
using namespace moetrace::test;

namespace {

const std::vector<std::string> kFixtures = {"qwen3moe-tiny", "mixtral-tiny", "olmoe-tiny"};

int cli(const std::vector<std::string>& args, const fs::path& log, const std::vector<std::string>& env = {}) {
  fs::remove(log);
  return run_to_end(moetrace_command(args, env), log);
}

std::vector<std::string> replay_args(const fs::path& model, const std::string& fixture, const fs::path& out) {
  return {"replay", "--model", model.string(), "--in", (fixtures_dir() / (fixture + ".golden.h5")).string(), "--out",
          out.string()};
}

std::vector<std::string> with(std::vector<std::string> args, const std::vector<std::string>& more) {
  args.insert(args.end(), more.begin(), more.end());
  return args;
}

long count(const std::string& text, const std::string& what) {
  long n = 0;
  for (std::size_t p = text.find(what); p != std::string::npos; p = text.find(what, p + 1)) ++n;
  return n;
}

// tools/compare_results.py: every dataset and attribute outside /provenance, bit for bit.
void require_identical(const fs::path& a, const fs::path& b, const std::string& what) {
  const fs::path log = fs::path(a).replace_extension(".compare.log");
  const int rc = run_to_end({"/usr/bin/python3", (source_dir() / "tools/compare_results.py").string(), a.string(), b.string()}, log);
  BOOST_TEST(rc == 0, what << ": " << slurp(log));
  fs::remove(log);
}

bool identical(const fs::path& a, const fs::path& b) {
  const fs::path log = fs::path(a).replace_extension(".compare.log");
  const int rc = run_to_end({"/usr/bin/python3", (source_dir() / "tools/compare_results.py").string(), a.string(), b.string()}, log);
  fs::remove(log);
  return rc == 0;
}

// A copy of a fixture model folder (the store is keyed by the folder's path).
fs::path copy_model(const std::string& fixture, const fs::path& dir) {
  const fs::path to = dir / fixture;
  fs::create_directories(to);
  for (const auto& e : fs::directory_iterator(fixtures_dir() / fixture)) fs::copy_file(e.path(), to / e.path().filename());
  return to;
}

fs::path only_store(const fs::path& dir) {
  const auto stores = list_store_files(dir);
  BOOST_TEST_REQUIRE(stores.size() == 1u);
  return stores.front();
}

}  // namespace

BOOST_AUTO_TEST_CASE(replays_are_bit_identical_with_and_without_the_store) {
  const fs::path tmp = fresh_temp_dir("store-replay");
  for (const std::string& f : kFixtures)
    for (const std::string backend : {"cpu", "cpu-bf16"})
      for (const std::string mode : {"fast", "full"}) {
        const std::string tag = f + "." + backend + "." + mode;
        const auto base = with(replay_args(fixtures_dir() / f, f, tmp / (tag + ".plain.h5")),
                               {"--backend", backend, "--mode", mode});
        BOOST_TEST_REQUIRE(cli(base, tmp / "log") == 0, slurp(tmp / "log"));
        // The first use builds the store, the second maps it: both must equal the plain load.
        for (const std::string use : {"build", "map"}) {
          const fs::path out = tmp / (tag + "." + use + ".h5");
          const auto args = with(replay_args(fixtures_dir() / f, f, out),
                                 {"--backend", backend, "--mode", mode, "--weight-store", (tmp / "store").string()});
          BOOST_TEST_REQUIRE(cli(args, tmp / "log") == 0, slurp(tmp / "log"));
          const std::string log = slurp(tmp / "log");
          BOOST_TEST(count(log, "weights: mapped from the weight store") == 1, log);
          BOOST_TEST(count(log, "weight store: building") == (use == std::string("build") && mode == std::string("fast") ? 1 : 0), log);
          require_identical(tmp / (tag + ".plain.h5"), out, tag + " " + use);
        }
      }
  // Six stores: three models, two layouts.
  BOOST_TEST(list_store_files(tmp / "store").size() == 6u);
  // The comparison can fail: the two modes' replays differ.
  BOOST_TEST(!identical(tmp / "mixtral-tiny.cpu.fast.plain.h5", tmp / "mixtral-tiny.cpu-bf16.fast.plain.h5"));
  fs::remove_all(tmp);
}

BOOST_AUTO_TEST_CASE(layers_streamed_through_a_small_memory_budget_give_the_same_results) {
  const fs::path tmp = fresh_temp_dir("store-stream");
  for (const std::string& f : kFixtures) {
    BOOST_TEST_REQUIRE(cli(replay_args(fixtures_dir() / f, f, tmp / "plain.h5"), tmp / "log") == 0, slurp(tmp / "log"));
    // Budgets: nothing resident (every layer streams), and about half the model resident.
    for (const std::string budget : {"1", "150000"}) {
      const fs::path out = tmp / ("stream." + budget + ".h5");
      const auto args = with(replay_args(fixtures_dir() / f, f, out), {"--weight-store", (tmp / "store").string()});
      BOOST_TEST_REQUIRE(cli(args, tmp / "log", {"MOETRACE_RESIDENT_WEIGHT_BYTES=" + budget}) == 0, slurp(tmp / "log"));
      const std::string log = slurp(tmp / "log");
      BOOST_TEST(log.find("stream through memory") != std::string::npos, log);
      if (budget == std::string("1")) BOOST_TEST(log.find("no layer stays resident") != std::string::npos, log);
      require_identical(tmp / "plain.h5", out, f + " streamed, budget " + budget);
    }
  }
  fs::remove_all(tmp);
}

BOOST_AUTO_TEST_CASE(two_expert_parallel_ranks_map_one_store_and_match_one_rank) {
  const fs::path tmp = fresh_temp_dir("store-ep");
  const std::string f = "qwen3moe-tiny";
  BOOST_TEST_REQUIRE(cli(replay_args(fixtures_dir() / f, f, tmp / "one.h5"), tmp / "log") == 0, slurp(tmp / "log"));
  for (int round = 0; round < 2; ++round) {  // one rank builds while the other waits; then both map
    const fs::path out = tmp / fmt::format("ep2.{}.h5", round), log = tmp / fmt::format("mpi.{}.log", round);
    const auto args = with(replay_args(fixtures_dir() / f, f, out), {"--ep", "2", "--weight-store", (tmp / "store").string()});
    BOOST_TEST_REQUIRE(run_to_end(mpirun_command(2, args), log) == 0, slurp(log));
    require_identical(tmp / "one.h5", out, fmt::format("--ep 2, round {}", round));
    // Only rank 0 logs at info level: in the first round it built the store, waited for rank 1 to build
    // it, or found it built (processes_that_start_at_once... checks that one build happens); then it maps.
    const long built = count(slurp(log), "weight store: building") + count(slurp(log), "another process is building it");
    BOOST_TEST(built <= (round == 0 ? 1 : 0), slurp(log));
    BOOST_TEST(count(slurp(log), "weights: mapped from the weight store") == 1, slurp(log));
  }
  BOOST_TEST(list_store_files(tmp / "store").size() == 1u);
  for (const auto& e : fs::directory_iterator(tmp / "store"))
    BOOST_TEST(e.path().filename().string().find(".tmp.") == std::string::npos, e.path());
  fs::remove_all(tmp);
}

BOOST_AUTO_TEST_CASE(the_demo_run_is_bit_identical_with_the_store_from_its_config) {
  const fs::path tmp = fresh_temp_dir("store-run");
  const fs::path src = source_dir();
  for (const std::string store : {"", "weight_store = \"store\"\n"}) {
    std::ofstream(tmp / "run.toml") << "[model]\npath = \"" << (src / "demo/model").string() << "\"\n" << store
                                    << "[data]\ncounterfact = \"" << (src / "demo/counterfact_demo.json").string()
                                    << "\"\nobject_rule = \"leading_space\"\n[cases]\nn = 0\n[noise]\nsamples = 2\n";
    const fs::path out = tmp / (store.empty() ? "plain.h5" : "store.h5");
    BOOST_TEST_REQUIRE(cli({"run", (tmp / "run.toml").string(), "--out", out.string()}, tmp / "log") == 0,
                       slurp(tmp / "log"));
  }
  // The config's relative path is the config's folder's.
  BOOST_TEST(list_store_files(tmp / "store").size() == 1u);
  BOOST_TEST(count(slurp(tmp / "log"), "weights: mapped from the weight store") == 1);
  require_identical(tmp / "plain.h5", tmp / "store.h5", "demo run");
  // Two expert-parallel ranks mapping the same store.
  BOOST_TEST_REQUIRE(run_to_end(mpirun_command(2, {"run", (tmp / "run.toml").string(), "--ep", "2", "--out",
                                                   (tmp / "ep2.h5").string()}),
                                tmp / "mpi.log") == 0,
                     slurp(tmp / "mpi.log"));
  require_identical(tmp / "plain.h5", tmp / "ep2.h5", "demo run, --ep 2 on the store");
  fs::remove_all(tmp);
}

BOOST_AUTO_TEST_CASE(a_checkpoint_rewritten_in_place_with_its_times_restored_is_detected) {
  const fs::path tmp = fresh_temp_dir("store-stale");
  const std::string f = "mixtral-tiny";
  const fs::path model = copy_model(f, tmp);
  const auto store_args = [&](const fs::path& out) {
    return with(replay_args(model, f, out), {"--weight-store", (tmp / "store").string(), "--clean-only"});
  };
  BOOST_TEST_REQUIRE(cli(store_args(tmp / "before.h5"), tmp / "log") == 0, slurp(tmp / "log"));
  // Rewrite the last weight bytes in place (same size), then restore the file's times.
  const fs::path st = model / "model.safetensors";
  std::ofstream(tmp / "times-ref").put('x');
  BOOST_TEST_REQUIRE(std::system(fmt::format("touch -r '{}' '{}'", st.string(), (tmp / "times-ref").string()).c_str()) == 0);
  {
    struct stat s {};
    ::stat(st.c_str(), &s);
    std::fstream io(st, std::ios::in | std::ios::out | std::ios::binary);
    io.seekp(s.st_size - 64);
    const std::string bytes(64, '\x3c');  // bf16/f32 bytes of moderate finite values
    io.write(bytes.data(), bytes.size());
  }
  BOOST_TEST_REQUIRE(std::system(fmt::format("touch -r '{}' '{}'", (tmp / "times-ref").string(), st.string()).c_str()) == 0);
  BOOST_TEST_REQUIRE(cli(store_args(tmp / "after.h5"), tmp / "log") == 0, slurp(tmp / "log"));
  const std::string log = slurp(tmp / "log");
  BOOST_TEST(log.find("model.safetensors changed since the store was built: inode change time") != std::string::npos, log);
  // The rebuilt store gives the rewritten checkpoint's results, as a plain load does.
  BOOST_TEST_REQUIRE(cli(with(replay_args(model, f, tmp / "plain.h5"), {"--clean-only"}), tmp / "log") == 0);
  require_identical(tmp / "plain.h5", tmp / "after.h5", "after the rewrite");
  BOOST_TEST(!identical(tmp / "before.h5", tmp / "after.h5"));
  fs::remove_all(tmp);
}

BOOST_AUTO_TEST_CASE(a_damaged_or_truncated_store_is_rebuilt_or_named) {
  const fs::path tmp = fresh_temp_dir("store-damaged");
  const std::string f = "olmoe-tiny";
  const auto args = [&](const fs::path& out) {
    return with(replay_args(fixtures_dir() / f, f, out), {"--weight-store", (tmp / "store").string(), "--clean-only"});
  };
  BOOST_TEST_REQUIRE(cli(args(tmp / "ref.h5"), tmp / "log") == 0, slurp(tmp / "log"));
  const fs::path store = only_store(tmp / "store");
  BOOST_TEST(cli({"store", "verify", (tmp / "store").string()}, tmp / "verify.log") == 0, slurp(tmp / "verify.log"));
  BOOST_TEST(slurp(tmp / "verify.log").find("every byte checked") != std::string::npos);

  // A flipped byte inside a tensor: verify names the store and the tensor, exit 2.
  const auto size = fs::file_size(store);
  {
    std::fstream io(store, std::ios::in | std::ios::out | std::ios::binary);
    io.seekp(8192 + 17);
    char c = 0;
    io.seekg(8192 + 17);
    io.read(&c, 1);
    c = static_cast<char>(c ^ 0x40);
    io.seekp(8192 + 17);
    io.write(&c, 1);
  }
  BOOST_TEST(cli({"store", "verify", store.string()}, tmp / "verify.log") == 2, slurp(tmp / "verify.log"));
  const std::string v = slurp(tmp / "verify.log");
  BOOST_TEST(v.find(store.string() + ": DAMAGED") != std::string::npos, v);
  BOOST_TEST(v.find("the bytes of tensor '") != std::string::npos, v);

  // Truncated (a copy cut short, as a full disk or a killed copy leaves it): rebuilt, said in the log.
  fs::resize_file(store, size / 2);
  BOOST_TEST_REQUIRE(cli(args(tmp / "rebuilt.h5"), tmp / "log") == 0, slurp(tmp / "log"));
  std::string log = slurp(tmp / "log");
  BOOST_TEST(log.find("rebuilding it: weight store " + store.string() + " is damaged or truncated") != std::string::npos, log);
  require_identical(tmp / "ref.h5", tmp / "rebuilt.h5", "after a truncation");

  // Not a store at all, and a store with a damaged index: rebuilt too.
  std::ofstream(store, std::ios::binary | std::ios::trunc) << std::string(10000, 'x');
  BOOST_TEST_REQUIRE(cli(args(tmp / "rebuilt2.h5"), tmp / "log") == 0, slurp(tmp / "log"));
  BOOST_TEST(slurp(tmp / "log").find("is not a moetrace weight store") != std::string::npos, slurp(tmp / "log"));
  {
    std::fstream io(store, std::ios::in | std::ios::out | std::ios::binary);
    io.seekp(-3, std::ios::end);
    io.write("###", 3);
  }
  BOOST_TEST_REQUIRE(cli(args(tmp / "rebuilt3.h5"), tmp / "log") == 0, slurp(tmp / "log"));
  BOOST_TEST(slurp(tmp / "log").find("its index does not match its checksum") != std::string::npos, slurp(tmp / "log"));
  require_identical(tmp / "ref.h5", tmp / "rebuilt3.h5", "after a damaged index");
  // The library refuses every truncation of a good store with an InputError, never a crash.
  const auto good = fs::file_size(store);
  fs::copy_file(store, tmp / "cut.mtstore");
  for (std::uintmax_t n : {std::uintmax_t{0}, std::uintmax_t{100}, std::uintmax_t{4096}, good / 3, good - 1}) {
    fs::resize_file(tmp / "cut.mtstore", n);
    BOOST_CHECK_THROW(WeightStoreFile(tmp / "cut.mtstore"), InputError);
  }
  fs::remove_all(tmp);
}

BOOST_AUTO_TEST_CASE(non_finite_weights_are_refused_from_what_the_build_recorded) {
  const fs::path tmp = fresh_temp_dir("store-nonfinite");
  const std::string f = "qwen3moe-tiny";
  const fs::path model = copy_model(f, tmp);
  {  // NaN in the last tensor's data (all-ones bytes are NaN in float32, bfloat16 and float16)
    std::fstream io(model / "model.safetensors", std::ios::in | std::ios::out | std::ios::binary);
    io.seekp(-16, std::ios::end);
    const std::string nan(16, '\xff');
    io.write(nan.data(), nan.size());
  }
  const auto args = with(replay_args(model, f, tmp / "never.h5"), {"--weight-store", (tmp / "store").string()});
  for (int round = 0; round < 2; ++round) {  // the build records it; the next load refuses from the record
    BOOST_TEST(cli(args, tmp / "log") == 2, slurp(tmp / "log"));
    const std::string log = slurp(tmp / "log");
    BOOST_TEST(log.find("holds a non-finite value (NaN or Inf)") != std::string::npos, log);
    BOOST_TEST(log.find("found when the weight store") != std::string::npos, log);
    BOOST_TEST(count(log, "weight store: building") == (round == 0 ? 1 : 0), log);
  }
  BOOST_TEST(!fs::exists(tmp / "never.h5"));
  fs::remove_all(tmp);
}

BOOST_AUTO_TEST_CASE(processes_that_start_at_once_build_the_store_once) {
  const fs::path tmp = fresh_temp_dir("store-concurrent");
  const std::string f = "qwen3moe-tiny";
  std::vector<Process> procs;
  for (int i = 0; i < 4; ++i)
    procs.push_back(spawn(moetrace_command(with(replay_args(fixtures_dir() / f, f, tmp / fmt::format("out{}.h5", i)),
                                                {"--weight-store", (tmp / "store").string(), "--clean-only"})),
                          tmp / fmt::format("log{}", i)));
  std::string logs;
  for (int i = 0; i < 4; ++i) {
    BOOST_TEST(procs[i].wait() == 0, slurp(tmp / fmt::format("log{}", i)));
    logs += slurp(tmp / fmt::format("log{}", i));
  }
  BOOST_TEST(count(logs, "weight store: building") == 1, logs);
  BOOST_TEST(count(logs, "weights: mapped from the weight store") == 4, logs);
  for (int i = 1; i < 4; ++i) require_identical(tmp / "out0.h5", tmp / fmt::format("out{}.h5", i), "concurrent");
  // Nothing partial is left: one store, its lock, no temporary file.
  for (const auto& e : fs::directory_iterator(tmp / "store"))
    BOOST_TEST(e.path().filename().string().find(".tmp.") == std::string::npos, e.path());
  fs::remove_all(tmp);
}

BOOST_AUTO_TEST_CASE(store_commands_build_list_and_remove) {
  const fs::path tmp = fresh_temp_dir("store-commands");
  const fs::path model = copy_model("mixtral-tiny", tmp);
  const std::string dir = (tmp / "store").string();
  BOOST_TEST_REQUIRE(cli({"store", "build", "--model", model.string(), "--backend", "cpu-bf16", "--weight-store", dir},
                         tmp / "log") == 0, slurp(tmp / "log"));
  BOOST_TEST(cli({"store", "build", "--model", model.string(), "--backend", "cpu-bf16", "--weight-store", dir},
                 tmp / "log") == 0);
  BOOST_TEST(slurp(tmp / "log").find("is up to date; nothing to do") != std::string::npos, slurp(tmp / "log"));
  BOOST_TEST(cli({"store", "ls", dir}, tmp / "ls.log") == 0);
  BOOST_TEST(slurp(tmp / "ls.log").find("cpu-bf16") != std::string::npos, slurp(tmp / "ls.log"));
  BOOST_TEST(slurp(tmp / "ls.log").find(" ok (from ") != std::string::npos, slurp(tmp / "ls.log"));
  // A replaced checkpoint file makes the store stale: ls says so, rm --stale removes it.
  fs::copy_file(model / "model.safetensors", tmp / "copy");
  fs::remove(model / "model.safetensors");
  fs::rename(tmp / "copy", model / "model.safetensors");
  BOOST_TEST(cli({"store", "ls", dir}, tmp / "ls.log") == 0);
  BOOST_TEST(slurp(tmp / "ls.log").find("stale: model.safetensors changed") != std::string::npos, slurp(tmp / "ls.log"));
  BOOST_TEST(cli({"store", "rm", dir, "--stale"}, tmp / "rm.log") == 0, slurp(tmp / "rm.log"));
  BOOST_TEST(list_store_files(dir).empty());
  // Bad input: exit 2 naming what is wrong.
  BOOST_TEST(cli({"store", "build", "--model", model.string()}, tmp / "log") == 2);
  BOOST_TEST(slurp(tmp / "log").find("no store folder") != std::string::npos, slurp(tmp / "log"));
  BOOST_TEST(cli({"store", "verify", (tmp / "nothing-here").string()}, tmp / "log") == 2);
  BOOST_TEST(slurp(tmp / "log").find("no such weight store or folder") != std::string::npos, slurp(tmp / "log"));
  fs::remove_all(tmp);
}
