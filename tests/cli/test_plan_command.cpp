// `moetrace plan` (docs/distribution.md, "Planning a study") against real runs: the engine calls and
// layer-token steps it counts from a config, the tokenised cases and a results file's decisions equal
// the ones the run itself reports in its `engine work` line — for the demo, for a study on each of
// the three fixture models (other noise samples, chunk sizes, batch rows, a prepared-case cache of
// 0 MiB, all-layers expert tracing), and on 2 MPI ranks (one EP group of 2: each rank's line; two
// groups of 1: the conditions summed over the ranks). Bad configs, cluster files and options are
// exit 2 naming the key; the JSON parses and agrees with the text.
#define BOOST_TEST_MODULE plan_command
#include <boost/test/unit_test.hpp>

#include <fstream>
#include <regex>
#include <set>
#include <sstream>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "support/cli_runner.h"
#include "support/test_paths.h"

namespace fs = std::filesystem;
using namespace moetrace::test;
using nlohmann::json;

namespace {

struct EngineWork {
  long calls = 0, steps = 0, preparing = 0, conditions = 0;
};

// Every "engine work on this rank" line of a log, in order.
std::vector<EngineWork> engine_work_lines(const fs::path& log) {
  static const std::regex line(R"(engine work on this rank: (\d+) engine calls, (\d+) layer-token steps \((\d+) preparing [^,]*, (\d+) in patched conditions\))");
  std::vector<EngineWork> out;
  const std::string text = slurp(log);
  for (auto it = std::sregex_iterator(text.begin(), text.end(), line); it != std::sregex_iterator(); ++it)
    out.push_back({std::stol((*it)[1]), std::stol((*it)[2]), std::stol((*it)[3]), std::stol((*it)[4])});
  return out;
}

// The "engine work on all N ranks" lines (runs on several ranks).
std::vector<EngineWork> all_ranks_lines(const fs::path& log) {
  static const std::regex line(R"(engine work on all \d+ ranks [^:]*: (\d+) engine calls, (\d+) layer-token steps \((\d+) preparing, (\d+) in patched conditions\))");
  std::vector<EngineWork> out;
  const std::string text = slurp(log);
  for (auto it = std::sregex_iterator(text.begin(), text.end(), line); it != std::sregex_iterator(); ++it)
    out.push_back({std::stol((*it)[1]), std::stol((*it)[2]), std::stol((*it)[3]), std::stol((*it)[4])});
  return out;
}

int cli(const std::vector<std::string>& args, const fs::path& log) {
  fs::remove(log);
  return run_to_end(moetrace_command(args, {"OMP_NUM_THREADS=1"}), log);
}

json plan_json(const std::vector<std::string>& args, const fs::path& dir) {
  std::vector<std::string> a{"plan"};
  a.insert(a.end(), args.begin(), args.end());
  a.insert(a.end(), {"--format", "json"});
  const fs::path log = dir / "plan.json";
  const int rc = cli(a, log);
  BOOST_TEST_REQUIRE(rc == 0, slurp(log));
  const std::string text = slurp(log);
  return json::parse(text.substr(text.find('{')));
}

fs::path tmp_dir(const std::string& name) {
  const fs::path d = fs::temp_directory_path() / fmt::format("moetrace-test-plan-{}-{}", name, getpid());
  fs::remove_all(d);
  fs::create_directories(d);
  return d;
}

void require_equal(const json& total, const EngineWork& run, const std::string& what) {
  BOOST_TEST(total["engine_calls"].get<long>() == run.calls, what << ": engine calls");
  BOOST_TEST(total["layer_token_steps"].get<long>() == run.steps, what << ": layer-token steps");
  BOOST_TEST(total["prepare_steps"].get<long>() == run.preparing, what << ": preparing");
  BOOST_TEST(total["condition_steps"].get<long>() == run.conditions, what << ": in conditions");
}

// A study on a fixture model: its checkpoint, a word-level tokenizer over the words of the first
// `cases` demo records (ids below the fixture's vocabulary), those records as an explicit case list
// (the untrained model's contrasts would fail the filter), `experts` lines in [experts] and `extra`
// config tables.
fs::path fixture_study(const fs::path& dir, const std::string& fixture, int cases, const std::string& extra,
                       const std::string& experts = "") {
  const fs::path model = dir / "model";
  fs::create_directories(model);
  for (const char* f : {"config.json", "model.safetensors"})
    fs::create_symlink(fixtures_dir() / fixture / f, model / f);
  const json records = json::parse(slurp(source_dir() / "demo/counterfact_demo.json"));
  json vocab = {{"[UNK]", 0}, {"<s>", 1}, {"</s>", 2}};
  json chosen = json::array(), ids = json::array();
  for (int i = 0; i < cases; ++i) {
    const json& r = records.at(static_cast<std::size_t>(i));
    chosen.push_back(r);
    ids.push_back(r["case_id"]);
    const json& rw = r["requested_rewrite"];
    std::istringstream words(rw["prompt"].get<std::string>() + " " + rw["subject"].get<std::string>() + " " +
                             rw["target_true"]["str"].get<std::string>() + " " + rw["target_new"]["str"].get<std::string>());
    for (std::string w; words >> w;)
      if (w != "{}" && !vocab.contains(w)) vocab[w] = static_cast<int>(vocab.size());
  }
  BOOST_TEST_REQUIRE(vocab.size() < 500u);  // the fixtures' vocabulary
  json tok = json::parse(slurp(source_dir() / "demo/model/tokenizer.json"));
  tok["model"]["vocab"] = vocab;
  std::ofstream(model / "tokenizer.json") << tok.dump();
  fs::copy_file(source_dir() / "demo/model/tokenizer_config.json", model / "tokenizer_config.json");
  std::ofstream(dir / "cf.json") << chosen.dump();
  json split = json::object();
  split["Fixture"]["discovery"] = json::array();
  split["Fixture"]["validation"] = json::array();
  for (std::size_t i = 0; i < ids.size(); ++i) split["Fixture"][i % 2 ? "validation" : "discovery"].push_back(ids[i]);
  std::ofstream(dir / "ids.json") << split.dump();
  const fs::path config = dir / "study.toml";
  std::ofstream(config) << fmt::format(
      "[model]\npath = \"{}\"\n[data]\ncounterfact = \"{}\"\ncase_ids = \"{}\"\ncase_ids_key = \"Fixture\"\n"
      "object_rule = \"leading_space\"\n[experts]\ntrace_without_rescue = true\n{}[statistics]\nbootstrap = 100\n"
      "sign_flips = 100\n[heatmap]\ncases = 2\n[robustness]\nnoise_multipliers = [2.0, 3.0]\nrelaxed_filter = true\n"
      "split_seeds = [0, 1]\n{}",
      model.string(), (dir / "cf.json").string(), (dir / "ids.json").string(), experts, extra);
  return config;
}

EngineWork run_study(const fs::path& config, const fs::path& out, const fs::path& log) {
  const int rc = cli({"run", config.string(), "--out", out.string()}, log);
  BOOST_TEST_REQUIRE(rc == 0, slurp(log));
  const std::vector<EngineWork> lines = engine_work_lines(log);
  BOOST_TEST_REQUIRE(lines.size() == 1u, slurp(log));
  return lines[0];
}

}  // namespace

BOOST_AUTO_TEST_CASE(demo_counts_equal_the_runs_and_the_text_matches_the_json) {
  const fs::path dir = tmp_dir("demo");
  const fs::path config = source_dir() / "configs/demo.toml";
  const EngineWork run = run_study(config, dir / "demo.h5", dir / "run.log");
  const json exact = plan_json({config.string(), "--from", (dir / "demo.h5").string()}, dir);
  require_equal(exact["total"], run, "demo with --from");
  BOOST_TEST(!exact["total"]["estimate"].get<bool>());
  // A results file of another config is refused (its decisions are not this config's).
  std::string other = slurp(config);
  other.replace(other.find("[heatmap]\ncases = 4"), 20, "[heatmap]\ncases = 2");
  for (std::size_t at; (at = other.find("\"../demo")) != std::string::npos;)
    other.replace(at, 8, "\"" + (source_dir() / "demo").string());
  std::ofstream(dir / "other.toml") << other;
  BOOST_TEST(cli({"plan", (dir / "other.toml").string(), "--from", (dir / "demo.h5").string()}, dir / "other.log") == 2);
  BOOST_TEST(slurp(dir / "other.log").find("another config") != std::string::npos, slurp(dir / "other.log"));
  // Without the run's decisions: marked as an estimate, and (every record kept, layer 0) no less work.
  const json guess = plan_json({config.string()}, dir);
  BOOST_TEST(guess["total"]["estimate"].get<bool>());
  BOOST_TEST(guess["total"]["layer_token_steps"].get<long>() >= run.steps);
  // The text's total row carries the JSON's numbers.
  BOOST_TEST_REQUIRE(cli({"plan", config.string(), "--from", (dir / "demo.h5").string()}, dir / "plan.txt") == 0);
  const std::regex total(R"(\n  total +(\d+) +(\d+) +(\d+) +(\d+) +(\d+) +(\d+) +(\d+) +([\d.]+) +([\d.]+)\n)");
  std::smatch m;
  const std::string text = slurp(dir / "plan.txt");
  BOOST_TEST_REQUIRE(std::regex_search(text, m, total), text);
  const json& t = exact["total"];
  for (auto [i, key] : std::vector<std::pair<int, const char*>>{{2, "conditions"}, {3, "chunks"}, {4, "engine_calls"},
                                                                 {5, "layer_token_steps"}, {6, "prepare_steps"}, {7, "condition_steps"}})
    BOOST_TEST(std::stol(m[i]) == t[key].get<long>(), key);
  BOOST_TEST(std::abs(std::stod(m[8]) - t["flops"].get<double>() / 1e12) <= 0.0005 + 1e-3 * std::stod(m[8]));
  fs::remove_all(dir);
}

BOOST_AUTO_TEST_CASE(localize_demo_counts_equal_the_runs) {
  const fs::path dir = tmp_dir("localize");
  const fs::path config = source_dir() / "configs/demo_localize.toml";
  const int rc = cli({"localize", config.string(), "--out", (dir / "loc.h5").string()}, dir / "run.log");
  BOOST_TEST_REQUIRE(rc == 0, slurp(dir / "run.log"));
  static const std::regex line(R"(engine work on this rank: (\d+) engine calls, (\d+) layer-token steps)");
  std::smatch m;
  const std::string log = slurp(dir / "run.log");
  BOOST_TEST_REQUIRE(std::regex_search(log, m, line), log);
  const json plan = plan_json({config.string(), "--from", (dir / "loc.h5").string()}, dir);
  BOOST_TEST(plan["protocol"].get<std::string>() == "localize");
  BOOST_TEST(plan["total"]["engine_calls"].get<long>() == std::stol(m[1]));
  BOOST_TEST(plan["total"]["layer_token_steps"].get<long>() == std::stol(m[2]));
  BOOST_TEST(!plan["total"]["estimate"].get<bool>());
  const json guess = plan_json({config.string()}, dir);
  BOOST_TEST(guess["total"]["estimate"].get<bool>());
  BOOST_TEST(guess["total"]["layer_token_steps"].get<long>() >= std::stol(m[2]));
  // --keep-rate is for run configs.
  const int bad = cli({"plan", config.string(), "--from", (dir / "loc.h5").string(), "--keep-rate", "0.5"}, dir / "bad.log");
  BOOST_TEST(bad == 2, slurp(dir / "bad.log"));
  fs::remove_all(dir);
}

BOOST_AUTO_TEST_CASE(fixture_studies_counts_equal_the_runs) {
  struct Study {
    std::string fixture;
    int cases;
    std::string extra, experts;
  };
  const std::vector<Study> studies = {
      {"qwen3moe-tiny", 12, "[noise]\nsamples = 2\n", ""},
      {"mixtral-tiny", 10, "[noise]\nsamples = 3\n[run]\nprepared_cache_mib = 0\nchunk_tokens = 20\n", ""},
      {"olmoe-tiny", 10, "[run]\nbatch_rows = 48\nchunk_tokens = 30\n", "mode = \"all_layers\"\n"},
  };
  for (const auto& [fixture, cases, extra, experts] : studies) {
    const fs::path dir = tmp_dir(fixture);
    const fs::path config = fixture_study(dir, fixture, cases, extra, experts);
    const EngineWork run = run_study(config, dir / "run.h5", dir / "run.log");
    const json plan = plan_json({config.string(), "--from", (dir / "run.h5").string()}, dir);
    require_equal(plan["total"], run, fixture);
    fs::remove_all(dir);
  }
}

BOOST_AUTO_TEST_CASE(two_ranks_one_ep_group_and_two_groups) {
  const fs::path dir = tmp_dir("mpi");
  const fs::path config = fixture_study(dir, "qwen3moe-tiny", 12, "[run]\nchunk_tokens = 24\n");
  const fs::path one = dir / "one.h5";
  run_study(config, one, dir / "one.log");
  const json plan = plan_json({config.string(), "--from", one.string()}, dir);
  // --ep 2: both ranks run every engine call of the one group.
  BOOST_TEST_REQUIRE(run_to_end(mpirun_command(2, {"run", config.string(), "--ep", "2", "--out", (dir / "ep2.h5").string()},
                                               {"OMP_NUM_THREADS=1"}), dir / "ep2.log") == 0, slurp(dir / "ep2.log"));
  const std::vector<EngineWork> ep2 = engine_work_lines(dir / "ep2.log");
  BOOST_TEST_REQUIRE(ep2.size() == 1u);  // the writing rank's line
  require_equal(plan["total"], ep2[0], "rank 0 of an EP group of 2");
  const std::vector<EngineWork> ep2_all = all_ranks_lines(dir / "ep2.log");
  BOOST_TEST_REQUIRE(ep2_all.size() == 1u);
  BOOST_TEST(ep2_all[0].calls == 2 * plan["total"]["engine_calls"].get<long>());  // both ranks run every call
  BOOST_TEST(ep2_all[0].steps == 2 * plan["total"]["layer_token_steps"].get<long>());
  // --ep 1: two groups share the chunks; every condition is evaluated once, on one of them (the
  // preparations depend on which group a chunk lands on: each group has its own cache).
  BOOST_TEST_REQUIRE(run_to_end(mpirun_command(2, {"run", config.string(), "--ep", "1", "--out", (dir / "ep1.h5").string()},
                                               {"OMP_NUM_THREADS=1"}), dir / "ep1.log") == 0, slurp(dir / "ep1.log"));
  const std::vector<EngineWork> ep1 = all_ranks_lines(dir / "ep1.log");
  BOOST_TEST_REQUIRE(ep1.size() == 1u);
  BOOST_TEST(ep1[0].conditions == plan["total"]["condition_steps"].get<long>());
  BOOST_TEST(ep1[0].preparing >= plan["total"]["prepare_steps"].get<long>());
  fs::remove_all(dir);
}

BOOST_AUTO_TEST_CASE(bad_input_is_exit_2_naming_the_key) {
  const fs::path dir = tmp_dir("bad");
  const std::string demo = (source_dir() / "configs/demo.toml").string();
  auto expect_2 = [&](const std::vector<std::string>& args, const std::vector<std::string>& words) {
    const fs::path log = dir / "bad.log";
    const int rc = cli(args, log);
    const std::string text = slurp(log);
    BOOST_TEST(rc == 2, text);
    for (const std::string& w : words) BOOST_TEST(text.find(w) != std::string::npos, "'" << w << "' missing in: " << text);
  };
  expect_2({"plan", (dir / "none.toml").string()}, {"none.toml"});
  std::ofstream(dir / "bad.toml") << "[model]\npath = \"/nope\"\n[data]\ncounterfact = \"/nope.json\"\n";
  expect_2({"plan", (dir / "bad.toml").string()}, {"bad.toml", "[model] path"});
  std::ofstream(dir / "typo.toml") << slurp(demo) << "[cases]\nnn = 3\n";
  expect_2({"plan", (dir / "typo.toml").string()}, {"typo.toml"});
  expect_2({"plan", demo, "--format", "xml"}, {"--format"});
  expect_2({"plan", demo, "--ranks", "4", "--ep", "3"}, {"--ep"});
  expect_2({"plan", demo, "--keep-rate", "1.5"}, {"--keep-rate"});
  std::ofstream(dir / "notresults.h5") << "not HDF5";
  expect_2({"plan", demo, "--from", (dir / "notresults.h5").string()}, {"notresults.h5"});
  std::ofstream(dir / "c1.toml") << "[cluster]\nname = \"x\"\nnodes = 2\n";
  expect_2({"plan", demo, "--cluster", (dir / "c1.toml").string()}, {"c1.toml", "cores_per_node"});
  std::ofstream(dir / "c2.toml") << slurp(source_dir() / "configs/clusters/cpu-64c-256g.toml") << "\n[cluster.extra]\n";
  expect_2({"plan", demo, "--cluster", (dir / "c2.toml").string()}, {"c2.toml"});
  std::string c3 = slurp(source_dir() / "configs/clusters/cpu-64c-256g.toml");
  c3.replace(c3.find("time_limit"), 10, "time_limit = \"48h\"\nold_limit");
  std::ofstream(dir / "c3.toml") << c3;
  expect_2({"plan", demo, "--cluster", (dir / "c3.toml").string()}, {"c3.toml", "time_limit"});
  fs::remove_all(dir);
}

BOOST_AUTO_TEST_CASE(rates_time_and_allocation) {
  const fs::path dir = tmp_dir("rates");
  const std::string demo = (source_dir() / "configs/demo.toml").string();
  const std::string rates = (dir / "rates.json").string();
  // No rates yet: no time, and the plan says how to get them.
  json none = plan_json({demo, "--rates", rates, "--threads", "1"}, dir);
  BOOST_TEST(none["total"]["seconds"].get<double>() == 0.0);
  BOOST_TEST(none["rates"]["missing"].get<std::string>().find("--calibrate") != std::string::npos);
  // --calibrate measures and keeps them; a later plan with the same key finds them.
  json measured = plan_json({demo, "--rates", rates, "--threads", "1", "--calibrate", "--calibration-seconds", "5"}, dir);
  BOOST_TEST_REQUIRE(fs::exists(rates));
  BOOST_TEST(measured["total"]["seconds"].get<double>() > 0.0);
  json kept = plan_json({demo, "--rates", rates, "--threads", "1"}, dir);
  BOOST_TEST(kept["total"]["seconds"].get<double>() == measured["total"]["seconds"].get<double>());
  BOOST_TEST(kept["rates"]["source"].get<std::string>().find("calibrated") != std::string::npos);
  double sum = 0;
  for (const json& s : kept["stages"]) sum += s["seconds"].get<double>();
  BOOST_TEST(std::abs(sum - kept["total"]["seconds"].get<double>()) <= 1e-9 * sum);
  // Other threads: another key, no rates.
  BOOST_TEST(plan_json({demo, "--rates", rates, "--threads", "2"}, dir)["total"]["seconds"].get<double>() == 0.0);
  // A cuda backend without a GPU here: the cost model of the named GPU, marked uncalibrated.
  json gpu = plan_json({demo, "--backend", "cuda-bf16", "--gpu", "h100", "--rates", rates}, dir);
  BOOST_TEST(gpu["rates"]["source"].get<std::string>().find("uncalibrated") != std::string::npos);
  BOOST_TEST(gpu["total"]["seconds"].get<double>() > 0.0);
  // An allocation on a cluster: in the JSON and as sbatch lines in the text.
  const std::string cluster = (source_dir() / "configs/clusters/cpu-64c-256g.toml").string();
  json alloc = plan_json({demo, "--rates", rates, "--threads", "1", "--cluster", cluster}, dir);
  BOOST_TEST_REQUIRE(alloc.contains("allocation"));
  BOOST_TEST_REQUIRE(cli({"plan", demo, "--rates", rates, "--threads", "1", "--cluster", cluster}, dir / "alloc.txt") == 0);
  BOOST_TEST(slurp(dir / "alloc.txt").find("sbatch ") != std::string::npos);
  // A damaged rates file and an unknown GPU are bad input naming the file and key / the option.
  std::ofstream(dir / "bad-rates.json") << R"({"moetrace_rates": 1, "entries": [{"key": 3}]})";
  const fs::path log = dir / "bad.log";
  BOOST_TEST(cli({"plan", demo, "--rates", (dir / "bad-rates.json").string()}, log) == 2, slurp(log));
  BOOST_TEST(slurp(log).find("bad-rates.json") != std::string::npos, slurp(log));
  BOOST_TEST(slurp(log).find("entries[0]") != std::string::npos, slurp(log));
  BOOST_TEST(cli({"plan", demo, "--backend", "cuda-bf16", "--gpu", "tpu"}, log) == 2, slurp(log));
  BOOST_TEST(slurp(log).find("--gpu tpu") != std::string::npos, slurp(log));
  fs::remove_all(dir);
}

// A rank whose weights exceed the streamer's budget (with a weight store) streams its layers: the plan
// applies the run's rule (MOETRACE_RESIDENT_WEIGHT_BYTES here, 70% of the memory available otherwise).
BOOST_AUTO_TEST_CASE(larger_than_memory_streams_layers) {
  const fs::path dir = tmp_dir("stream");
  std::string text = slurp(source_dir() / "configs/demo.toml");
  text.replace(text.find("[model]\n"), 8, "[model]\nweight_store = \"" + (dir / "store").string() + "\"\n");
  text.replace(text.find("\"../demo"), 8, "\"" + (source_dir() / "demo").string());
  text.replace(text.find("\"../demo"), 8, "\"" + (source_dir() / "demo").string());
  std::ofstream(dir / "store.toml") << text;
  auto plan = [&](const std::string& budget) {
    const fs::path log = dir / "plan.json";
    fs::remove(log);  // run_to_end appends
    const int rc = run_to_end(moetrace_command({"plan", (dir / "store.toml").string(), "--format", "json"},
                                               {"MOETRACE_RESIDENT_WEIGHT_BYTES=" + budget}), log);
    BOOST_TEST_REQUIRE(rc == 0, slurp(log));
    const std::string out = slurp(log);
    return json::parse(out.substr(out.find('{')));
  };
  const json fits = plan("100000000000");
  BOOST_TEST(fits["memory"]["streamed_layers"].get<int>() == 0);
  const json streams = plan("1");
  BOOST_TEST(streams["memory"]["streamed_layers"].get<int>() == streams["model"]["layers"].get<int>());
  BOOST_TEST(streams["memory"]["streamed_bytes_per_call"].get<double>() > 0.0);
  BOOST_TEST(streams["memory"]["rank_weights_bytes"].get<double>() < fits["memory"]["rank_weights_bytes"].get<double>());
  fs::remove_all(dir);
}
