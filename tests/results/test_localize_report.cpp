// `moetrace report` on a results file of `moetrace localize`: a file in the layout of
// docs/localize.md "Results file" is written here with the ResultsFile API (random values from a
// seeded generator), then the reader must return exactly what was written, the text, JSON and CSV
// of `moetrace report` must show those values, a missing or contradictory dataset must be exit 2
// naming it, and tools/plot_results.py must draw its three figures. The provenance both file kinds
// share (a tracing file of `moetrace run` and a localize file) goes through one reader and one
// rendering: checked here on both kinds, with absent and damaged attributes.
#define BOOST_TEST_MODULE localize_report
#include <boost/test/unit_test.hpp>

#include <algorithm>
#include <cmath>
#include <random>
#include <map>
#include <set>
#include <sstream>
#include <tuple>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "protocols/localize_report.h"
#include "protocols/report.h"
#include "protocols/report_provenance_format.h"
#include "results/localize_layout.h"
#include "results/localize_report_data.h"
#include "results/report_data.h"
#include "results/report_provenance.h"
#include "results/results_file.h"
#include "results/run_history.h"
#include "support/cli_runner.h"
#include "util/error.h"
#include "support/test_paths.h"

namespace fs = std::filesystem;
using namespace moetrace;
using namespace moetrace::test;
using nlohmann::json;
namespace L = moetrace::layout::localize;

namespace {

bool has(const std::string& s, const std::string& part) { return s.find(part) != std::string::npos; }

constexpr int kLayers = 4, kExperts = 8, kTopK = 2, kQuestions = 6, kTopN = 3, kMaxNew = 4;
const std::vector<std::string> kLanguages{"en", "de", "ja"};
const std::vector<int> kCurve{1, 2, 5};

// What the file holds, for the checks.
struct Written {
  std::vector<double> outcome_bucket;  // [P]
  std::vector<std::vector<double>> contrast;  // field -> [L*E], order of kFields
  std::vector<int> top_global, top_per_layer, validation_pairs;
  std::map<std::string, std::vector<int>> condition_experts;  // flat (layer, expert) pairs
  std::map<std::string, SummaryRecord> effect;                 // /localize/effect
  std::map<std::string, std::map<std::string, SummaryRecord>> by_language, accuracy;
  std::map<int, SummaryRecord> curve;
  std::vector<std::string> unrelated_ids;
  std::vector<double> unrelated_bucket;
};

const std::vector<std::string> kFields{"mean_success", "mean_failure", "effect", "statistic", "df", "p", "q"};

struct Damage {
  std::string omit;           // a dataset not to write
  bool bad_top_global = false;  // an index beyond layers * experts
  bool unfinished = false;      // stopped after asking: no split, contrast, conditions or summaries
};

SummaryRecord record(std::mt19937& g, const std::string& name, double shift = 0) {
  std::uniform_real_distribution<double> u(0, 1);
  SummaryRecord s;
  s.name = name;
  s.n = 5 + static_cast<int>(g() % 40);
  s.mean = u(g) * 0.5 + shift;
  s.ci_low = s.mean - 0.05 - 0.1 * u(g);
  s.ci_high = s.mean + 0.05 + 0.1 * u(g);
  s.frac_positive = u(g);
  s.p_value = u(g);
  return s;
}

// Provenance as a run writes it (version 0.1.0, commit abc1234, backend cpu).
Provenance test_provenance(const std::string& command_line, const std::string& config_path,
                           const std::string& model_path, int ranks) {
  Provenance p;
  p.moetrace_version = "0.1.0";
  p.git_commit = "abc1234";
  p.command_line = command_line;
  p.config_path = config_path;
  p.model_path = model_path;
  p.backend = "cpu";
  p.ranks = ranks;
  return p;
}

Written write_file(const fs::path& path, const Damage& damage = {}) {
  std::mt19937 g(20261201);
  std::uniform_real_distribution<double> u(0, 1);
  Written w;
  ResultsFile f(path.string(), ResultsFile::Mode::Create);
  f.write_provenance(test_provenance("moetrace localize test.toml", "/abs/test.toml", "/models/tiny", 2));
  f.set_attr(layout::kProvenance, "protocol", std::string("localize"));
  if (!damage.unfinished) f.set_attr(layout::kProvenance, "completed", static_cast<std::int64_t>(1));
  auto unless_omitted = [&](const std::string& name, auto&& write) {
    if (damage.omit != name) write();
  };

  const std::size_t nl = kLanguages.size(), P = kQuestions * nl, flat = kLayers * kExperts;
  f.write_strings(L::kLanguages, kLanguages);
  for (auto [k, v] : {std::pair{"layers", kLayers}, std::pair{"experts", kExperts}, std::pair{"top_k", kTopK}})
    f.set_attr(L::kRoot, k, static_cast<std::int64_t>(v));
  for (auto [k, v] : {std::pair{"statistic", "prob_mean"}, std::pair{"method", "paired_sign_flip"},
                      std::pair{"direction", "success_higher"}, std::pair{"selection", "global"},
                      std::pair{"bucket", "generation"}, std::pair{"match", "prefix"},
                      std::pair{"bootstrap_unit", "question"}})
    f.set_attr(L::kRoot, k, std::string(v));
  std::vector<std::string> ids;
  std::vector<int> split;
  for (int q = 0; q < kQuestions; ++q) {
    ids.push_back(fmt::format("q{:02d}", q));
    split.push_back(q % 2);
  }
  f.write_strings(L::kQuestionIds, ids);
  // Skips as the writer stores them: the first records' ids, lines and messages, and the count of
  // every problem (all skipped records) as an attribute of the group.
  f.write_strings(std::string(L::kSkipped) + "/id", {"q7", "q8", "q9"});
  f.write_strings(std::string(L::kSkipped) + "/reason", {"line 8 (id \"q7\"): language 'de' is missing",
                                                         "line 9 (id \"q8\"): empty answer", "line 10: bad id"});
  f.set_attr(L::kSkipped, "missing language", static_cast<std::int64_t>(5));
  f.set_attr(L::kSkipped, "empty answer", static_cast<std::int64_t>(1));
  f.set_attr(L::kSkipped, "total", static_cast<std::int64_t>(6));

  // Asked: bucket by a draw; the other columns plausible.
  const std::string outcome = std::string(L::kAsked) + "/outcome";
  unless_omitted(outcome, [&] {
    f.ensure_matrix(outcome, {P, L::kOutcomeColumns});
    f.ensure_matrix(std::string(L::kAsked) + "/generated", {P, kMaxNew});
    for (std::size_t r = 0; r < P; ++r) {
      const double bucket = u(g) < 0.6 ? 1 : 0;
      w.outcome_bucket.push_back(bucket);
      f.write_row(outcome, r, {bucket, bucket * 2, -u(g), 2, 3});
      f.write_row(std::string(L::kAsked) + "/generated", r, {5, 6, 2, -1});
    }
  });
  for (const char* stat : {"prob_mean", "prob_last"}) {
    const std::string name = std::string(L::kAsked) + "/routing/" + stat;
    f.ensure_matrix(name, {P, flat});
    for (std::size_t r = 0; r < P; ++r) {
      std::vector<double> row(flat);
      for (double& v : row) v = u(g);
      f.write_row(name, r, row);
    }
  }

  if (damage.unfinished) {
    f.flush();
    return w;
  }
  unless_omitted(L::kQuestionSplit, [&] { f.write_ints(L::kQuestionSplit, split); });

  // Contrast: effect decreasing along a random permutation, so top_global is its order.
  std::vector<int> order(flat);
  for (std::size_t i = 0; i < flat; ++i) order[i] = static_cast<int>(i);
  std::shuffle(order.begin(), order.end(), g);
  w.contrast.assign(kFields.size(), std::vector<double>(flat));
  for (std::size_t k = 0; k < flat; ++k) {
    const auto i = static_cast<std::size_t>(order[k]);
    const double ms = u(g), mf = u(g) * 0.5;
    w.contrast[0][i] = ms;
    w.contrast[1][i] = mf;
    w.contrast[2][i] = 1.0 - static_cast<double>(k) / flat + 1e-3 * u(g);
    w.contrast[3][i] = 10 * u(g);
    w.contrast[4][i] = 2;
    w.contrast[5][i] = k == 0 ? 1.5e-5 : u(g);
    w.contrast[6][i] = std::min(1.0, w.contrast[5][i] * 3);
  }
  for (std::size_t k = 0; k < kFields.size(); ++k) {
    const std::string name = std::string(L::kContrast) + "/" + kFields[k];
    unless_omitted(name, [&] { f.write_vector(name, w.contrast[k]); });
  }
  for (auto [k, v] : {std::pair{"n_success", 21}, std::pair{"n_failure", 13}, std::pair{"n_questions", 3},
                      std::pair{"n_mixed_questions", 2}})
    f.set_attr(L::kContrast, k, static_cast<std::int64_t>(v));
  w.top_global.assign(order.begin(), order.begin() + 5);  // max(top_n, max curve_n)
  if (damage.bad_top_global) w.top_global[1] = kLayers * kExperts + 3;
  f.write_ints(std::string(L::kContrast) + "/top_global", w.top_global);
  w.top_per_layer.assign(kLayers * kTopN, -1);
  for (int l = 0; l < kLayers; ++l) {
    int rank = 0;
    for (int i : order)
      if (i / kExperts == l && rank < kTopN) w.top_per_layer[l * kTopN + rank++] = i;  // flat, as top_global
  }
  f.write_ints(std::string(L::kContrast) + "/top_per_layer", w.top_per_layer);

  // Validation pairs: every pair of a validation question.
  for (std::size_t r = 0; r < P; ++r)
    if (split[r / nl] == 1) w.validation_pairs.push_back(static_cast<int>(r));
  f.write_ints(L::kValidationPairs, w.validation_pairs);
  const std::size_t V = w.validation_pairs.size();
  auto set_of = [&](const std::vector<int>& flat_ids) {
    std::vector<int> v;
    for (int i : flat_ids) {
      v.push_back(i / kExperts);
      v.push_back(i % kExperts);
    }
    return v;
  };
  std::map<std::string, std::vector<int>> sets{
      {"chosen", set_of({order[0], order[1], order[2]})},
      {"popular", set_of({order[2], order[10], order[20]})},
      {"random_0", set_of({order[30], order[12], order[7]})},
      {"random_1", set_of({order[25], order[14], order[9]})}};
  for (int n : kCurve) sets[fmt::format("curve_{}", n)] = set_of(std::vector<int>(order.begin(), order.begin() + n));
  sets["unrelated_after"] = sets["chosen"];
  for (const auto& [name, experts] : sets) {
    const std::string base = std::string(L::kConditions) + "/" + name;
    w.condition_experts[name] = experts;
    unless_omitted(base + "/experts", [&] { f.write_ints(base + "/experts", experts); });
    const std::size_t rows = name == "unrelated_after" ? 2 * nl : V;
    f.ensure_matrix(base + "/outcome", {rows, L::kOutcomeColumns});
    f.ensure_matrix(base + "/generated", {rows, kMaxNew});
    for (std::size_t r = 0; r + 1 < rows; ++r) f.write_row(base + "/outcome", r, {0, 0, -1, -1, 4});  // one row not done
  }

  // Unrelated questions.
  w.unrelated_ids = {"u0", "u1"};
  f.write_strings(std::string(L::kUnrelated) + "/questions/id", w.unrelated_ids);
  const std::string uo = std::string(L::kUnrelated) + "/asked/outcome";
  f.ensure_matrix(uo, {2 * nl, L::kOutcomeColumns});
  f.ensure_matrix(std::string(L::kUnrelated) + "/asked/generated", {2 * nl, kMaxNew});
  for (std::size_t r = 0; r < 2 * nl; ++r) {
    w.unrelated_bucket.push_back(r % 3 == 0 ? 0 : 1);
    f.write_row(uo, r, {w.unrelated_bucket.back(), 0, -1, 2, 1});
  }

  // Summaries.
  for (const char* name : {"chosen", "popular", "random", "chosen_turned_right", "popular_turned_right",
                           "random_turned_right", "unrelated_turned_wrong"})
    w.effect[name] = record(g, name);
  w.effect["chosen_minus_random"] = record(g, "chosen_minus_random", 0.3);  // interval above 0
  SummaryRecord straddle = record(g, "chosen_minus_popular");
  straddle.mean = 0.01;
  straddle.ci_low = -0.08;
  straddle.ci_high = 0.1;
  w.effect["chosen_minus_popular"] = straddle;
  for (const auto& [name, s] : w.effect) f.write_summary(L::kEffect, s);
  std::vector<std::string> groups = kLanguages;
  groups.push_back("overall");
  for (const std::string& lang : groups) {
    for (const char* name : {"asked", "validation_before", "validation_after"}) {
      w.accuracy[lang][name] = record(g, name);
      f.write_summary(std::string(L::kAccuracy) + "/" + lang, w.accuracy[lang][name]);
    }
    if (lang == "overall") continue;
    for (const char* name : {"chosen", "popular", "random"}) {
      w.by_language[lang][name] = record(g, name);
      f.write_summary(std::string(L::kEffectByLanguage) + "/" + lang, w.by_language[lang][name]);
    }
  }
  for (int n : kCurve) {
    w.curve[n] = record(g, fmt::format("n_{}", n));
    f.write_summary(L::kCurve, w.curve[n]);
  }
  f.flush();
  return w;
}

void check_record(const SummaryRecord& got, const SummaryRecord& want) {
  BOOST_TEST(got.name == want.name);
  BOOST_TEST(got.n == want.n, want.name);
  BOOST_TEST(got.mean == want.mean, want.name);
  BOOST_TEST(got.ci_low == want.ci_low, want.name);
  BOOST_TEST(got.ci_high == want.ci_high, want.name);
  BOOST_TEST(got.frac_positive == want.frac_positive, want.name);
  BOOST_TEST(got.p_value == want.p_value, want.name);
}

void check_record_json(const json& got, const SummaryRecord& want) {
  BOOST_TEST(got["name"] == want.name);
  BOOST_TEST(got["n"] == want.n);
  BOOST_TEST(got["mean"].get<double>() == want.mean, want.name);
  BOOST_TEST(got["ci_low"].get<double>() == want.ci_low, want.name);
  BOOST_TEST(got["ci_high"].get<double>() == want.ci_high, want.name);
}

struct Fixture {
  fs::path dir, file;
  Written w;
};

const Fixture& fixture() {
  static Fixture x = [] {
    Fixture f;
    f.dir = fresh_temp_dir("localize-report");
    f.file = f.dir / "loc.h5";
    f.w = write_file(f.file);
    return f;
  }();
  return x;
}

std::string report(const fs::path& file, const std::vector<std::string>& args, int expect_rc = 0) {
  static int k = 0;
  const fs::path log = file.parent_path() / fmt::format("report{}.out", k++);
  std::vector<std::string> argv{"report", file.string()};
  argv.insert(argv.end(), args.begin(), args.end());
  const int rc = run_to_end(moetrace_command(argv), log);
  BOOST_TEST(rc == expect_rc, slurp(log));
  return slurp(log);
}

std::string interval_text(const SummaryRecord& s) {
  return fmt::format("{} [{}, {}]", format_value(s.mean), format_value(s.ci_low), format_value(s.ci_high));
}

}  // namespace

BOOST_AUTO_TEST_CASE(the_reader_returns_what_the_file_holds) {
  const Fixture& x = fixture();
  const Written& w = x.w;
  const LocalizeReportData d = read_localize_report_data(x.file.string());
  BOOST_TEST(is_localize_file(x.file.string()));
  BOOST_TEST(d.provenance.completed);
  BOOST_TEST(d.provenance.ranks == 2);
  BOOST_TEST(d.layers == kLayers);
  BOOST_TEST(d.experts == kExperts);
  BOOST_TEST(d.top_k == kTopK);
  BOOST_TEST(d.method == "paired_sign_flip");
  BOOST_TEST(d.languages == kLanguages);
  BOOST_TEST(d.question_ids.size() == static_cast<std::size_t>(kQuestions));
  BOOST_TEST(d.skipped.size() == 2u);  // the counts, not the listed messages
  BOOST_TEST(d.skipped.at("missing language") == 5);
  BOOST_TEST(d.skipped.at("empty answer") == 1);
  // Buckets per language from the outcome column, row = q * languages + l.
  BOOST_TEST_REQUIRE(d.buckets.size() == kLanguages.size() + 1);
  std::int64_t all_success = 0;
  for (std::size_t l = 0; l < kLanguages.size(); ++l) {
    std::int64_t success = 0, pairs = 0;
    for (int q = 0; q < kQuestions; ++q) {
      ++pairs;
      success += w.outcome_bucket[q * kLanguages.size() + l] == 1;
    }
    all_success += success;
    BOOST_TEST(d.buckets[l].language == kLanguages[l]);
    BOOST_TEST(d.buckets[l].pairs == pairs);
    BOOST_TEST(d.buckets[l].success == success);
    BOOST_TEST(d.buckets[l].failure == pairs - success);
  }
  BOOST_TEST(d.buckets.back().success == all_success);
  BOOST_TEST(d.buckets.back().pairs == static_cast<std::int64_t>(w.outcome_bucket.size()));
  // Contrast.
  BOOST_TEST(d.effect == w.contrast[2]);
  BOOST_TEST(d.q == w.contrast[6]);
  BOOST_TEST(d.top_global == w.top_global);
  BOOST_TEST(d.top_n == kTopN);
  BOOST_TEST(d.n_success == 21);
  BOOST_TEST(d.mixed_questions == 2);
  BOOST_TEST_REQUIRE(d.top_experts.size() == static_cast<std::size_t>(kTopN));
  for (int k = 0; k < kTopN; ++k) {
    const LocalizeContrastRow& r = d.top_experts[k];
    const int i = w.top_global[k];
    BOOST_TEST(r.rank == k + 1);
    BOOST_TEST(r.at.layer == i / kExperts);
    BOOST_TEST(r.at.expert == i % kExperts);
    BOOST_TEST(r.effect == w.contrast[2][i]);
    BOOST_TEST(r.mean_success == w.contrast[0][i]);
    BOOST_TEST(r.p == w.contrast[5][i]);
    BOOST_TEST(r.chosen);  // the chosen set is the global top 3
  }
  // Conditions in order, with their sets.
  std::vector<std::string> names;
  for (const auto& c : d.conditions) names.push_back(c.name);
  BOOST_TEST(names == (std::vector<std::string>{"chosen", "popular", "random_0", "random_1", "curve_1", "curve_2",
                                                "curve_5", "unrelated_after"}),
             boost::test_tools::per_element());
  for (const auto& c : d.conditions) {
    std::vector<int> flat;
    for (const auto& e : c.experts) {
      flat.push_back(e.layer);
      flat.push_back(e.expert);
    }
    BOOST_TEST(flat == w.condition_experts.at(c.name), c.name);
    BOOST_TEST(c.rows_done == c.rows - 1, c.name);
  }
  BOOST_TEST(d.random_draws() == 2u);
  BOOST_TEST(d.validation_pairs == w.validation_pairs);
  // Summaries.
  BOOST_TEST(d.effect_records.size() == w.effect.size());
  for (const auto& [name, s] : w.effect) {
    BOOST_TEST_REQUIRE(d.effect_record(name) != nullptr, name);
    check_record(*d.effect_record(name), s);
  }
  BOOST_TEST_REQUIRE(d.by_language.size() == kLanguages.size() + 1);
  for (const LocalizeLanguageSummary& s : d.by_language) {
    const auto& acc = w.accuracy.at(s.language);
    check_record(s.asked, acc.at("asked"));
    check_record(s.validation_before, acc.at("validation_before"));
    check_record(s.validation_after, acc.at("validation_after"));
    const auto& eff = s.language == "overall" ? w.effect : w.by_language.at(s.language);
    check_record(s.chosen, eff.at("chosen"));
    check_record(s.random, eff.at("random"));
  }
  BOOST_TEST_REQUIRE(d.curve.size() == kCurve.size());
  for (std::size_t i = 0; i < kCurve.size(); ++i) {
    BOOST_TEST(d.curve[i].n == kCurve[i]);
    check_record(d.curve[i].share, w.curve.at(kCurve[i]));
  }
  BOOST_TEST(d.unrelated_questions == 2);
  BOOST_TEST(d.unrelated_pairs == static_cast<std::int64_t>(w.unrelated_bucket.size()));
  BOOST_TEST(d.unrelated_correct_before == std::count(w.unrelated_bucket.begin(), w.unrelated_bucket.end(), 1.0));
}

BOOST_AUTO_TEST_CASE(the_text_report_shows_the_values_written) {
  const Fixture& x = fixture();
  const Written& w = x.w;
  const LocalizeReportData d = read_localize_report_data(x.file.string());
  const std::string text = report(x.file, {});
  BOOST_TEST(has(text, "(localize)"), text);
  for (const LocalizeBuckets& b : d.buckets)
    BOOST_TEST(has(text, fmt::format("  {:<10} {:>7} {:>8} {:>8} {:>9.3f}", b.language, b.pairs, b.success, b.failure,
                                     static_cast<double>(b.success) / b.pairs)),
               b.language << "\n" << text);
  for (int k = 0; k < kTopN; ++k) {
    const int i = w.top_global[k];
    BOOST_TEST(has(text, fmt::format("  {:>4}  {:>5}  {:>6}  {:>12}  {:>12}  {:>11}", k + 1, i / kExperts, i % kExperts,
                                     format_value(w.contrast[0][i]), format_value(w.contrast[1][i]),
                                     format_value(w.contrast[2][i]))),
               "rank " << k + 1 << "\n" << text);
  }
  BOOST_TEST(has(text, "1.50e-05"), text);  // the best expert's p
  for (const char* name : {"chosen", "popular", "random", "chosen_minus_random", "chosen_minus_popular",
                           "chosen_turned_right", "random_turned_right", "unrelated_turned_wrong"})
    BOOST_TEST(has(text, interval_text(w.effect.at(name))), name << "\n" << text);
  BOOST_TEST(has(text, "Verdict: chosen - random excludes zero, chosen - popular includes zero"), text);
  for (const auto& [n, s] : w.curve)
    BOOST_TEST(has(text, fmt::format("N = {:>5}  n = {:>6}  {}", n, s.n, interval_text(s))), text);
  for (const std::string& lang : kLanguages)
    BOOST_TEST(has(text, fmt::format("  {:<10} {:>7.3f} {:>8.3f} {:>8.3f} {:>8} {:>8.3f}", lang,
                                     w.accuracy.at(lang).at("asked").mean,
                                     w.accuracy.at(lang).at("validation_before").mean,
                                     w.accuracy.at(lang).at("validation_after").mean,
                                     w.by_language.at(lang).at("chosen").n, w.by_language.at(lang).at("chosen").mean)),
               lang << "\n" << text);
  const int c0 = w.condition_experts.at("chosen")[0], c1 = w.condition_experts.at("chosen")[1];
  BOOST_TEST(has(text, fmt::format("chosen 3 experts: L{}E{:03d}", c0, c1)), text);
  BOOST_TEST(has(text, "2 draws of 3 experts"), text);
}

BOOST_AUTO_TEST_CASE(json_and_csv_carry_the_stored_values) {
  const Fixture& x = fixture();
  const Written& w = x.w;
  const json j = json::parse(report(x.file, {"--format", "json"}));
  BOOST_TEST(j["format"] == "moetrace-localize-report/1");
  BOOST_TEST(j["run"]["layers"] == kLayers);
  BOOST_TEST(j["contrast"]["top_global"] == json(w.top_global));
  for (int k = 0; k < kTopN; ++k) {
    const json& r = j["contrast"]["top_experts"][k];
    const int i = w.top_global[k];
    BOOST_TEST(r["effect"].get<double>() == w.contrast[2][i]);
    BOOST_TEST(r["q"].get<double>() == w.contrast[6][i]);
    BOOST_TEST(r["layer"] == i / kExperts);
  }
  std::set<std::string> seen;
  for (const json& s : j["effect"]) {
    check_record_json(s, w.effect.at(s["name"].get<std::string>()));
    seen.insert(s["name"].get<std::string>());
  }
  BOOST_TEST(seen.size() == w.effect.size());
  BOOST_TEST(j["verdict"]["chosen_minus_random"] == "excludes zero");
  BOOST_TEST(j["verdict"]["chosen_minus_popular"] == "includes zero");
  for (const json& l : j["by_language"]) {
    const std::string lang = l["language"];
    check_record_json(l["validation_after"], w.accuracy.at(lang).at("validation_after"));
    if (lang != "overall") check_record_json(l["popular"], w.by_language.at(lang).at("popular"));
  }
  BOOST_TEST_REQUIRE(j["curve"].size() == kCurve.size());
  for (const json& c : j["curve"]) check_record_json(c, w.curve.at(c["experts"].get<int>()));
  BOOST_TEST(j["conditions"][0]["experts"][0][1] == w.condition_experts.at("chosen")[1]);

  auto lines = [](const std::string& s) { return std::count(s.begin(), s.end(), '\n'); };
  BOOST_TEST(lines(report(x.file, {"--format", "csv"})) == 1 + static_cast<long>(kLanguages.size()) + 1);  // buckets
  BOOST_TEST(lines(report(x.file, {"--format", "csv", "--table", "contrast"})) == 1 + kLayers * kExperts);
  BOOST_TEST(lines(report(x.file, {"--format", "csv", "--table", "curve"})) == 1 + static_cast<long>(kCurve.size()));
  const std::string experts = report(x.file, {"--format", "csv", "--table", "experts"});
  BOOST_TEST(lines(experts) == 1 + kTopN);
  BOOST_TEST(has(experts, fmt::format("1,{},{},{}", w.top_global[0] / kExperts, w.top_global[0] % kExperts,
                                      fmt::format("{}", w.contrast[0][w.top_global[0]]))),
             experts);
  const std::string effects = report(x.file, {"--format", "csv", "--table", "effects"});
  const SummaryRecord& cr = w.effect.at("chosen_minus_random");
  BOOST_TEST(has(effects, fmt::format("effect,chosen_minus_random,{},{},{},{}", cr.n, cr.mean, cr.ci_low, cr.ci_high)),
             effects);
  BOOST_TEST(has(report(x.file, {"--format", "csv", "--table", "cases"}, 2), "not a table of a localize file"));
  BOOST_TEST(has(report(x.file, {"--table", "curve"}, 2), "only with --format csv"));
}

BOOST_AUTO_TEST_CASE(an_unfinished_run_shows_what_is_there) {
  const fs::path dir = fresh_temp_dir("localize-report-unfinished");
  const Written w = write_file(dir / "u.h5", {"", false, true});
  const LocalizeReportData d = read_localize_report_data((dir / "u.h5").string());
  BOOST_TEST(!d.provenance.completed);
  BOOST_TEST(d.question_split.empty());
  BOOST_TEST(!d.has_contrast);
  BOOST_TEST(d.conditions.empty());
  BOOST_TEST(d.effect_records.empty());
  BOOST_TEST(d.buckets.back().pairs == static_cast<std::int64_t>(w.outcome_bucket.size()));
  const std::string text = report(dir / "u.h5", {});
  BOOST_TEST(has(text, "the run has not completed"), text);
  BOOST_TEST(has(text, "(not split yet)"), text);
  BOOST_TEST(has(text, "Buckets by language"), text);
  BOOST_TEST(!has(text, "Top experts"), text);
  const json j = json::parse(report(dir / "u.h5", {"--format", "json"}));
  BOOST_TEST(j["contrast"].is_null());
}

BOOST_AUTO_TEST_CASE(a_missing_or_contradictory_dataset_is_exit_2_naming_it) {
  const fs::path dir = fresh_temp_dir("localize-report-damaged");
  for (const std::string missing : {std::string(L::kContrast) + "/q", std::string(L::kQuestionSplit),
                                    std::string(L::kConditions) + "/popular/experts"}) {
    const fs::path file = dir / fmt::format("missing{}.h5", std::hash<std::string>{}(missing) % 1000);
    write_file(file, {missing, false, false});
    const std::string out = report(file, {}, 2);
    BOOST_TEST(has(out, file.string()), out);
    BOOST_TEST(has(out, "'" + missing + "'"), out);
    BOOST_CHECK_THROW(read_localize_report_data(file.string()), InputError);
  }
  const fs::path bad = dir / "bad_top.h5";
  write_file(bad, {"", true, false});
  const std::string out = report(bad, {}, 2);
  BOOST_TEST(has(out, std::string(L::kContrast) + "/top_global"), out);
  BOOST_TEST(has(out, "outside [0, 31]"), out);
}

BOOST_AUTO_TEST_CASE(the_plotting_script_draws_the_three_localize_figures) {
  const Fixture& x = fixture();
  const fs::path plots = x.dir / "plots", log = x.dir / "plots.log";
  const int rc = run_to_end({"/usr/bin/python3", (source_dir() / "tools/plot_results.py").string(), x.file.string(),
                             "--out-dir", plots.string()},
                            log);
  BOOST_TEST_REQUIRE(rc == 0, slurp(log));
  for (const char* figure : {"contrast", "accuracy", "curve"}) {
    const fs::path png = plots / (std::string("loc.") + figure + ".png");
    BOOST_TEST((fs::exists(png) && fs::file_size(png) > 10000), png << " missing or empty");
    BOOST_TEST(has(slurp(log), png.string()), slurp(log));
  }
}

namespace {

// Two history records as `moetrace run` and a `--resume` append them.
std::vector<RunRecord> two_records() {
  std::vector<RunRecord> v(2);
  v[0] = {"run", "moetrace run a.toml --out r.h5", "node-a", "/work/a", "/work/a/a.toml", "2026-12-01T10:00:00Z",
          "0.1.0", "abc1234", 4};
  v[1] = {"resume", "moetrace run a.toml --out r.h5 --resume", "node-b", "/work/b", "/work/a/a.toml",
          "2026-12-01T11:00:00Z", "0.1.1", "def5678-dirty", 1};
  return v;
}

// A tracing file as `moetrace run` leaves it before its first case: /provenance only (no /localize).
void write_tracing_provenance(const fs::path& path, const std::vector<RunRecord>& history) {
  ResultsFile f(path.string(), ResultsFile::Mode::Create);
  Provenance p = test_provenance("moetrace run a.toml --out r.h5", "/work/a/a.toml", "/models/demo", 4);
  p.config_text = "[model]\n";
  p.created_utc = "2026-12-01T10:00:00Z";
  f.write_provenance(p);
  f.set_attr(layout::kProvenance, "working_directory", std::string("/work/a"));
  for (const RunRecord& r : history) append_run_record(f, r);
  f.flush();
}

// A file holding only the attributes of /provenance given (strings "x", integers as given).
void write_bare_provenance(const fs::path& path, const std::map<std::string, std::int64_t>& ints,
                           const std::vector<std::string>& strings) {
  ResultsFile f(path.string(), ResultsFile::Mode::Create);
  for (const auto& [k, v] : ints) f.set_attr(layout::kProvenance, k, v);
  for (const std::string& k : strings) f.set_attr(layout::kProvenance, k, std::string("x"));
  f.flush();
}

ReportProvenance read_provenance_of(const fs::path& path) {
  ResultsFile f(path.string(), ResultsFile::Mode::Read);
  return read_report_provenance(f);
}

void check_history(const std::vector<RunRecord>& got, const std::vector<RunRecord>& want) {
  BOOST_TEST_REQUIRE(got.size() == want.size());
  for (std::size_t k = 0; k < want.size(); ++k) {
    BOOST_TEST(got[k].kind == want[k].kind);
    BOOST_TEST(got[k].command_line == want[k].command_line);
    BOOST_TEST(got[k].host == want[k].host);
    BOOST_TEST(got[k].working_directory == want[k].working_directory);
    BOOST_TEST(got[k].time_utc == want[k].time_utc);
    BOOST_TEST(got[k].git_commit == want[k].git_commit);
    BOOST_TEST(got[k].ranks == want[k].ranks);
  }
}

std::string provenance_text(const ReportProvenance& p) {
  std::ostringstream s;
  print_report_provenance(p, s);
  return s.str();
}

}  // namespace

BOOST_AUTO_TEST_CASE(one_provenance_reader_serves_tracing_and_localize_files) {
  const fs::path dir = fresh_temp_dir("report-provenance");
  const fs::path tracing = dir / "tracing.h5";
  const std::vector<RunRecord> history = two_records();
  write_tracing_provenance(tracing, history);
  BOOST_TEST(!is_localize_file(tracing.string()));

  const ReportProvenance t = read_provenance_of(tracing);
  BOOST_TEST(t.model_path == "/models/demo");
  BOOST_TEST(t.backend == "cpu");
  BOOST_TEST(t.git_commit == "abc1234");
  BOOST_TEST(t.moetrace_version == "0.1.0");
  BOOST_TEST(t.created_utc == "2026-12-01T10:00:00Z");
  BOOST_TEST(t.command_line == "moetrace run a.toml --out r.h5");
  BOOST_TEST(t.config_path == "/work/a/a.toml");
  BOOST_TEST(t.working_directory == "/work/a");
  BOOST_TEST(t.ranks == 4);
  BOOST_TEST(!t.completed);
  check_history(t.history, history);
  // The tracing report holds what the one reader returns.
  const ReportData rd = read_report_data(tracing.string());
  BOOST_TEST(!rd.has_cases);
  BOOST_TEST(rd.provenance.model_path == t.model_path);
  BOOST_TEST(rd.provenance.ranks == t.ranks);
  check_history(rd.provenance.history, history);

  // The localize fixture: its provenance as written, no working directory, no history.
  const Fixture& x = fixture();
  const ReportProvenance l = read_provenance_of(x.file);
  BOOST_TEST(l.model_path == "/models/tiny");
  BOOST_TEST(l.command_line == "moetrace localize test.toml");
  BOOST_TEST(l.config_path == "/abs/test.toml");
  BOOST_TEST(l.working_directory.empty());
  BOOST_TEST(l.ranks == 2);
  BOOST_TEST(l.completed);
  BOOST_TEST(l.history.empty());
  const LocalizeReportData ld = read_localize_report_data(x.file.string());
  BOOST_TEST(ld.provenance.model_path == l.model_path);
  BOOST_TEST(ld.provenance.ranks == l.ranks);
  BOOST_TEST(ld.provenance.completed);

  // Both reports print the same block under their own title line.
  std::ostringstream tracing_text, localize_text;
  print_report(rd, tracing_text);
  print_localize_report(ld, localize_text);
  BOOST_TEST(tracing_text.str().rfind(fmt::format("moetrace report: {}\n{}", tracing.string(), provenance_text(t)), 0) == 0u,
             tracing_text.str());
  BOOST_TEST(localize_text.str().rfind(fmt::format("moetrace report: {} (localize)\n{}", x.file.string(),
                                                   provenance_text(l)), 0) == 0u,
             localize_text.str());
  BOOST_TEST(has(tracing_text.str(), "no cases yet"), tracing_text.str());
}

BOOST_AUTO_TEST_CASE(the_provenance_text_and_json_show_what_is_recorded) {
  ReportProvenance p;
  p.model_path = "/m";
  p.backend = "cuda";
  p.ranks = 8;
  p.git_commit = "c0ffee";
  p.config_path = "/c.toml";
  p.working_directory = "/w";
  p.history = two_records();
  std::string text = provenance_text(p);
  BOOST_TEST(has(text, "  model /m  (backend cuda, 8 rank(s), commit c0ffee)\n"), text);
  BOOST_TEST(has(text, "  config /c.toml  (run in /w)\n"), text);
  BOOST_TEST(has(text, "  run    2026-12-01T10:00:00Z  on node-a with 4 rank(s): moetrace run a.toml --out r.h5\n"), text);
  BOOST_TEST(has(text, "  resume 2026-12-01T11:00:00Z  on node-b with 1 rank(s): "), text);
  BOOST_TEST(has(text, "NOTE: the run has not completed"), text);
  p.working_directory.clear();
  p.completed = true;
  text = provenance_text(p);
  BOOST_TEST(has(text, "  config /c.toml\n"), text);
  BOOST_TEST(!has(text, "run in"), text);
  BOOST_TEST(!has(text, "NOTE"), text);
  p.config_path.clear();  // absent: no config line at all
  BOOST_TEST(!has(provenance_text(p), "config"), provenance_text(p));

  const auto j = report_provenance_json(p);
  std::vector<std::string> keys;
  for (const auto& item : j.items()) keys.push_back(item.key());
  BOOST_TEST(keys == (std::vector<std::string>{"model_path", "backend", "ranks", "git_commit", "moetrace_version",
                                               "created_utc", "command_line", "config_path", "working_directory",
                                               "completed", "history"}),
             boost::test_tools::per_element());
  BOOST_TEST(j["ranks"] == 8);
  BOOST_TEST(j["config_path"] == "");
  BOOST_TEST(j["completed"] == true);
  BOOST_TEST_REQUIRE(j["history"].size() == 2u);
  BOOST_TEST(j["history"][1]["kind"] == "resume");
  BOOST_TEST(j["history"][1]["git_commit"] == "def5678-dirty");
  BOOST_TEST(j["history"][0]["ranks"] == 4);
  // The exports carry exactly this object.
  const Fixture& x = fixture();
  const auto e = nlohmann::ordered_json::parse(report(x.file, {"--format", "json"}));
  BOOST_TEST(e["provenance"].dump() == report_provenance_json(read_provenance_of(x.file)).dump());
}

BOOST_AUTO_TEST_CASE(absent_provenance_strings_are_empty_and_a_missing_or_bad_ranks_is_exit_2) {
  const fs::path dir = fresh_temp_dir("report-provenance-damaged");
  // Only the attributes every results file must have: the rest is absent, not an error.
  const fs::path bare = dir / "bare.h5";
  write_bare_provenance(bare, {{"ranks", 3}}, {"config_text", "moetrace_version"});
  const ReportProvenance p = read_provenance_of(bare);
  BOOST_TEST(p.moetrace_version == "x");
  BOOST_TEST(p.model_path.empty());
  BOOST_TEST(p.config_path.empty());
  BOOST_TEST(p.git_commit.empty());
  BOOST_TEST(p.ranks == 3);
  BOOST_TEST(!p.completed);
  BOOST_TEST(p.history.empty());
  const std::string text = report(bare, {});
  BOOST_TEST(has(text, "  model   (backend , 3 rank(s), commit )\n"), text);
  BOOST_TEST(!has(text, "  config"), text);
  BOOST_TEST(has(text, "no cases yet"), text);

  // Missing or below 1: exit 2 naming the file and the attribute, from both report readers.
  for (const auto& [name, ints, what] :
       {std::tuple{"no_ranks.h5", std::map<std::string, std::int64_t>{}, std::string("'ranks' is missing")},
        std::tuple{"zero_ranks.h5", std::map<std::string, std::int64_t>{{"ranks", 0}}, std::string("below 1")},
        std::tuple{"negative_ranks.h5", std::map<std::string, std::int64_t>{{"ranks", -2}}, std::string("below 1")}}) {
    const fs::path file = dir / name;
    write_bare_provenance(file, ints, {"config_text", "moetrace_version"});
    BOOST_CHECK_THROW(read_provenance_of(file), InputError);
    BOOST_CHECK_THROW(read_report_data(file.string()), InputError);
    const std::string out = report(file, {}, 2);
    BOOST_TEST(has(out, file.string()), out);
    BOOST_TEST(has(out, "ranks"), out);
    BOOST_TEST(has(out, what), out);
  }

  // A history that lists a record the file lacks: exit 2 naming it, for a localize file as well.
  const fs::path loc = dir / "history.h5";
  write_file(loc);
  {
    ResultsFile f(loc.string(), ResultsFile::Mode::Resume);
    append_run_record(f, two_records()[0]);
    f.set_attr(std::string(layout::kProvenance) + "/history", "records", static_cast<std::int64_t>(2));
    f.flush();
  }
  BOOST_CHECK_THROW(read_localize_report_data(loc.string()), InputError);
  const std::string out = report(loc, {}, 2);
  BOOST_TEST(has(out, "/provenance/history/1"), out);
}

// Issue 25: a report lost on its way to standard output (a full disk) was exit 0; now exit 2
// naming the output, for a localize file as for a tracing file (tests/cli/test_cli_hardening.cpp).
BOOST_AUTO_TEST_CASE(a_report_that_cannot_be_written_is_exit_2) {
  if (!fs::exists("/dev/full")) {
    BOOST_TEST_MESSAGE("skipped: no /dev/full");
    return;
  }
  for (const std::vector<std::string> format : {std::vector<std::string>{}, {"--format", "json"},
                                                {"--format", "csv"}}) {
    std::vector<std::string> argv{"/bin/sh", "-c", "exec \"$0\" \"$@\" > /dev/full", moetrace_binary().string(),
                                  "report", fixture().file.string()};
    argv.insert(argv.end(), format.begin(), format.end());
    const fs::path log = fixture().dir / "full.log";
    fs::remove(log);
    const int rc = run_to_end(argv, log);
    BOOST_TEST(rc == 2, "exit " << rc << ": " << slurp(log));
    BOOST_TEST(has(slurp(log), "cannot write the report to standard output: No space left on device"), slurp(log));
  }
}
