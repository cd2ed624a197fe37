// `moetrace localize` through the CLI on the tracing demo model (demo/model, word-level tokenizer):
// questions built here from the demo facts, in three "languages": "en" asks the fact as trained
// (answered right), "fr" asks it with another fact's object as the accepted answer (answered wrong),
// "de" drops the prompt's first word (either). Checks: an end-to-end run writes every dataset of the
// spec (/work/notes/l14spec.md, docs/localize.md "Results file") with consistent content; bad config
// keys and values and bad data are exit 2 naming the key or record; a run killed with SIGKILL or
// stopped with SIGTERM (exit 75) and resumed, a run on two MPI ranks and a run with another
// chunk_tokens are bit-identical to one uninterrupted run (tools/compare_results.py: every dataset
// and attribute outside /provenance).
#define BOOST_TEST_MODULE localize_command
#include <cmath>
#include <boost/test/unit_test.hpp>

#include <signal.h>
#include <sys/stat.h>

#include <algorithm>
#include <fstream>
#include <map>
#include <set>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "protocols/statistics.h"
#include "results/h5_file.h"
#include "results/localize_layout.h"
#include "support/cli_runner.h"
#include "support/test_paths.h"

namespace fs = std::filesystem;
using namespace moetrace;
using namespace moetrace::test;

namespace {

constexpr int kQuestions = 12, kUnrelated = 4, kLanguages = 3;

// Question files from the demo facts: `first` is the first fact used.
void write_questions(const fs::path& path, int first, int count) {
  const nlohmann::json facts = nlohmann::json::parse(slurp(source_dir() / "demo/counterfact_demo.json"));
  std::ofstream f(path);
  f << nlohmann::json{{"format", "moetrace-localize"}, {"version", 1}, {"languages", {"en", "fr", "de"}}}.dump() << "\n";
  for (int i = first; i < first + count; ++i) {
    const auto& rw = facts.at(i).at("requested_rewrite");
    std::string prompt = rw.at("prompt").get<std::string>();
    prompt.replace(prompt.find("{}"), 2, rw.at("subject").get<std::string>());
    const std::string object = rw.at("target_true").at("str");
    // Another fact's object, different from this one's: never what the model says here.
    std::string other;
    for (int j = i + 1; other.empty() || other == object; ++j) other = facts.at(j).at("requested_rewrite").at("target_true").at("str");
    f << nlohmann::json{{"id", fmt::format("fact{}", i)},
                        {"languages",
                         {{"en", {{"question", prompt}, {"answers", {object}}}},
                          {"fr", {{"question", prompt}, {"answers", {other}}}},
                          {"de", {{"question", prompt.substr(prompt.find(' ') + 1)}, {"answers", {object}}}}}}}
                  .dump()
      << "\n";
  }
}

std::string config_text(const std::string& extra_run = "") {
  return fmt::format(
      "[model]\npath = \"{}\"\n[data]\nquestions = \"questions.jsonl\"\nunrelated = \"unrelated.jsonl\"\n"
      "[ask]\nmax_new_tokens = 3\nprompts_per_call = 8\n"
      "[contrast]\ntop_n = 3\nsign_flips = 500\nseed = 4\n"
      "[deactivation]\ncontrol_draws = 2\ncurve_n = [1, 3, 6]\nbootstrap = 300\n"
      "[run]\ncheckpoint_every_s = 0\nprogress_every_s = 1\n{}",
      (source_dir() / "demo/model").string(), extra_run);
}

struct Workspace {
  fs::path dir, config, reference;
  long chunks = 0;  // chunk pause points (util/stop_signal.h) a run of the config passes
  Workspace() {
    dir = fresh_temp_dir("localize-command");
    write_questions(dir / "questions.jsonl", 0, kQuestions);
    write_questions(dir / "unrelated.jsonl", 100, kUnrelated);
    config = write("localize.toml", config_text("chunk_tokens = 24\n"));
    reference = dir / "reference.h5";
    const fs::path log = dir / "reference.log";
    BOOST_TEST_REQUIRE(run_to_end(moetrace_command({"localize", config.string(), "--out", reference.string()},
                                                   pause_env("chunk", 0)),
                                  log) == 0,
                       slurp(log));
    chunks = pause_points_passed(log, "chunk");
    BOOST_TEST_REQUIRE(chunks >= 3, slurp(log));
  }
  fs::path write(const std::string& name, const std::string& text) const {
    std::ofstream(dir / name) << text;
    return dir / name;
  }
};

Workspace& ws() {
  static Workspace w;
  return w;
}

void expect_identical(const fs::path& a, const fs::path& b) {
  const fs::path log = ws().dir / ("compare-" + b.stem().string() + ".log");
  const int rc = run_to_end({"/usr/bin/python3", (source_dir() / "tools/compare_results.py").string(), a.string(), b.string()},
                            log);
  BOOST_TEST(rc == 0, slurp(log));
}

// Exit 2 with every `needles` in the message.
void expect_exit_2(const std::vector<std::string>& args, const std::vector<std::string>& needles) {
  const fs::path log = ws().dir / "bad.log";
  fs::remove(log);
  const int rc = run_to_end(moetrace_command(args), log);
  const std::string text = slurp(log);
  BOOST_TEST(rc == 2, "exit " << rc << ": " << text);
  for (const std::string& n : needles) BOOST_TEST(text.find(n) != std::string::npos, "'" << n << "' not in: " << text);
}

}  // namespace

BOOST_AUTO_TEST_CASE(an_end_to_end_run_writes_every_dataset_of_the_layout) {
  namespace L = layout::localize;
  h5::File f(ws().reference.string(), h5::File::Mode::ReadOnly);
  BOOST_TEST(f.attr_int("/provenance", "completed") == 1);
  BOOST_TEST(f.attr_string("/provenance", "protocol") == "localize");
  BOOST_TEST(f.attr_string("/provenance", "config_text") == slurp(ws().config));
  const int P = kQuestions * kLanguages;
  const std::int64_t layers = f.attr_int(L::kRoot, "layers"), experts = f.attr_int(L::kRoot, "experts");
  BOOST_TEST(layers == 4);
  BOOST_TEST(experts == 8);
  BOOST_TEST(f.attr_int(L::kRoot, "top_k") == 2);
  for (const char* a : {"statistic", "method", "direction", "selection", "bucket", "match", "bootstrap_unit"})
    BOOST_TEST(!f.attr_string(L::kRoot, a).empty(), a);
  BOOST_TEST(f.attr_string(L::kRoot, "bootstrap_unit") == "question");
  BOOST_TEST((f.read_strings(L::kLanguages) == std::vector<std::string>{"en", "fr", "de"}));
  BOOST_TEST(f.read_strings(L::kQuestionIds).size() == std::size_t{kQuestions});
  for (const char* d : {"/localize/skipped/id", "/localize/skipped/reason", "/localize/skipped/line"}) BOOST_TEST(f.exists(d), d);

  // Asked pairs: the designed buckets; every row done.
  const auto outcome = f.read_double("/localize/asked/outcome");
  BOOST_TEST((outcome.shape == std::vector<std::size_t>{std::size_t(P), 5}));
  int en_right = 0;
  for (int p = 0; p < P; ++p) {
    const double bucket = outcome.data[p * 5];
    if (p % kLanguages == 1) BOOST_TEST(bucket == 0.0, "pair " << p);
    if (p % kLanguages == 0) en_right += bucket == 1.0;
  }
  BOOST_TEST(en_right >= kQuestions / 2, en_right << " en pairs right");
  BOOST_TEST((f.shape("/localize/asked/generated") == std::vector<std::size_t>{std::size_t(P), 3}));
  for (const char* s : {"logit_mean", "prob_mean", "selected_mean", "logit_last", "prob_last", "selected_last",
                        "logit_generated", "prob_generated", "selected_generated"}) {
    const std::string d = std::string("/localize/asked/routing/") + s;
    BOOST_TEST((f.shape(d) == std::vector<std::size_t>{std::size_t(P), std::size_t(layers * experts)}), d);
    for (auto v : f.read_int(d + "_done").data) BOOST_TEST(v == 1);
  }
  // Contrast, split and validation pairs.
  for (const char* c : {"mean_success", "mean_failure", "effect", "statistic", "df", "p", "q"})
    BOOST_TEST((f.shape(std::string("/localize/contrast/") + c) == std::vector<std::size_t>{std::size_t(layers * experts)}), c);
  for (const char* a : {"n_success", "n_failure", "n_questions", "n_mixed_questions"}) BOOST_TEST(f.has_attr(L::kContrast, a), a);
  const auto top = f.read_int("/localize/contrast/top_global").data;
  BOOST_TEST(top.size() == 6u);  // max(top_n, max curve_n)
  BOOST_TEST((f.shape("/localize/contrast/top_per_layer") == std::vector<std::size_t>{std::size_t(layers * 3)}));
  const auto split = f.read_int(L::kQuestionSplit).data;
  std::vector<std::int64_t> expected_validation;
  for (int p = 0; p < P; ++p)
    if (split[p / kLanguages] == 1) expected_validation.push_back(p);
  BOOST_TEST(f.read_int(L::kValidationPairs).data == expected_validation);
  const std::size_t V = expected_validation.size();
  BOOST_TEST(V > 0u);
  // Conditions: the chosen set is the global top 3, the curve's the top N.
  std::vector<std::string> conditions{"chosen", "popular", "random_0", "random_1", "curve_1", "curve_3", "curve_6"};
  for (const std::string& c : conditions) {
    const std::string g = "/localize/conditions/" + c;
    BOOST_TEST((f.shape(g + "/outcome") == std::vector<std::size_t>{V, 5}), g);
    BOOST_TEST((f.shape(g + "/generated") == std::vector<std::size_t>{V, 3}), g);
    BOOST_TEST(f.exists(g + "/experts"), g);
  }
  const auto chosen = f.read_int("/localize/conditions/chosen/experts").data;
  BOOST_REQUIRE_EQUAL(chosen.size(), 6u);
  for (int k = 0; k < 3; ++k) BOOST_TEST(chosen[2 * k] * experts + chosen[2 * k + 1] == top[k]);
  BOOST_TEST(f.read_int("/localize/conditions/curve_3/experts").data == chosen);
  // Random sets: matched per layer to the chosen set.
  for (const char* c : {"random_0", "random_1"}) {
    std::multiset<std::int64_t> a, b;
    const auto r = f.read_int(std::string("/localize/conditions/") + c + "/experts").data;
    for (std::size_t k = 0; k < r.size(); k += 2) a.insert(r[k]);
    for (std::size_t k = 0; k < chosen.size(); k += 2) b.insert(chosen[k]);
    BOOST_TEST((a == b), c);
  }
  // Unrelated questions.
  const std::size_t U = kUnrelated * kLanguages;
  BOOST_TEST(f.read_strings("/localize/unrelated/questions/id").size() == std::size_t{kUnrelated});
  BOOST_TEST((f.shape("/localize/unrelated/asked/outcome") == std::vector<std::size_t>{U, 5}));
  BOOST_TEST((f.shape("/localize/conditions/unrelated_after/outcome") == std::vector<std::size_t>{U, 5}));

  // Summaries: the records of the spec, with the counts they are defined on.
  std::int64_t correct_before = 0;
  for (std::int64_t p : expected_validation) correct_before += outcome.data[p * 5] == 1.0;
  for (const char* r : {"chosen", "popular", "random", "chosen_minus_random", "chosen_minus_popular", "chosen_turned_right",
                        "popular_turned_right", "random_turned_right", "unrelated_turned_wrong"}) {
    const std::string g = std::string(L::kEffect) + "/" + r;
    BOOST_TEST_REQUIRE(f.has_attr(g, "mean"), g);
    for (const char* a : {"n", "ci_low", "ci_high", "frac_positive", "p_sign_flip"}) BOOST_TEST(f.has_attr(g, a), g << "@" << a);
  }
  BOOST_TEST(f.attr_int("/localize/effect/chosen", "n") == correct_before);
  BOOST_TEST(f.attr_int("/localize/effect/chosen_turned_right", "n") == static_cast<std::int64_t>(V) - correct_before);
  const double m = f.attr_double("/localize/effect/chosen", "mean");
  BOOST_TEST((f.attr_double("/localize/effect/chosen", "ci_low") <= m && m <= f.attr_double("/localize/effect/chosen", "ci_high")));
  for (const char* l : {"en", "fr", "de"})
    for (const char* r : {"chosen", "popular", "random"}) BOOST_TEST(f.has_attr(fmt::format("/localize/effect_by_language/{}/{}", l, r), "n"));
  BOOST_TEST(f.attr_int("/localize/effect_by_language/fr/chosen", "n") == 0);  // no correct fr pair: NaN, n = 0
  BOOST_TEST(std::isnan(f.attr_double("/localize/effect_by_language/fr/chosen", "mean")));
  for (const char* n : {"n_1", "n_3", "n_6"}) BOOST_TEST(f.has_attr(std::string("/localize/curve/") + n, "mean"), n);
  BOOST_TEST(f.attr_double("/localize/curve/n_3", "mean") == m);
  for (const char* l : {"en", "fr", "de", "overall"})
    for (const char* r : {"asked", "validation_before", "validation_after"})
      BOOST_TEST(f.has_attr(fmt::format("/localize/accuracy/{}/{}", l, r), "mean"));
  BOOST_TEST(f.attr_int("/localize/accuracy/overall/asked", "n") == P);
  BOOST_TEST(f.attr_double("/localize/accuracy/fr/asked", "mean") == 0.0);
  BOOST_TEST(f.attr_double("/localize/accuracy/en/asked", "mean") == en_right / double(kQuestions));
}

BOOST_AUTO_TEST_CASE(bad_config_and_data_are_exit_2_naming_the_key_or_record) {
  const Workspace& w = ws();
  const std::string base = config_text();
  auto with = [&](const std::string& name, const std::string& from, const std::string& to) {
    std::string t = base;
    const auto at = t.find(from);
    BOOST_REQUIRE(at != std::string::npos);
    t.replace(at, from.size(), to);
    return w.write(name, t).string();
  };
  const std::string out = (w.dir / "never.h5").string();
  expect_exit_2({"localize", w.write("s.toml", base + "[cases]\nn = 1\n").string(), "--out", out}, {"s.toml", "unknown section [cases]"});
  expect_exit_2({"localize", with("k.toml", "max_new_tokens", "max_new_token"), "--out", out}, {"k.toml", "unknown key 'max_new_token'", "[ask]"});
  expect_exit_2({"localize", with("m.toml", "seed = 4", "seed = 4\nmethod = \"t_test\""), "--out", out}, {"m.toml", "[contrast] method", "t_test"});
  expect_exit_2({"localize", with("r.toml", "max_new_tokens = 3", "max_new_tokens = 0"), "--out", out}, {"r.toml", "[ask] max_new_tokens"});
  expect_exit_2({"localize", with("n.toml", "max_new_tokens = 3", "max_new_tokens = 3\nlogprob_threshold = nan"), "--out", out},
                {"n.toml", "[ask] logprob_threshold"});
  expect_exit_2({"localize", with("c.toml", "[1, 3, 6]", "[3, 1]"), "--out", out}, {"c.toml", "[deactivation] curve_n"});
  expect_exit_2({"localize", with("u.toml", "bootstrap = 300", "bootstrap = 300\nbootstrap_unit = \"case\""), "--out", out},
                {"u.toml", "[deactivation] bootstrap_unit"});
  expect_exit_2({"localize", with("sel.toml", "top_n = 3", "top_n = 3\nselection = \"all\""), "--out", out}, {"sel.toml", "[contrast] selection"});
  expect_exit_2({"localize", with("b.toml", "prompts_per_call = 8", "prompts_per_call = 8\nbucket = \"logit\""), "--out", out},
                {"b.toml", "[ask] bucket"});
  expect_exit_2({"localize", with("l.toml", "unrelated = \"unrelated.jsonl\"", "unrelated = \"unrelated.jsonl\"\nlanguages = [\"EN\"]"), "--out", out},
                {"l.toml", "[data] languages"});
  expect_exit_2({"localize", with("t.toml", "[ask]", "[templates]\nde = \"{question\"\n[ask]"), "--out", out}, {"t.toml", "[templates] de"});
  expect_exit_2({"localize", with("q.toml", "questions.jsonl", "missing.jsonl"), "--out", out}, {"q.toml", "[data] questions", "missing.jsonl"});
  // Needs the model: a per-layer set larger than half a layer leaves the random controls nothing to draw.
  expect_exit_2({"localize", with("pl.toml", "top_n = 3", "top_n = 5\nselection = \"per_layer\""), "--out", out},
                {"pl.toml", "[contrast] top_n = 5"});
  // A language the file lacks; a bad record under strict = true names the file, line and id.
  expect_exit_2({"localize", with("x.toml", "unrelated = \"unrelated.jsonl\"", "unrelated = \"unrelated.jsonl\"\nlanguages = [\"it\"]"), "--out", out},
                {"questions.jsonl", "it"});
  {
    std::string text = slurp(w.dir / "questions.jsonl");
    text += "{\"id\": \"broken\", \"languages\": {\"en\": {\"question\": \"q\", \"answers\": []}}}\n";
    w.write("strict.jsonl", text);
  }
  expect_exit_2({"localize", with("st.toml", "questions.jsonl\"", "strict.jsonl\"\nstrict = true"), "--out", out},
                {"strict.jsonl", "line 14", "broken"});
  BOOST_TEST(!fs::exists(out));
  // Exit 2 too for an existing --out and for --resume of a missing one.
  expect_exit_2({"localize", w.config.string(), "--out", w.reference.string()}, {"already exists"});
  expect_exit_2({"localize", w.config.string(), "--out", out, "--resume"}, {"does not exist"});
}

BOOST_AUTO_TEST_CASE(a_run_killed_with_sigkill_and_resumed_is_bit_identical) {
  const Workspace& w = ws();
  const fs::path out = w.dir / "killed.h5", log = w.dir / "killed.log";
  // Held two thirds of the way through its chunks (after that chunk's save), then killed.
  Process p = spawn(moetrace_command({"localize", w.config.string(), "--out", out.string()}, pause_env("chunk", 2 * w.chunks / 3)),
                    log);
  const bool reached = wait_for_pauses(log, 1, 600000);
  kill(p.pid, SIGKILL);
  p.wait();
  BOOST_TEST_REQUIRE(reached, slurp(log));
  BOOST_TEST_REQUIRE(fs::exists(out));
  BOOST_TEST_REQUIRE(run_to_end(moetrace_command({"localize", w.config.string(), "--out", out.string(), "--resume"}), log) == 0,
                     slurp(log));
  expect_identical(w.reference, out);
}

BOOST_AUTO_TEST_CASE(sigterm_saves_exits_75_and_resumes_bit_identical) {
  const Workspace& w = ws();
  const fs::path out = w.dir / "stopped.h5", log = w.dir / "stopped.log";
  Process p = spawn(moetrace_command({"localize", w.config.string(), "--out", out.string()}, pause_env("chunk", w.chunks / 2)), log);
  const bool reached = wait_for_pauses(log, 1, 600000);
  kill(p.pid, SIGTERM);
  const int rc = p.wait();
  BOOST_TEST_REQUIRE(reached, slurp(log));
  BOOST_TEST_REQUIRE(rc == 75, "exit " << rc << ": " << slurp(log));
  BOOST_TEST_REQUIRE(run_to_end(moetrace_command({"localize", w.config.string(), "--out", out.string(), "--resume"}), log) == 0,
                     slurp(log));
  expect_identical(w.reference, out);
}

BOOST_AUTO_TEST_CASE(a_stop_after_the_last_save_ends_the_run_as_done) {
  const Workspace& w = ws();
  const fs::path out = w.dir / "done.h5", log = w.dir / "done.log";
  Process p = spawn(moetrace_command({"localize", w.config.string(), "--out", out.string()}, pause_env("done", 1)), log);
  const bool reached = wait_for_pauses(log, 1, 600000);
  kill(p.pid, SIGUSR1);
  const int rc = p.wait();
  BOOST_TEST_REQUIRE(reached, slurp(log));
  BOOST_TEST_REQUIRE(rc == 0, "exit " << rc << ": " << slurp(log));
  expect_identical(w.reference, out);
}

BOOST_AUTO_TEST_CASE(other_chunk_sizes_and_two_mpi_ranks_are_bit_identical) {
  const Workspace& w = ws();
  const fs::path big = w.write("big_chunks.toml", config_text("chunk_tokens = 100000\n"));
  const fs::path chunked = w.dir / "big_chunks.h5", log = w.dir / "big_chunks.log";
  BOOST_TEST_REQUIRE(run_to_end(moetrace_command({"localize", big.string(), "--out", chunked.string()}), log) == 0, slurp(log));
  expect_identical(w.reference, chunked);
  // Two groups of one rank, and one group of two ranks sharing the experts (--ep 2).
  for (const std::string ep : {"1", "2"}) {
    const fs::path mpi = w.dir / ("mpi-ep" + ep + ".h5"), mlog = w.dir / ("mpi-ep" + ep + ".log");
    BOOST_TEST_REQUIRE(
        run_to_end(mpirun_command(2, {"localize", w.config.string(), "--out", mpi.string(), "--ep", ep}), mlog) == 0,
        slurp(mlog));
    expect_identical(w.reference, mpi);
    h5::File f(mpi.string(), h5::File::Mode::ReadOnly);
    BOOST_TEST(f.attr_int("/provenance", "ranks") == 2);
  }
}

namespace {

// The turned-wrong values of a condition (per previously correct validation pair) and their questions.
struct TurnedWrong {
  std::vector<double> values;
  std::vector<std::size_t> question;  // dense labels in order of first appearance
};
TurnedWrong turned_wrong(const h5::File& f, const std::string& condition) {
  const auto asked = f.read_double("/localize/asked/outcome").data;
  const auto after = f.read_double("/localize/conditions/" + condition + "/outcome").data;
  const auto vp = f.read_int("/localize/validation_pairs").data;
  TurnedWrong t;
  std::map<std::int64_t, std::size_t> dense;
  for (std::size_t j = 0; j < vp.size(); ++j)
    if (asked[vp[j] * 5] == 1.0) {
      t.values.push_back(after[j * 5] == 0.0 ? 1.0 : 0.0);
      t.question.push_back(dense.try_emplace(vp[j] / kLanguages, dense.size()).first->second);
    }
  return t;
}

}  // namespace

// The summaries recomputed from the stored tables: the chosen share and its interval resampling
// questions (default) or pairs, and the sign-flip p of chosen minus random (question sums or pairs).
BOOST_AUTO_TEST_CASE(summaries_follow_from_the_tables_with_question_or_pair_resampling) {
  const Workspace& w = ws();
  std::string text = config_text("chunk_tokens = 24\n");
  text.replace(text.find("bootstrap = 300"), 15, "bootstrap = 300\nbootstrap_unit = \"pair\"");
  text.replace(text.find("top_n = 3"), 9, "top_n = 2\nselection = \"per_layer\"");
  const fs::path pair_config = w.write("pairs.toml", text);
  const fs::path pairs = w.dir / "pairs.h5", log = w.dir / "pairs.log";
  BOOST_TEST_REQUIRE(run_to_end(moetrace_command({"localize", pair_config.string(), "--out", pairs.string()}), log) == 0,
                     slurp(log));
  const std::uint64_t seed = 4 ^ 0x62737470ull;
  for (const fs::path& file : {w.reference, pairs}) {
    h5::File f(file.string(), h5::File::Mode::ReadOnly);
    const bool by_question = f.attr_string("/localize", "bootstrap_unit") == "question";
    // The popular control turns some pairs wrong here (the chosen set on this model hardly any):
    // its record and chosen minus popular are the non-degenerate ones.
    const TurnedWrong popular = turned_wrong(f, "popular"), chosen = turned_wrong(f, "chosen");
    BOOST_REQUIRE(!popular.values.empty());
    BOOST_REQUIRE_MESSAGE(std::count(popular.values.begin(), popular.values.end(), 1.0) > 0 &&
                              std::count(popular.values.begin(), popular.values.end(), 0.0) > 0,
                          "the popular control should turn some but not all pairs wrong");
    const Interval ci = by_question ? cluster_bootstrap_ci(popular.values, popular.question, seed, 300)
                                    : bootstrap_ci(popular.values, seed, 300);
    BOOST_TEST(f.attr_double("/localize/effect/popular", "mean") == mean(popular.values), file);
    BOOST_TEST(f.attr_double("/localize/effect/popular", "ci_low") == ci.low, file);
    BOOST_TEST(f.attr_double("/localize/effect/popular", "ci_high") == ci.high, file);
    BOOST_TEST(ci.low < ci.high, file);
    std::vector<double> diff;
    for (std::size_t i = 0; i < chosen.values.size(); ++i) diff.push_back(chosen.values[i] - popular.values[i]);
    const double p = sign_flip_test(by_question ? cluster_sums(diff, chosen.question) : diff, seed, 500).p;
    BOOST_TEST(f.attr_double("/localize/effect/chosen_minus_popular", "p_sign_flip") == p, file);
    BOOST_TEST(p < 1.0, file);
    const Interval dci = by_question ? cluster_bootstrap_ci(diff, chosen.question, seed, 300) : bootstrap_ci(diff, seed, 300);
    BOOST_TEST(f.attr_double("/localize/effect/chosen_minus_popular", "ci_low") == dci.low, file);
    BOOST_TEST(f.attr_double("/localize/effect/chosen_minus_popular", "ci_high") == dci.high, file);
  }
  // The two resampling units give different intervals on the same values (the reference's popular set).
  {
    h5::File f(w.reference.string(), h5::File::Mode::ReadOnly);
    const TurnedWrong popular = turned_wrong(f, "popular");
    const Interval q = cluster_bootstrap_ci(popular.values, popular.question, seed, 300), p = bootstrap_ci(popular.values, seed, 300);
    BOOST_TEST((q.low != p.low || q.high != p.high));
  }
  // per_layer: the chosen set is the top 2 of every layer, as stored in top_per_layer.
  h5::File f(pairs.string(), h5::File::Mode::ReadOnly);
  BOOST_TEST(f.attr_string("/localize", "selection") == "per_layer");
  const auto per_layer = f.read_int("/localize/contrast/top_per_layer").data;
  const auto chosen = f.read_int("/localize/conditions/chosen/experts").data;
  BOOST_REQUIRE_EQUAL(per_layer.size(), 8u);
  BOOST_REQUIRE_EQUAL(chosen.size(), 16u);
  for (std::size_t k = 0; k < 8; ++k) BOOST_TEST(chosen[2 * k] * 8 + chosen[2 * k + 1] == per_layer[k]);
}

// Routing at generated tokens is stored for every pair (NaN where a pair generated no token fed
// back), a contrast of it leaves those pairs out, and the model's EOS id (demo/model: 2) stops
// decoding unless [model] eos_ids overrides it.
BOOST_AUTO_TEST_CASE(routing_at_generated_tokens_and_the_eos_ids) {
  namespace L = layout::localize;
  std::string text = config_text();
  text.replace(text.find("seed = 4\n"), 9, "seed = 4\nstatistic = \"prob_generated\"\n");
  const fs::path config = ws().write("generated.toml", text), out = ws().dir / "generated.h5";
  const fs::path log = ws().dir / "generated.log";
  BOOST_TEST_REQUIRE(run_to_end(moetrace_command({"localize", config.string(), "--out", out.string()}), log) == 0, slurp(log));
  h5::File f(out.string(), h5::File::Mode::ReadOnly);
  BOOST_TEST(f.attr_string(L::kRoot, "statistic") == "prob_generated");
  const std::size_t layers = static_cast<std::size_t>(f.attr_int(L::kRoot, "layers"));
  const std::size_t experts = static_cast<std::size_t>(f.attr_int(L::kRoot, "experts"));
  const auto outcome = f.read_double("/localize/asked/outcome").data;
  const auto generated = f.read_double("/localize/asked/generated").data;
  const auto prob = f.read_double("/localize/asked/routing/prob_generated").data;
  const auto selected = f.read_double("/localize/asked/routing/selected_generated").data;
  const auto split = f.read_int(L::kQuestionSplit).data;
  const std::size_t P = kQuestions * kLanguages, C = layers * experts;
  std::int64_t discovery_with = 0, without = 0;
  for (std::size_t p = 0; p < P; ++p) {
    const int n = static_cast<int>(outcome[p * 5 + 4]), stop = static_cast<int>(outcome[p * 5 + 3]);
    for (int k = 0; k < n; ++k) BOOST_TEST(generated[p * 3 + k] != 2.0, "pair " << p << " generated the EOS id");
    const int m = stop >= 0 ? n : n - 1;  // generated tokens fed back (docs/localize.md)
    without += m == 0;
    if (m > 0 && split[p / kLanguages] == 0) ++discovery_with;
    for (std::size_t l = 0; l < layers; ++l) {
      double sum_p = 0, sum_s = 0;
      for (std::size_t e = 0; e < experts; ++e) {
        sum_p += prob[p * C + l * experts + e];
        sum_s += selected[p * C + l * experts + e];
      }
      if (m == 0) {
        BOOST_TEST(std::isnan(sum_p), "pair " << p);
      } else {  // a mean of softmax distributions and of top-2 selections
        BOOST_TEST(std::abs(sum_p - 1.0) < 1e-9, "pair " << p << " layer " << l);
        BOOST_TEST(std::abs(sum_s - 2.0) < 1e-9, "pair " << p << " layer " << l);
      }
    }
  }
  BOOST_TEST(without < std::int64_t(P), "some pair must have generated routing");
  BOOST_TEST(f.attr_int(L::kContrast, "n_success") + f.attr_int(L::kContrast, "n_failure") == discovery_with);
  if (without > 0) BOOST_TEST(slurp(log).find("left out of the contrast") != std::string::npos);

  // [model] eos_ids overrides the model's: the first token pair 0 says becomes its stop token.
  const int first = static_cast<int>(generated[0]);
  BOOST_TEST_REQUIRE(first >= 0);
  std::string eos_text = config_text();
  eos_text.replace(eos_text.find("[data]"), 6, fmt::format("eos_ids = [{}]\n[data]", first));
  const fs::path eos_config = ws().write("eos.toml", eos_text), eos_out = ws().dir / "eos.h5";
  BOOST_TEST_REQUIRE(run_to_end(moetrace_command({"localize", eos_config.string(), "--out", eos_out.string()}), log) == 0,
                     slurp(log));
  h5::File g(eos_out.string(), h5::File::Mode::ReadOnly);
  const auto eos_outcome = g.read_double("/localize/asked/outcome").data;
  BOOST_TEST(eos_outcome[3] == double(first));
  BOOST_TEST(eos_outcome[4] == 0.0);
}

// Issue 25: `localize --resume` reads its journal through the same code as `run`: a journal that is
// not a regular file is exit 2 naming it (a FIFO once hung, a link to /dev/zero read without bound).
BOOST_AUTO_TEST_CASE(a_journal_that_is_not_a_regular_file_is_exit_2_on_resume) {
  const Workspace& w = ws();
  const fs::path out = w.dir / "special-journal.h5", journal = out.string() + ".journal";
  fs::remove(out);
  fs::copy_file(w.reference, out);
  BOOST_TEST_REQUIRE(mkfifo(journal.c_str(), 0644) == 0);
  expect_exit_2({"localize", w.config.string(), "--out", out.string(), "--resume"},
                {journal.string(), "is not a regular file", "a FIFO"});
  fs::remove(journal);
  fs::create_symlink("/dev/zero", journal);
  expect_exit_2({"localize", w.config.string(), "--out", out.string(), "--resume"},
                {journal.string(), "is not a regular file", "a symbolic link to a character device"});
  fs::remove(journal);
}

// ---- Shards and merges (`moetrace localize --shard i/n`, `moetrace merge`) ----------------------

namespace {

constexpr int kShards = 3;

std::size_t count(const std::string& text, const std::string& what) {
  std::size_t n = 0;
  for (auto at = text.find(what); at != std::string::npos; at = text.find(what, at + 1)) ++n;
  return n;
}

// One round of shards: each shard's file (a copy of `from` resumed, or a fresh run), merged into
// `merged`. Shard 1 runs on two MPI ranks (one EP group of two: the distributed executor's shard
// of rows). Every shard must say where it stopped.
std::vector<fs::path> shard_round(const std::string& name, const fs::path& from, const fs::path& merged,
                                  const std::string& stop) {
  const Workspace& w = ws();
  const fs::path log = w.dir / (name + ".log");
  std::vector<fs::path> files;
  std::vector<std::string> merge_args{"merge", "--out", merged.string()};
  for (int i = 0; i < kShards; ++i) {
    const fs::path out = w.dir / fmt::format("{}.shard{}.h5", name, i);
    std::vector<std::string> args{"localize", w.config.string(), "--out", out.string(), "--shard",
                                  fmt::format("{}/{}", i, kShards)};
    if (!from.empty()) {
      fs::copy_file(from, out);
      args.push_back("--resume");
    }
    if (i == 1) args.insert(args.end(), {"--ep", "2"});
    BOOST_TEST_REQUIRE(run_to_end(i == 1 ? mpirun_command(2, args) : moetrace_command(args), log) == 0, slurp(log));
    files.push_back(out);
    merge_args.push_back(out.string());
  }
  BOOST_TEST(count(slurp(log), "stopped before " + stop) == static_cast<std::size_t>(kShards), slurp(log));
  BOOST_TEST_REQUIRE(run_to_end(moetrace_command(merge_args), log) == 0, slurp(log));
  BOOST_TEST(slurp(log).find("moetrace localize CONFIG --resume") != std::string::npos, slurp(log));
  return files;
}

// A copy of `merged` finished by an unsharded --resume.
fs::path finish(const fs::path& merged, const std::string& name) {
  const Workspace& w = ws();
  const fs::path out = w.dir / (name + ".h5"), log = w.dir / (name + ".log");
  fs::copy_file(merged, out);
  BOOST_TEST_REQUIRE(run_to_end(moetrace_command({"localize", w.config.string(), "--out", out.string(), "--resume"}), log) == 0,
                     slurp(log));
  return out;
}

struct Sharded {
  std::vector<fs::path> asked_shards, condition_shards;  // round 1: the asked table; round 2: the conditions
  fs::path merged_asked, merged_conditions;
  Sharded() {
    const Workspace& w = ws();
    merged_asked = w.dir / "merged-asked.h5";
    merged_conditions = w.dir / "merged-conditions.h5";
    asked_shards = shard_round("asked", {}, merged_asked, "the contrast");
    condition_shards = shard_round("conditions", merged_asked, merged_conditions, "the summaries");
  }
};

Sharded& sharded() {
  static Sharded s;
  return s;
}

}  // namespace

BOOST_AUTO_TEST_CASE(three_shards_merged_and_resumed_are_bit_identical_to_one_run) {
  const Workspace& w = ws();
  const Sharded& s = sharded();
  // Shards of the asked table, merged, finished by one --resume; and with a second round of shards
  // of the condition tables on copies of the merged file.
  for (const fs::path& done : {finish(s.merged_asked, "finished-asked"), finish(s.merged_conditions, "finished-conditions")}) {
    expect_identical(w.reference, done);
    const std::string compared = slurp(w.dir / ("compare-" + done.stem().string() + ".log"));
    BOOST_TEST(compared.find("all bit-identical") != std::string::npos, compared);
    h5::File f(done.string(), h5::File::Mode::ReadOnly);
    BOOST_TEST(f.attr_int("/provenance", "completed") == 1);
    BOOST_TEST(f.attr_string("/provenance", "protocol") == "localize");
  }
}

BOOST_AUTO_TEST_CASE(each_localize_shard_computes_exactly_its_pairs) {
  const Sharded& s = sharded();
  const std::string asked_done = std::string(layout::localize::kAsked) + "/outcome_done";
  const std::string chosen_done = std::string(layout::localize::kConditions) + "/chosen/outcome_done";
  for (int i = 0; i < kShards; ++i) {
    h5::File a(s.asked_shards[i].string(), h5::File::Mode::ReadOnly);
    BOOST_TEST(a.attr_string("/provenance", "shard") == fmt::format("{}/{}", i, kShards));
    const auto done = a.read_int(asked_done).data;
    BOOST_TEST_REQUIRE(done.size() == static_cast<std::size_t>(kQuestions * kLanguages));
    for (std::size_t r = 0; r < done.size(); ++r)
      BOOST_TEST((done[r] != 0) == (static_cast<int>(r % kShards) == i), "asked row " << r << " of shard " << i);
    BOOST_TEST(!a.exists(layout::localize::kContrast));  // the contrast needs every shard's pairs
    h5::File c(s.condition_shards[i].string(), h5::File::Mode::ReadOnly);
    BOOST_TEST(c.exists(layout::localize::kContrast));
    const auto cdone = c.read_int(chosen_done).data;
    BOOST_TEST_REQUIRE(cdone.size() > 3u);
    for (std::size_t r = 0; r < cdone.size(); ++r)
      BOOST_TEST((cdone[r] != 0) == (static_cast<int>(r % kShards) == i), "chosen row " << r << " of shard " << i);
    BOOST_TEST(!c.exists(layout::localize::kEffect));  // the summaries are the unsharded run's
  }
  h5::File m(s.merged_asked.string(), h5::File::Mode::ReadOnly);
  for (std::int64_t d : m.read_int(asked_done).data) BOOST_TEST(d == 1);
  BOOST_TEST(!m.has_attr("/provenance", "shard"));
  BOOST_TEST(m.attr_string("/provenance", "merged_from").find("(shard 2/3)") != std::string::npos);
}

BOOST_AUTO_TEST_CASE(bad_localize_shard_values_are_bad_input_naming_the_option) {
  const Workspace& w = ws();
  const fs::path never = w.dir / "never.h5";
  for (const char* bad : {"x", "3/3", "-1/3", "1/0", "0/", "/3", "1/3/3", "0/99999999999", " 0/3"}) {
    expect_exit_2({"localize", w.config.string(), "--out", never.string(), "--shard", bad}, {"--shard", bad});
    BOOST_TEST(!fs::exists(never));
  }
}

BOOST_AUTO_TEST_CASE(merge_refuses_a_run_file_among_localize_files_and_other_configs) {
  const Workspace& w = ws();
  const Sharded& s = sharded();
  const fs::path log = w.dir / "merge-mixed.log";
  // A `moetrace run` shard file of the demo (a few cases: it stops after its layer-sweep rows).
  const fs::path src = source_dir(), run_config = w.dir / "run.toml", run_file = w.dir / "run-shard.h5";
  std::ofstream(run_config) << "[model]\npath = \"" << (src / "demo/model").string() << "\"\n[data]\ncounterfact = \""
                            << (src / "demo/counterfact_demo.json").string() << "\"\nobject_rule = \"leading_space\"\n"
                            << "[cases]\nn = 2\n[noise]\nsamples = 2\n[run]\ncheckpoint_every_s = 0\n";
  BOOST_TEST_REQUIRE(
      run_to_end(moetrace_command({"run", run_config.string(), "--out", run_file.string(), "--shard", "0/2"}), log) == 0,
      slurp(log));
  for (const auto& [first, second] : {std::pair{s.asked_shards[0], run_file}, std::pair{run_file, s.asked_shards[0]}}) {
    const fs::path out = w.dir / "merged-mixed.h5";
    expect_exit_2({"merge", "--out", out.string(), first.string(), second.string()},
                  {second.string(), "moetrace run", "moetrace localize"});
    BOOST_TEST(!fs::exists(out));
    BOOST_TEST(!fs::exists(out.string() + ".tmp"));
  }
  // A localize shard of another config (another seed): exit 2 naming the file and the field.
  const fs::path other_config = w.write("other-seed.toml", config_text("chunk_tokens = 24\n"));
  {
    std::string text = slurp(other_config);
    text.replace(text.find("seed = 4"), 8, "seed = 5");
    std::ofstream(other_config) << text;
  }
  const fs::path other = w.dir / "other-seed.shard1.h5";
  BOOST_TEST_REQUIRE(run_to_end(moetrace_command({"localize", other_config.string(), "--out", other.string(), "--shard",
                                                  fmt::format("1/{}", kShards)}),
                                log) == 0,
                     slurp(log));
  const fs::path out = w.dir / "merged-other.h5";
  expect_exit_2({"merge", "--out", out.string(), s.asked_shards[0].string(), other.string()},
                {other.string(), "config_text"});
  BOOST_TEST(!fs::exists(out));
}
