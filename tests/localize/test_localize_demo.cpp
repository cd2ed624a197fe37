// The multilingual localisation demo (demo/localize, trained by tools/demo/train_localize_demo.py)
// under the protocol core (src/protocols/localize_protocol.h), with the options of
// configs/demo_localize.toml: the contrast on the discovery questions ranks the planted knowledge
// experts (demo/localize/planted.json, written by the trainer) first, deactivating them turns most
// previously correct validation pairs wrong, the random layer-matched and popular-expert controls
// turn few wrong, and the bootstrap interval of chosen minus random excludes zero. The success and
// failure buckets follow the languages each fact was taught in (meta.learned of questions.jsonl).
#define BOOST_TEST_MODULE localize_demo
#include <boost/test/unit_test.hpp>

#include <algorithm>
#include <chrono>
#include <fstream>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "backend/backend.h"
#include "engine/device_model.h"
#include "model/model_weights.h"
#include "protocols/localize_protocol.h"
#include "support/test_paths.h"
#include "tokenizer/tokenizer.h"

using namespace moetrace;
using namespace moetrace::localize;

namespace {

std::filesystem::path demo_dir() { return test::source_dir() / "demo" / "localize"; }

nlohmann::json read_json(const std::filesystem::path& p) {
  std::ifstream in(p);
  BOOST_REQUIRE_MESSAGE(in, "cannot open " << p);
  return nlohmann::json::parse(in);
}

// question id -> languages the trainer taught the answer in (meta.learned).
std::map<std::string, std::set<std::string>> learned_languages(const std::filesystem::path& p) {
  std::ifstream in(p);
  BOOST_REQUIRE_MESSAGE(in, "cannot open " << p);
  std::map<std::string, std::set<std::string>> out;
  std::string line;
  std::getline(in, line);  // header
  while (std::getline(in, line)) {
    if (line.empty()) continue;
    const auto j = nlohmann::json::parse(line);
    auto& s = out[j.at("id").get<std::string>()];
    for (const auto& l : j.at("meta").at("learned")) s.insert(l.get<std::string>());
  }
  return out;
}

// The options of configs/demo_localize.toml (the command maps its keys to these fields).
LocalizeOptions demo_options(const QuestionSet* unrelated) {
  LocalizeOptions o;
  o.ask.max_new_tokens = 4;
  o.ask.prompts_per_call = 64;
  o.ask.eos_ids = {2};  // config.json eos_token_id
  o.ask.add_special_tokens = true;
  o.ask.match = MatchRule::ExactOrPrefix;
  o.ask.bucket = BucketRule::Generation;
  o.statistic = RoutingStatistic::ProbMean;
  o.contrast.method = ContrastMethod::PairedSignFlip;
  o.contrast.direction = RankDirection::SuccessHigher;
  o.contrast.sign_flips = 10000;
  o.contrast.top_n = 4;
  o.contrast.seed = 0;
  o.seed = 0;
  o.control_draws = 20;
  o.bootstrap_resamples = 5000;
  o.curve_n = {1, 2, 3, 4, 8, 16};
  o.unrelated = unrelated;
  return o;
}

struct Demo {
  ModelWeights weights = load_model(demo_dir() / "model");
  std::unique_ptr<Backend> backend = make_cpu_backend();
  DeviceModel model = upload_model(weights, *backend);
  Engine engine{model, *backend};
  Tokenizer tok = Tokenizer::from_path(demo_dir() / "model");
  QuestionSet questions = read_questions(demo_dir() / "questions.jsonl", {}, "demo questions");
  QuestionSet unrelated = read_questions(demo_dir() / "unrelated.jsonl", {}, "demo unrelated questions");
  nlohmann::json planted_json = read_json(demo_dir() / "planted.json");
  std::set<std::pair<int, int>> planted;
  Demo() {
    for (const auto& p : planted_json.at("planted")) planted.emplace(p.at(0).get<int>(), p.at(1).get<int>());
  }
};

}  // namespace

BOOST_AUTO_TEST_CASE(planted_experts_found_and_deactivation_flips_them) {
  Demo d;
  const ModelConfig& c = d.weights.config;
  BOOST_REQUIRE_EQUAL(c.num_layers, d.planted_json.at("layers").get<int>());
  BOOST_REQUIRE_EQUAL(c.num_experts, d.planted_json.at("experts").get<int>());
  BOOST_REQUIRE_GE(d.planted.size(), 2u);
  BOOST_REQUIRE(d.questions.skipped.total() == 0);
  BOOST_REQUIRE(d.unrelated.skipped.total() == 0);
  const LocalizeOptions o = demo_options(&d.unrelated);
  BOOST_REQUIRE_EQUAL(o.contrast.top_n, d.planted.size());

  const auto t0 = std::chrono::steady_clock::now();
  const LocalizationResult r = run_localization(d.engine, d.tok, d.questions, o);
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();

  // The buckets follow the design: taught pairs answered, the others not (a few lucky guesses).
  const auto learned = learned_languages(demo_dir() / "questions.jsonl");
  std::size_t taught = 0, taught_ok = 0, untaught = 0, untaught_ok = 0;
  for (const AskedPair& p : r.asked) {
    const bool t = learned.at(d.questions.questions[p.question].id).count(d.questions.languages[p.language]) > 0;
    const bool ok = p.bucket == Bucket::Success;
    (t ? taught : untaught) += 1;
    (t ? taught_ok : untaught_ok) += ok;
  }
  BOOST_TEST_REQUIRE(taught > 0u);
  BOOST_TEST_REQUIRE(untaught > 0u);
  BOOST_TEST(static_cast<double>(taught_ok) / taught > 0.9);
  BOOST_TEST(static_cast<double>(untaught_ok) / untaught < 0.15);
  BOOST_TEST(r.contrast.n_mixed_questions >= 20u);

  // The contrast ranks the planted experts first, and they are the deactivated set.
  BOOST_REQUIRE_GE(r.contrast.top_global.size(), d.planted.size());
  std::set<std::pair<int, int>> first;
  for (std::size_t k = 0; k < d.planted.size(); ++k) {
    const ExpertContrast& e = r.contrast.experts[r.contrast.top_global[k]];
    first.emplace(e.layer, e.expert);
  }
  BOOST_TEST((first == d.planted));
  const std::set<std::pair<int, int>> chosen(r.chosen.begin(), r.chosen.end());
  BOOST_TEST((chosen == d.planted));

  // Most previously correct validation pairs turn wrong; the controls turn few.
  BOOST_TEST(r.effect.flips.overall.correct_before >= 50u);
  BOOST_TEST(r.share_turned_wrong > 0.5);
  BOOST_TEST(r.random_share_turned_wrong < 0.15);
  BOOST_TEST(r.popular_share_turned_wrong < 0.15);
  BOOST_TEST(r.difference_vs_random_ci.low > 0.0);
  BOOST_TEST(r.share_ci.low > 0.5);
  // The popular control is a different set (the planted experts serve the subject tokens of
  // known facts only, not the most frequent routes).
  const std::set<std::pair<int, int>> popular(r.popular.experts.begin(), r.popular.experts.end());
  BOOST_TEST((popular != d.planted));
  // Previously wrong pairs do not turn right, and the counting questions keep their answers.
  BOOST_TEST(r.effect.flips.overall.share_turned_right() < 0.1);
  BOOST_TEST(r.unrelated.overall.correct_before >= 30u);
  BOOST_TEST(r.unrelated.overall.share_turned_wrong() < 0.15);
  // Every language shows the effect where it has correct validation pairs.
  for (const auto& [lang, f] : r.effect.flips.per_language)
    if (f.correct_before >= 5) BOOST_TEST(f.share_turned_wrong() > 0.5, lang);
  // The curve reaches the chosen effect at N = |planted|.
  for (const CurvePoint& p : r.curve)
    if (p.n == d.planted.size()) BOOST_TEST(p.flips.overall.turned_wrong == r.effect.flips.overall.turned_wrong);

  BOOST_TEST_MESSAGE("demo: " << r.asked.size() << " pairs, taught " << taught_ok << "/" << taught << " correct, untaught "
                              << untaught_ok << "/" << untaught << "; " << r.contrast.n_mixed_questions
                              << " mixed discovery questions; chosen turns " << r.share_turned_wrong << " of "
                              << r.effect.flips.overall.correct_before << " wrong (CI " << r.share_ci.low << ".."
                              << r.share_ci.high << "), random " << r.random_share_turned_wrong << ", popular "
                              << r.popular_share_turned_wrong << ", chosen - random CI "
                              << r.difference_vs_random_ci.low << ".." << r.difference_vs_random_ci.high
                              << "; unrelated turned wrong " << r.unrelated.overall.share_turned_wrong()
                              << "; protocol " << seconds << " s");
  for (const CurvePoint& p : r.curve) BOOST_TEST_MESSAGE("  curve N = " << p.n << ": " << p.flips.overall.share_turned_wrong());
}
