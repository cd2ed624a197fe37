// The localisation protocol core (src/protocols/localize_protocol.h) on a fixture model with a word
// tokenizer: every number equals the composition of the pieces done by hand (ask, split, contrast
// of the discovery pairs, re-ask of the validation pairs under the chosen, popular and random sets,
// flip counts, bootstrap), and the result does not depend on prompts per engine call.
#define BOOST_TEST_MODULE localize_protocol
#include <boost/test/unit_test.hpp>

#include <algorithm>
#include <cmath>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "backend/backend.h"
#include "engine/device_model.h"
#include "model/model_weights.h"
#include "protocols/localize_protocol.h"
#include "support/test_paths.h"
#include "word_model.h"
#include "util/error.h"

using namespace moetrace;
using namespace moetrace::localize;

namespace {

struct Fixture : test::WordModel {
  explicit Fixture(const std::string& m) : WordModel(m, -1) {}  // no line feed token
};

// 8 questions in en, fr, de with different prompts; en and fr accept what the model says, de an
// answer it never says: every question is mixed.
QuestionSet make_questions(Fixture& f, const AskOptions& ask) {
  QuestionSet qs;
  qs.languages = {"en", "fr", "de"};
  for (int q = 0; q < 8; ++q) {
    Question question;
    question.id = "q" + std::to_string(q);
    for (int l = 0; l < 3; ++l) {
      LanguageEntry e;
      e.prompt = e.question = "w" + std::to_string(20 + 31 * q + 7 * l) + " w" + std::to_string(300 + q * 11 + l) +
                              " w" + std::to_string(100 + 13 * l);
      e.answers = {"w1 w1 w1 w1"};
      e.normalised_answers = {normalise_answer(e.answers[0], qs.languages[l])};
      question.entries.push_back(e);
    }
    qs.questions.push_back(question);
  }
  const auto said = ask_questions(*f.engine, f.tok, qs, {}, ask);
  for (const AskedPair& p : said)
    if (p.language < 2 && !p.output.empty()) {
      LanguageEntry& e = qs.questions[p.question].entries[p.language];
      e.answers = {p.output};
      e.normalised_answers = {normalise_answer(p.output, qs.languages[p.language])};
    }
  return qs;
}

LocalizeOptions options() {
  LocalizeOptions o;
  o.ask.max_new_tokens = 3;
  o.ask.eos_ids = {2};
  o.ask.add_special_tokens = false;
  o.contrast.top_n = 3;
  o.contrast.sign_flips = 200;
  o.contrast.seed = 11;
  o.seed = 5;
  o.control_draws = 3;
  o.bootstrap_resamples = 500;
  return o;
}

}  // namespace

BOOST_AUTO_TEST_CASE(protocol_equals_its_pieces) {
  for (const std::string& m : {"qwen3moe-tiny", "olmoe-tiny"}) {
    Fixture f(m);
    const ModelConfig& c = f.weights.config;
    LocalizeOptions o = options();
    const QuestionSet qs = make_questions(f, o.ask);
    o.curve_n = {1, 3, 5};
    o.unrelated = &qs;  // any question set serves as "unrelated" for checking the plumbing
    const LocalizationResult r = run_localization(*f.engine, f.tok, qs, o);

    // Asked: every pair, with routing, the buckets as designed where the model said something.
    AskOptions ask = o.ask;
    ask.capture_routing = true;
    const auto asked = ask_questions(*f.engine, f.tok, qs, {}, ask);
    BOOST_REQUIRE_EQUAL(r.asked.size(), 24u);
    std::size_t successes = 0;
    for (std::size_t i = 0; i < asked.size(); ++i) {
      BOOST_TEST((r.asked[i].bucket == asked[i].bucket));
      BOOST_TEST(r.asked[i].routing.prob_mean == asked[i].routing.prob_mean);
      if (asked[i].language == 2) BOOST_TEST((asked[i].bucket == Bucket::Failure));
      successes += asked[i].bucket == Bucket::Success;
    }
    BOOST_TEST(successes >= 8u, m << ": too few successes for a meaningful test");

    // Split and pairs.
    std::vector<std::string> ids;
    for (const Question& q : qs.questions) ids.push_back(q.id);
    BOOST_TEST(r.split.discovery.size() == 4u);
    BOOST_TEST(r.split.validation.size() == 4u);
    ContrastInput input{c.num_layers, c.num_experts, {}};
    std::vector<std::size_t> validation;
    for (std::size_t i = 0; i < asked.size(); ++i) {
      const bool disc = std::count(r.split.discovery.begin(), r.split.discovery.end(), asked[i].question) > 0;
      if (disc) input.pairs.push_back(to_contrast_pair(qs, asked[i], RoutingStatistic::ProbMean));
      else validation.push_back(i);
    }
    BOOST_TEST(r.validation_pairs == validation);

    // Contrast of the discovery pairs and the chosen experts.
    const ContrastResult cr = contrast_experts(input, o.contrast);
    BOOST_TEST(r.contrast.top_global == cr.top_global);
    BOOST_REQUIRE_EQUAL(r.chosen.size(), 3u);
    for (std::size_t k = 0; k < 3; ++k) {
      BOOST_TEST(r.chosen[k].first == cr.experts[cr.top_global[k]].layer);
      BOOST_TEST(r.chosen[k].second == cr.experts[cr.top_global[k]].expert);
      BOOST_TEST(r.contrast.experts[cr.top_global[k]].p == cr.experts[cr.top_global[k]].p);
    }

    // Re-asking under the chosen experts, by hand.
    auto by_hand = [&](const ExpertList& set) {
      const Deactivation d(set.begin(), set.end());
      AskOptions a = o.ask;
      a.deactivation = &d;
      std::vector<std::pair<std::size_t, std::size_t>> pairs;
      for (std::size_t i : validation) pairs.emplace_back(asked[i].question, asked[i].language);
      const auto after = ask_questions(*f.engine, f.tok, qs, pairs, a);
      std::vector<PairOutcome> out;
      for (std::size_t j = 0; j < validation.size(); ++j)
        out.push_back({qs.questions[after[j].question].id, qs.languages[after[j].language], asked[validation[j]].bucket,
                       after[j].bucket});
      return count_flips(out);
    };
    auto same_flips = [](const FlipSummary& a, const FlipSummary& b) {
      auto eq = [](const FlipCount& x, const FlipCount& y) {
        return x.correct_before == y.correct_before && x.turned_wrong == y.turned_wrong &&
               x.wrong_before == y.wrong_before && x.turned_right == y.turned_right;
      };
      if (!eq(a.overall, b.overall) || a.per_language.size() != b.per_language.size()) return false;
      for (const auto& [l, x] : a.per_language)
        if (!b.per_language.count(l) || !eq(x, b.per_language.at(l))) return false;
      return true;
    };
    BOOST_TEST(same_flips(r.effect.flips, by_hand(r.chosen)));
    BOOST_TEST(r.effect.turned_wrong.size() == r.effect.flips.overall.correct_before);
    BOOST_TEST(r.share_turned_wrong == r.effect.flips.overall.share_turned_wrong());

    // The curve: top 1, 3 (the chosen set) and 5 of the ranking.
    BOOST_REQUIRE_EQUAL(r.curve.size(), 3u);
    ContrastOptions five = o.contrast;
    five.top_n = 5;
    const ContrastResult cr5 = contrast_experts(input, five);
    for (std::size_t k = 0; k < 3; ++k) {
      const std::size_t n = o.curve_n[k];
      ExpertList top;
      for (std::size_t i = 0; i < n; ++i) top.emplace_back(cr5.experts[cr5.top_global[i]].layer, cr5.experts[cr5.top_global[i]].expert);
      BOOST_TEST(r.curve[k].n == n);
      BOOST_TEST(same_flips(r.curve[k].flips, by_hand(top)), m << " curve N = " << n);
    }
    BOOST_TEST(same_flips(r.curve[1].flips, r.effect.flips));
    // Specificity: the unrelated set's pairs before and after the chosen deactivation.
    {
      const Deactivation d(r.chosen.begin(), r.chosen.end());
      AskOptions plain = o.ask, masked = o.ask;
      masked.deactivation = &d;
      const auto before = ask_questions(*f.engine, f.tok, qs, {}, plain), after = ask_questions(*f.engine, f.tok, qs, {}, masked);
      std::vector<PairOutcome> out;
      for (std::size_t j = 0; j < before.size(); ++j)
        out.push_back({qs.questions[before[j].question].id, qs.languages[before[j].language], before[j].bucket, after[j].bucket});
      BOOST_TEST(same_flips(r.unrelated, count_flips(out)));
      BOOST_TEST(r.unrelated.overall.correct_before + r.unrelated.overall.wrong_before == 24u);
    }

    // Popular control: the most selected experts over the discovery pairs.
    std::vector<double> freq(static_cast<std::size_t>(c.num_layers) * c.num_experts, 0.0);
    std::size_t n_disc = 0;
    for (const AskedPair& p : asked)
      if (std::count(r.split.discovery.begin(), r.split.discovery.end(), p.question)) {
        for (std::size_t k = 0; k < freq.size(); ++k) freq[k] += p.routing.selected_mean[k];
        ++n_disc;
      }
    for (double& x : freq) x /= static_cast<double>(n_disc);
    BOOST_TEST((r.popular.experts == popular_experts(freq, c.num_layers, c.num_experts, 3)));
    BOOST_TEST(same_flips(r.popular.flips, by_hand(r.popular.experts)));

    // Random controls: layer-matched draws, their flips, and the per-pair mean.
    BOOST_REQUIRE_EQUAL(r.random.size(), 3u);
    std::vector<double> mean_random(r.effect.turned_wrong.size(), 0.0);
    for (const DeactivationEffect& e : r.random) {
      std::map<int, int> h1, h2;
      for (auto [l, x] : e.experts) ++h1[l];
      for (auto [l, x] : r.chosen) ++h2[l];
      BOOST_TEST((h1 == h2));
      BOOST_TEST(same_flips(e.flips, by_hand(e.experts)));
      for (std::size_t j = 0; j < mean_random.size(); ++j) mean_random[j] += e.turned_wrong[j] / 3.0;
    }
    double s = 0;
    for (double x : mean_random) s += x;
    BOOST_TEST(std::abs(r.random_share_turned_wrong - s / static_cast<double>(mean_random.size())) <= 1e-12);
    BOOST_TEST(r.share_ci.low <= r.share_ci.high);
    BOOST_TEST(r.share_ci.low >= 0.0);
    BOOST_TEST(r.share_ci.high <= 1.0);
    BOOST_TEST(r.difference_vs_random_ci.low >= -1.0);
    BOOST_TEST(r.difference_vs_random_ci.high <= 1.0);

    BOOST_TEST_MESSAGE(m << ": " << successes << " of 24 pairs correct; chosen set turns " << r.share_turned_wrong
                          << " of correct validation pairs wrong (CI " << r.share_ci.low << ".." << r.share_ci.high
                          << "), random " << r.random_share_turned_wrong << ", popular " << r.popular_share_turned_wrong);
    // Prompts per call change nothing.
    LocalizeOptions o2 = o;
    o2.ask.prompts_per_call = 1;
    const LocalizationResult r2 = run_localization(*f.engine, f.tok, qs, o2);
    BOOST_TEST((r2.chosen == r.chosen));
    BOOST_TEST(r2.effect.turned_wrong == r.effect.turned_wrong);
    BOOST_TEST(r2.share_ci.low == r.share_ci.low);
    BOOST_TEST(r2.difference_vs_random_ci.high == r.difference_vs_random_ci.high);
    for (std::size_t d = 0; d < 3; ++d) BOOST_TEST((r2.random[d].experts == r.random[d].experts));
  }
}

BOOST_AUTO_TEST_CASE(bad_options) {
  Fixture f("olmoe-tiny");
  LocalizeOptions o = options();
  const QuestionSet qs = make_questions(f, o.ask);
  const Deactivation d = {{0, 0}};
  LocalizeOptions a = o;
  a.ask.deactivation = &d;
  BOOST_CHECK_THROW(run_localization(*f.engine, f.tok, qs, a), InputError);
  LocalizeOptions b = o;
  b.control_draws = 0;
  BOOST_CHECK_THROW(run_localization(*f.engine, f.tok, qs, b), InputError);
  LocalizeOptions c = o;
  c.bootstrap_resamples = 0;
  BOOST_CHECK_THROW(run_localization(*f.engine, f.tok, qs, c), InputError);
  for (std::vector<std::size_t> curve : {std::vector<std::size_t>{0, 1}, {2, 2}, {3, 1}}) {
    LocalizeOptions e = o;
    e.curve_n = curve;
    BOOST_CHECK_THROW(run_localization(*f.engine, f.tok, qs, e), InputError);
  }
}
