// Discovery / validation split of questions and deactivation flip counts (src/localize/localize_effect.h).
#define BOOST_TEST_MODULE localize_effect
#include <boost/test/unit_test.hpp>

#include <algorithm>
#include <cmath>
#include <random>
#include <set>
#include <string>
#include <vector>

#include "localize/localize_effect.h"
#include "util/error.h"

using namespace moetrace;
using namespace moetrace::localize;

namespace {

std::vector<std::string> make_ids(int n) {
  std::vector<std::string> ids;
  for (int i = 0; i < n; ++i) ids.push_back("q" + std::to_string(i * 7919 % 1000));
  return ids;
}

std::set<std::string> pick(const std::vector<std::string>& ids, const std::vector<std::size_t>& idx) {
  std::set<std::string> s;
  for (std::size_t i : idx) s.insert(ids.at(i));
  return s;
}

}  // namespace

BOOST_AUTO_TEST_CASE(split_is_halves_of_all_questions) {
  for (int n : {0, 1, 2, 3, 10, 41}) {
    const auto ids = make_ids(n);
    const QuestionSplit s = split_questions(ids, 7);
    BOOST_TEST(s.discovery.size() == static_cast<std::size_t>((n + 1) / 2));
    BOOST_TEST(s.validation.size() == static_cast<std::size_t>(n / 2));
    BOOST_TEST(std::is_sorted(s.discovery.begin(), s.discovery.end()));
    BOOST_TEST(std::is_sorted(s.validation.begin(), s.validation.end()));
    std::vector<std::size_t> all = s.discovery;
    all.insert(all.end(), s.validation.begin(), s.validation.end());
    std::sort(all.begin(), all.end());
    for (int i = 0; i < n; ++i) BOOST_TEST(all[i] == static_cast<std::size_t>(i));
  }
}

BOOST_AUTO_TEST_CASE(split_depends_on_ids_and_seed_only) {
  const auto ids = make_ids(40);
  const QuestionSplit a = split_questions(ids, 123);
  std::vector<std::string> shuffled = ids;
  std::mt19937 g(5);
  for (int round = 0; round < 5; ++round) {
    std::shuffle(shuffled.begin(), shuffled.end(), g);
    const QuestionSplit b = split_questions(shuffled, 123);
    BOOST_TEST(pick(shuffled, b.discovery) == pick(ids, a.discovery));
    BOOST_TEST(pick(shuffled, b.validation) == pick(ids, a.validation));
  }
  int differ = 0, in_discovery = 0;
  for (std::uint64_t seed = 0; seed < 200; ++seed) {
    const QuestionSplit c = split_questions(ids, seed);
    differ += pick(ids, c.discovery) != pick(ids, a.discovery);
    in_discovery += pick(ids, c.discovery).count(ids[0]) ? 1 : 0;
  }
  BOOST_TEST(differ >= 199);
  // One question lands in discovery about half of the time (binomial(200, 1/2): 100 +- 7).
  BOOST_TEST(in_discovery > 65);
  BOOST_TEST(in_discovery < 135);
  BOOST_CHECK_THROW(split_questions({"a", "b", "a"}, 1), InputError);
}

BOOST_AUTO_TEST_CASE(flip_counts_by_hand) {
  const Bucket S = Bucket::Success, F = Bucket::Failure;
  std::vector<PairOutcome> o = {{"q1", "en", S, F}, {"q1", "de", S, S}, {"q2", "en", S, F}, {"q2", "de", F, S},
                                {"q3", "en", F, F}, {"q3", "de", S, F}, {"q4", "en", S, S}};
  for (int round = 0; round < 3; ++round) {
    const FlipSummary s = count_flips(o);
    BOOST_TEST(s.overall.correct_before == 5u);
    BOOST_TEST(s.overall.turned_wrong == 3u);
    BOOST_TEST(s.overall.wrong_before == 2u);
    BOOST_TEST(s.overall.turned_right == 1u);
    BOOST_TEST(s.overall.share_turned_wrong() == 3.0 / 5.0);
    BOOST_TEST(s.overall.share_turned_right() == 0.5);
    BOOST_REQUIRE_EQUAL(s.per_language.size(), 2u);
    const FlipCount& en = s.per_language.at("en");
    BOOST_TEST(en.correct_before == 3u);
    BOOST_TEST(en.turned_wrong == 2u);
    BOOST_TEST(en.wrong_before == 1u);
    BOOST_TEST(en.turned_right == 0u);
    const FlipCount& de = s.per_language.at("de");
    BOOST_TEST(de.correct_before == 2u);
    BOOST_TEST(de.turned_wrong == 1u);
    BOOST_TEST(de.turned_right == 1u);
    std::reverse(o.begin(), o.end());
    std::rotate(o.begin(), o.begin() + 2, o.end());
  }
  const FlipSummary none = count_flips({{"q", "en", F, F}});
  BOOST_TEST(std::isnan(none.overall.share_turned_wrong()));
  BOOST_TEST(none.overall.share_turned_right() == 0.0);
  BOOST_TEST(std::isnan(count_flips({}).overall.share_turned_right()));
  BOOST_CHECK_THROW(count_flips({{"q", "en", S, S}, {"q", "en", S, F}}), InputError);
  BOOST_CHECK_THROW(count_flips({{"", "en", S, S}}), InputError);
  BOOST_CHECK_THROW(count_flips({{"q", "", S, S}}), InputError);
}

BOOST_AUTO_TEST_CASE(random_controls_match_layers_and_exclude_the_chosen) {
  const ExpertList chosen = {{0, 0}, {0, 1}, {2, 5}, {3, 7}, {3, 0}, {3, 3}};
  const int L = 4, E = 8;
  std::vector<int> count(L * E, 0);
  constexpr int kDraws = 2000;
  int differs = 0;
  const ExpertList first = random_layer_matched(chosen, L, E, 99, 0);
  for (std::uint32_t d = 0; d < kDraws; ++d) {
    const ExpertList c = random_layer_matched(chosen, L, E, 99, d);
    BOOST_TEST((c == random_layer_matched(chosen, L, E, 99, d)));
    differs += c != first;
    BOOST_REQUIRE_EQUAL(c.size(), chosen.size());
    BOOST_TEST(std::is_sorted(c.begin(), c.end()));
    BOOST_TEST((std::adjacent_find(c.begin(), c.end()) == c.end()));
    std::vector<int> hist(L, 0), want(L, 0);
    for (auto [l, e] : chosen) ++want[l];
    for (auto [l, e] : c) {
      ++hist[l];
      BOOST_TEST((std::find(chosen.begin(), chosen.end(), std::make_pair(l, e)) == chosen.end()));
      ++count[l * E + e];
    }
    BOOST_TEST(hist == want);
  }
  BOOST_TEST(differs > kDraws * 9 / 10);
  // Uniform over a layer's other experts: layer 0 draws 2 of 6 (expected 2000/3 = 667 each, sd 21),
  // layer 2 one of 7 (286, sd 16), layer 3 three of 5 (1200, sd 22).
  for (int e = 2; e < E; ++e) BOOST_TEST(std::abs(count[0 * E + e] - 667) < 110, "layer 0 expert " << e);
  for (int e = 0; e < E; ++e)
    if (e != 5) BOOST_TEST(std::abs(count[2 * E + e] - 286) < 80, "layer 2 expert " << e);
  for (int e : {1, 2, 4, 5, 6}) BOOST_TEST(std::abs(count[3 * E + e] - 1200) < 110, "layer 3 expert " << e);
  BOOST_TEST(count[1 * E + 0] == 0);
  BOOST_TEST((random_layer_matched({}, L, E, 1, 0).empty()));
  BOOST_TEST((random_layer_matched(chosen, L, E, 98, 0) != first));  // the seed matters (fixed pair, checked once)
  BOOST_CHECK_THROW(random_layer_matched({{4, 0}}, L, E, 1, 0), InputError);
  BOOST_CHECK_THROW(random_layer_matched({{0, 8}}, L, E, 1, 0), InputError);
  BOOST_CHECK_THROW(random_layer_matched({{0, -1}}, L, E, 1, 0), InputError);
  BOOST_CHECK_THROW(random_layer_matched({{1, 1}, {1, 1}}, L, E, 1, 0), InputError);
  BOOST_CHECK_THROW(random_layer_matched({{1, 0}, {1, 1}}, L, 3, 1, 0), InputError);  // 2 chosen, 1 other
  BOOST_TEST(random_layer_matched({{1, 0}, {1, 1}}, L, 4, 1, 0).size() == 2u);          // 2 chosen, 2 others
  BOOST_CHECK_THROW(random_layer_matched({}, 0, E, 1, 0), InputError);
}

BOOST_AUTO_TEST_CASE(popular_experts_by_frequency_with_ties) {
  // 2 layers x 3 experts.
  const std::vector<double> f = {0.1, 0.5, 0.5, 0.7, 0.5, 0.0};
  BOOST_TEST((popular_experts(f, 2, 3, 4) == ExpertList{{1, 0}, {0, 1}, {0, 2}, {1, 1}}));
  BOOST_TEST((popular_experts(f, 2, 3, 1) == ExpertList{{1, 0}}));
  BOOST_TEST(popular_experts(f, 2, 3, 100).size() == 6u);
  BOOST_TEST((popular_experts(f, 2, 3, 100).back() == std::make_pair(1, 2)));
  BOOST_TEST(popular_experts(f, 2, 3, 0).empty());
  BOOST_CHECK_THROW(popular_experts(f, 3, 3, 1), InputError);
  BOOST_CHECK_THROW(popular_experts({0.1, NAN, 0, 0, 0, 0}, 2, 3, 1), InputError);
  BOOST_CHECK_THROW(popular_experts({}, 0, 3, 1), InputError);
}

BOOST_AUTO_TEST_CASE(capped_prefixes_pass_over_full_layers) {
  const ExpertList ranked{{0, 3}, {0, 1}, {1, 2}, {0, 0}, {0, 2}, {1, 0}, {2, 1}};
  BOOST_TEST((capped_prefix(ranked, 3, 3, 4) == ExpertList{{0, 3}, {0, 1}, {1, 2}}));  // no layer full: the plain prefix
  BOOST_TEST((capped_prefix(ranked, 5, 3, 2) == ExpertList{{0, 3}, {0, 1}, {1, 2}, {1, 0}, {2, 1}}));
  BOOST_TEST((capped_prefix(ranked, 100, 3, 1) == ExpertList{{0, 3}, {1, 2}, {2, 1}}));
  BOOST_TEST(capped_prefix(ranked, 0, 3, 1).empty());
  BOOST_CHECK_THROW(capped_prefix(ranked, 3, 3, 0), InputError);
  BOOST_CHECK_THROW(capped_prefix(ranked, 7, 2, 4), InputError);  // layer 2 outside 2 layers
  // 16 experts, top-2: a set keeps 2 of every layer; the chosen set leaves as many to its controls.
  BOOST_TEST(deactivation_cap(16, 2) == 14);
  BOOST_TEST(chosen_cap(16, 2) == 8);
  BOOST_TEST(chosen_cap(8, 6) == 2);
  BOOST_TEST(chosen_cap(4, 4) == 0);
}
