// The engine work `moetrace plan` predicts for a localize config (protocols/localize_work_plan.h)
// against what `moetrace localize` then reports in its engine-work line: on the multilingual demo
// (configs/demo_localize.toml) and on small question sets from the tracing demo's facts (several
// chunks and decode groups; one group of two MPI ranks with --ep 2). With the finished results file
// the prediction equals the run's engine calls and layer-token steps, stage by stage; without it,
// it is an upper bound marked estimate. A results file of other questions is bad input naming it.
#define BOOST_TEST_MODULE localize_work_plan
#include <boost/test/unit_test.hpp>

#include <algorithm>
#include <fstream>
#include <map>
#include <optional>
#include <regex>
#include <sstream>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "protocols/localize_config.h"
#include "protocols/localize_inputs.h"
#include "protocols/localize_work_plan.h"
#include "results/h5_file.h"
#include "support/cli_runner.h"
#include "support/test_paths.h"
#include "util/error.h"

namespace fs = std::filesystem;
using namespace moetrace;
using namespace moetrace::test;

namespace {

// Engine calls and layer-token steps, of a whole run or one stage.
struct Work {
  std::uint64_t calls = 0, steps = 0;
  bool operator==(const Work&) const = default;
};
std::ostream& operator<<(std::ostream& os, const Work& w) { return os << w.calls << " calls, " << w.steps << " steps"; }

// The run's line "engine work on this rank: N engine calls, M layer-token steps (stage: n calls, m steps; ...)".
struct ReportedWork {
  Work total;
  std::map<std::string, Work> stages;
};
ReportedWork reported_work(const fs::path& log) {
  const std::string text = slurp(log);
  const std::regex line(R"(engine work on this rank: (\d+) engine calls, (\d+) layer-token steps \(([^)]*)\))");
  std::smatch m;
  BOOST_TEST_REQUIRE(std::regex_search(text, m, line), "no engine-work line in: " << text);
  BOOST_TEST_REQUIRE(std::regex_search(m.suffix().first, text.cend(), std::regex("engine work on this rank")) == false,
                     "more than one engine-work line");
  ReportedWork r{{std::stoull(m[1]), std::stoull(m[2])}, {}};
  const std::string stages = m[3];
  const std::regex stage(R"((?:^|; )([a-z ]+): (\d+) calls, (\d+) steps)");
  for (auto it = std::sregex_iterator(stages.begin(), stages.end(), stage); it != std::sregex_iterator(); ++it)
    r.stages[(*it)[1]] = {std::stoull((*it)[2]), std::stoull((*it)[3])};
  return r;
}

// The plan of a config, as `moetrace plan` computes it: no weights loaded.
struct Plan {
  std::vector<StageProfile> stages;
  std::vector<TableShape> tables;
};
Plan plan(const fs::path& config_path, const fs::path& results = {}) {
  LocalizeConfig c = load_localize_config(config_path);
  const ModelConfig model = load_model_config(c.model_path);
  const Tokenizer tokenizer = Tokenizer::from_path(c.tokenizer_path);
  fit_localize_config_to_model(c, model, tokenizer);
  localize::QuestionSet qs = read_localize_questions(c, c.questions_path, "questions");
  screen_localize_questions(c, model, tokenizer, qs, c.questions_path);
  std::optional<localize::QuestionSet> unrelated;
  if (!c.unrelated_path.empty()) {
    unrelated = read_localize_questions(c, c.unrelated_path, "unrelated");
    screen_localize_questions(c, model, tokenizer, *unrelated, c.unrelated_path);
  }
  std::optional<LocalizeDecisions> decisions;
  if (!results.empty()) decisions = read_localize_decisions(results.string());
  Plan p;
  p.stages = plan_localize_work(c, model, tokenizer, qs, unrelated ? &*unrelated : nullptr, decisions ? &*decisions : nullptr);
  p.tables = localize_result_tables(c, model, p.stages);
  return p;
}

// The shapes of the row tables (datasets with a done flag) of a results file, read with h5py, sorted.
std::vector<std::pair<std::uint64_t, std::uint64_t>> stored_tables(const fs::path& results) {
  const fs::path log = fs::path(results).replace_extension(".tables");
  const std::string script =
      "import h5py, sys\nf = h5py.File(sys.argv[1], 'r')\n"
      "f.visititems(lambda n, o: print(*o.shape) if isinstance(o, h5py.Dataset) and n + '_done' in f else None)\n";
  BOOST_TEST_REQUIRE(run_to_end({"/usr/bin/python3", "-c", script, results.string()}, log) == 0, slurp(log));
  std::vector<std::pair<std::uint64_t, std::uint64_t>> out;
  std::istringstream in(slurp(log));
  for (std::uint64_t r = 0, c = 0; in >> r >> c;) out.emplace_back(r, c);
  std::sort(out.begin(), out.end());
  return out;
}

Work total(const std::vector<StageProfile>& stages) {
  Work w;
  for (const StageProfile& s : stages) {
    w.calls += s.work.engine_calls;
    w.steps += s.work.steps();
    BOOST_TEST(s.work.calls.size() == s.work.engine_calls);
  }
  return w;
}

// The plan from the finished file equals the run's line, in total and per stage, and is exact;
// the plan without it is an upper bound marked estimate.
void expect_plan_matches(const fs::path& config, const fs::path& results, const fs::path& log) {
  const ReportedWork run = reported_work(log);
  const Plan exact_plan = plan(config, results);
  const std::vector<StageProfile>& exact = exact_plan.stages;
  BOOST_TEST(total(exact) == run.total);
  BOOST_TEST(exact.size() == run.stages.size());
  for (const StageProfile& s : exact) {
    BOOST_TEST_CONTEXT(s.name) {
      BOOST_TEST(run.stages.count(s.name) == 1u);
      if (run.stages.count(s.name)) BOOST_TEST((Work{s.work.engine_calls, s.work.steps()} == run.stages.at(s.name)));
      BOOST_TEST(!s.estimate, s.note);
      BOOST_TEST(s.chunks >= 1);
    }
  }
  const std::vector<StageProfile> assumed = plan(config).stages;
  const Work upper = total(assumed);
  BOOST_TEST_MESSAGE(config.filename().string() << ": run " << run.total << "; planned from the results " << total(exact)
                     << "; planned without them " << upper);
  BOOST_TEST(upper.steps >= run.total.steps);
  BOOST_TEST(upper.calls >= run.total.calls);
  BOOST_TEST(assumed.front().estimate);
  BOOST_TEST(assumed.front().note.find("max_new_tokens") != std::string::npos, assumed.front().note);
  BOOST_TEST(assumed.front().work.prepare_steps == assumed.front().work.steps());  // routing recorded on every asking call
  // The results file's row tables, as planned.
  std::vector<std::pair<std::uint64_t, std::uint64_t>> planned;
  for (const TableShape& t : exact_plan.tables) planned.emplace_back(t.rows, t.cols);
  std::sort(planned.begin(), planned.end());
  const auto stored = stored_tables(results);
  BOOST_TEST(stored.size() > 10u);
  BOOST_TEST((planned == stored), planned.size() << " tables planned, " << stored.size() << " stored");
}

// Question files from the tracing demo's facts in three "languages" (as tests/cli/test_localize_command.cpp).
void write_questions(const fs::path& path, int first, int count) {
  const nlohmann::json facts = nlohmann::json::parse(slurp(source_dir() / "demo/counterfact_demo.json"));
  std::ofstream f(path);
  f << nlohmann::json{{"format", "moetrace-localize"}, {"version", 1}, {"languages", {"en", "fr", "de"}}}.dump() << "\n";
  for (int i = first; i < first + count; ++i) {
    const auto& rw = facts.at(i).at("requested_rewrite");
    std::string prompt = rw.at("prompt").get<std::string>();
    prompt.replace(prompt.find("{}"), 2, rw.at("subject").get<std::string>());
    const std::string object = rw.at("target_true").at("str");
    const std::string other = facts.at(i + 1).at("requested_rewrite").at("target_true").at("str");
    f << nlohmann::json{{"id", fmt::format("fact{}", i)},
                        {"languages",
                         {{"en", {{"question", prompt}, {"answers", {object}}}},
                          {"fr", {{"question", prompt}, {"answers", {other}}}},
                          {"de", {{"question", prompt.substr(prompt.find(' ') + 1)}, {"answers", {object}}}}}}}
                  .dump()
      << "\n";
  }
}

fs::path fixture_config(const fs::path& dir, const std::string& name, int max_new_tokens, int prompts_per_call, int chunk_tokens,
                        const std::string& eos_ids = "") {
  const fs::path path = dir / (name + ".toml");
  std::ofstream(path) << fmt::format(
      "[model]\npath = \"{}\"\n{}[data]\nquestions = \"questions.jsonl\"\nunrelated = \"unrelated.jsonl\"\n"
      "[ask]\nmax_new_tokens = {}\nprompts_per_call = {}\n"
      "[contrast]\ntop_n = 3\nsign_flips = 200\nseed = 4\n"
      "[deactivation]\ncontrol_draws = 2\ncurve_n = [1, 3]\nbootstrap = 100\n"
      "[run]\nchunk_tokens = {}\ncheckpoint_every_s = 0\n",
      (source_dir() / "demo/model").string(), eos_ids.empty() ? "" : "eos_ids = [" + eos_ids + "]\n", max_new_tokens,
      prompts_per_call, chunk_tokens);
  return path;
}

struct Fixture {
  fs::path dir = fresh_temp_dir("localize-work-plan");
  Fixture() {
    write_questions(dir / "questions.jsonl", 0, 12);
    write_questions(dir / "unrelated.jsonl", 100, 4);
  }
  // Runs the config (under mpirun with `ranks` > 1, one group of them: --ep ranks), checks the plan.
  fs::path results(const fs::path& config, int ranks = 1) const {
    return dir / (config.stem().string() + "-np" + std::to_string(ranks) + ".h5");
  }
  void check(const fs::path& config, int ranks = 1) const {
    const fs::path out = results(config, ranks), log = fs::path(out).replace_extension(".log");
    const std::vector<std::string> args{"localize", config.string(), "--out", out.string()};
    std::vector<std::string> mpi_args = args;
    mpi_args.insert(mpi_args.end(), {"--ep", std::to_string(ranks)});
    BOOST_TEST_REQUIRE(run_to_end(ranks > 1 ? mpirun_command(ranks, mpi_args) : moetrace_command(args), log) == 0, slurp(log));
    expect_plan_matches(config, out, log);
  }
};

}  // namespace

BOOST_AUTO_TEST_CASE(the_demo_plan_from_its_results_equals_the_runs_engine_work) {
  const fs::path dir = fresh_temp_dir("localize-work-plan-demo");
  const fs::path config = source_dir() / "configs/demo_localize.toml", out = dir / "demo.h5", log = dir / "demo.log";
  BOOST_TEST_REQUIRE(run_to_end(moetrace_command({"localize", config.string(), "--out", out.string()}), log) == 0, slurp(log));
  expect_plan_matches(config, out, log);
}

// The token the most pairs of a run generated second: as an EOS id it ends those pairs' decoding early.
int frequent_second_token(const fs::path& results) {
  const h5::File f(results.string(), h5::File::Mode::ReadOnly);
  const h5::Array<double> generated = f.read_double("/localize/asked/generated");
  std::map<int, int> count;
  for (std::size_t p = 0; p < generated.shape[0]; ++p)
    if (const double t = generated.data[p * generated.shape[1] + 1]; t >= 0) ++count[static_cast<int>(t)];
  BOOST_TEST_REQUIRE(!count.empty());
  return std::max_element(count.begin(), count.end(), [](auto& a, auto& b) { return a.second < b.second; })->first;
}

BOOST_AUTO_TEST_CASE(several_chunks_and_decode_groups_are_predicted_exactly) {
  const Fixture f;
  const fs::path chunks = fixture_config(f.dir, "small-chunks", 3, 8, 24);  // chunks of a few pairs, groups of 8
  f.check(chunks);
  f.check(fixture_config(f.dir, "small-groups", 5, 3, 100000));  // one chunk per table, groups of 3
  // Pairs that stop early (an EOS id they generate), in small chunks and groups: only the results know which.
  const std::string eos = std::to_string(frequent_second_token(f.results(chunks)));
  const fs::path early = fixture_config(f.dir, "early-stops", 4, 3, 24, eos);
  f.check(early);
  BOOST_TEST(total(plan(early).stages).steps > total(plan(early, f.results(early)).stages).steps);
}

BOOST_AUTO_TEST_CASE(one_group_of_two_mpi_ranks_runs_the_planned_work_on_each_rank) {
  const Fixture f;
  f.check(fixture_config(f.dir, "two-ranks", 3, 4, 24), 2);
}

BOOST_AUTO_TEST_CASE(a_results_file_of_other_questions_is_bad_input_naming_it) {
  const Fixture f;
  const fs::path config = fixture_config(f.dir, "fewer", 3, 8, 24);
  const fs::path out = f.dir / "fewer.h5", log = f.dir / "fewer.log";
  BOOST_TEST_REQUIRE(run_to_end(moetrace_command({"localize", config.string(), "--out", out.string()}), log) == 0, slurp(log));
  write_questions(f.dir / "questions.jsonl", 0, 10);  // the config's question file now holds fewer questions
  BOOST_CHECK_EXCEPTION(plan(config, out), InputError, [&](const InputError& e) {
    const std::string m = e.what();
    BOOST_TEST_MESSAGE(m);
    return m.find(out.string()) != std::string::npos && m.find("/localize/asked/outcome") != std::string::npos &&
           m.find("has 36 rows") != std::string::npos;
  });
  BOOST_CHECK_THROW(read_localize_decisions((f.dir / "questions.jsonl").string()), InputError);
}
