// The protocol's selection rules on small matrices whose answers are worked out by hand.
#define BOOST_TEST_MODULE selection
#include <boost/test/unit_test.hpp>

#include <cmath>
#include <set>

#include "protocols/case_scan.h"
#include "protocols/selection.h"

using namespace moetrace;

BOOST_AUTO_TEST_CASE(layer_selection_uses_only_discovery_rows_and_skips_nan) {
  Matrix2 m(4, 3, 0.0);
  // rows 0,1 discovery; rows 2,3 validation (where layer 0 would win).
  double v[4][3] = {{0.1, 0.5, NAN}, {0.3, 0.7, 0.2}, {9, 0, 0}, {9, 0, 0}};
  for (int r = 0; r < 4; ++r)
    for (int c = 0; c < 3; ++c) m.at(r, c) = v[r][c];
  BOOST_TEST(select_best_column(m, {0, 1}) == 1);
  BOOST_TEST(column_mean(m, 2, {0, 1}) == 0.2);  // the NaN row is skipped
  BOOST_TEST(select_best_column(m, {2, 3}) == 0);
}

BOOST_AUTO_TEST_CASE(candidates_need_the_threshold_count_and_inactive_rescue_counts_as_zero) {
  // 4 discovery cases, 3 experts. Expert 0 active in 2/4 with rescue 1 each -> mean 0.5 over all.
  // Expert 1 active in 4/4 with rescue 0.4 -> mean 0.4. Expert 2 active in 1/4 with rescue 10.
  Matrix2 rescue(4, 3, NAN), active(4, 3, 0.0);
  for (int r = 0; r < 4; ++r) {
    active.at(r, 1) = 1;
    rescue.at(r, 1) = 0.4;
  }
  for (int r : {0, 1}) {
    active.at(r, 0) = 1;
    rescue.at(r, 0) = 1.0;
  }
  active.at(3, 2) = 1;
  rescue.at(3, 2) = 10.0;
  const std::vector<int> rows{0, 1, 2, 3};
  BOOST_TEST(expert_candidates(active, rows, 0.5) == (std::vector<int>{0, 1}));
  BOOST_TEST(expert_candidates(active, rows, 0.75) == (std::vector<int>{1}));
  BOOST_TEST(expert_candidates(active, rows, 0.25) == (std::vector<int>{0, 1, 2}));
  BOOST_TEST(select_expert(rescue, active, rows, {0, 1}) == 0);
  BOOST_TEST(select_expert(rescue, active, rows, {1}) == 1);
  // The mean runs over all rows with 0 where inactive: expert 2 scores 10 / 4 = 2.5, not 10.
  BOOST_TEST(select_expert(rescue, active, rows, {0, 1, 2}) == 2);
  rescue.at(3, 2) = 1.9;  // 1.9 / 4 = 0.475 < 0.5: now expert 0 wins, though 1.9 > 1.0 where active
  BOOST_TEST(select_expert(rescue, active, rows, {0, 1, 2}) == 0);
  BOOST_TEST(select_expert(rescue, active, rows, {}) == -1);
}

BOOST_AUTO_TEST_CASE(controls_sample_other_active_experts_and_match_gates) {
  const std::vector<double> rescue{0.9, 0.1, NAN, 0.3, 0.5};
  const std::vector<double> active{1, 1, 0, 1, 1};
  const std::vector<double> weight{0.4, 0.1, 0.0, 0.35, 0.15};
  // All three others when at most 3 are sampled: mean of 0.1, 0.3, 0.5.
  const ExpertControls all = expert_controls(rescue, active, weight, 0, 3, 0, 42);
  BOOST_TEST(all.sampled == 0.3, boost::test_tools::tolerance(1e-12));
  BOOST_TEST(all.gate_matched_expert == 3);  // |0.35 - 0.4| is the smallest gap
  BOOST_TEST(all.gate_matched == 0.3);
  // Two of three: a reproducible subset, the same for the same (seed, case).
  const ExpertControls a = expert_controls(rescue, active, weight, 0, 2, 7, 42);
  const ExpertControls b = expert_controls(rescue, active, weight, 0, 2, 7, 42);
  BOOST_TEST(a.sampled == b.sampled);
  const std::set<double> pair_means{(0.1 + 0.3) / 2, (0.1 + 0.5) / 2, (0.3 + 0.5) / 2};
  bool found = false;
  for (double m : pair_means) found |= std::abs(m - a.sampled) < 1e-12;
  BOOST_TEST(found);
  // Not clean-active: no controls.
  BOOST_TEST(std::isnan(expert_controls(rescue, active, weight, 2, 3, 0, 1).sampled));
}

BOOST_AUTO_TEST_CASE(splits_are_halves_reproducible_and_seed_dependent) {
  std::vector<int> a1, b1, a2, b2, a3, b3;
  split_halves(101, 0, a1, b1);
  split_halves(101, 0, a2, b2);
  split_halves(101, 1, a3, b3);
  BOOST_TEST(a1.size() == 51u);
  BOOST_TEST(b1.size() == 50u);
  BOOST_TEST(a1 == a2);
  BOOST_TEST(a1 != a3);
  std::set<int> all(a1.begin(), a1.end());
  all.insert(b1.begin(), b1.end());
  BOOST_TEST(all.size() == 101u);
}

BOOST_AUTO_TEST_CASE(filters_follow_the_protocol_thresholds) {
  BOOST_TEST(passes_filter(FilterKind::Strict, 1.0, 0.5));
  BOOST_TEST(!passes_filter(FilterKind::Strict, 0.99, -5));
  BOOST_TEST(!passes_filter(FilterKind::Strict, 2.0, 1.6));
  BOOST_TEST(passes_filter(FilterKind::Relaxed, 0.5, 0.25));
  BOOST_TEST(!passes_filter(FilterKind::Relaxed, 0.49, -1));
}

BOOST_AUTO_TEST_CASE(noise_depends_only_on_seed_case_and_sample) {
  const auto a = subject_noise(0, 17, 0, 3, 8, 2.0);
  const auto b = subject_noise(0, 17, 0, 3, 8, 2.0);
  const auto c = subject_noise(0, 17, 1, 3, 8, 2.0);
  const auto d = subject_noise(0, 18, 0, 3, 8, 2.0);
  const auto half = subject_noise(0, 17, 0, 3, 8, 1.0);
  BOOST_TEST(a == b);
  BOOST_TEST(a != c);
  BOOST_TEST(a != d);
  for (std::size_t i = 0; i < a.size(); ++i) BOOST_TEST(a[i] == 2.0f * half[i]);
}

// The tie rule: layers within tie_tolerance x max|mean| of the best are tied and the earliest wins,
// so that float rounding (here 2e-7 on a curve of scale 1) never decides the pick.
BOOST_AUTO_TEST_CASE(layers_tied_within_the_tolerance_select_the_earliest_and_are_all_reported) {
  const std::vector<double> means{0.1, 0.9999998, 0.3, 1.0, 0.5};
  const LayerChoice c = choose_layer(means, 2.0, 1e-6);
  BOOST_TEST(c.layer == 1);
  BOOST_TEST(c.tied == (std::vector<int>{1, 3}));
  BOOST_TEST(!c.flat);
  BOOST_TEST(!c.zero);
  BOOST_TEST(!c.no_rescue);
  // With a zero tolerance the strict maximum wins.
  BOOST_TEST(choose_layer(means, 2.0, 0).layer == 3);
  const auto w = layer_choice_warnings(c, means);
  BOOST_TEST_REQUIRE(w.size() == 1u);
  BOOST_TEST(w[0].find("layers 1, 3 are tied") != std::string::npos, w[0]);
  // select_best_column follows the same rule.
  Matrix2 m(1, 5, 0.0);
  for (int l = 0; l < 5; ++l) m.at(0, l) = means[l];
  BOOST_TEST(select_best_column(m, {0}, 1e-6) == 1);
}

BOOST_AUTO_TEST_CASE(a_near_tie_outside_the_tolerance_is_warned_about_but_not_tied) {
  const std::vector<double> means{0.995, 1.0, 0.2};
  const LayerChoice c = choose_layer(means, 2.0, 1e-6);
  BOOST_TEST(c.layer == 1);
  BOOST_TEST(c.tied == (std::vector<int>{1}));
  BOOST_TEST(c.near_tied == (std::vector<int>{0}));
  const auto w = layer_choice_warnings(c, means);
  BOOST_TEST_REQUIRE(w.size() == 1u);
  BOOST_TEST(w[0].find("near-tie") != std::string::npos, w[0]);
}

BOOST_AUTO_TEST_CASE(a_flat_curve_and_a_zero_curve_are_flagged) {
  // site = "hidden" with a full window: every layer the same rescue.
  const std::vector<double> flat{0.7, 0.7, 0.7 + 1e-9, 0.7};
  const LayerChoice f = choose_layer(flat, 2.0, 1e-6);
  BOOST_TEST(f.flat);
  BOOST_TEST(!f.zero);
  BOOST_TEST(f.layer == 0);
  BOOST_TEST(f.tied.size() == 4u);
  const auto fw = layer_choice_warnings(f, flat);
  BOOST_TEST_REQUIRE(fw.size() == 1u);
  BOOST_TEST(fw[0].find("flat") != std::string::npos, fw[0]);
  // positions = "last_subject" on a model that reads only the final position: every layer ~0.
  const std::vector<double> zero{0.0, 1e-12, -1e-12, 0.0};
  const LayerChoice z = choose_layer(zero, 2.0, 1e-6);
  BOOST_TEST(z.zero);
  BOOST_TEST(z.no_rescue);
  const auto zw = layer_choice_warnings(z, zero);
  BOOST_TEST_REQUIRE(!zw.empty());
  BOOST_TEST(zw[0].find("zero") != std::string::npos, zw[0]);
  // A curve whose best layer is negative has no rescue at the selection although it is not zero.
  const LayerChoice neg = choose_layer({-0.5, -0.2, -0.9}, 2.0, 1e-6);
  BOOST_TEST(neg.layer == 1);
  BOOST_TEST(neg.no_rescue);
  BOOST_TEST(!neg.zero);
  // Every mean NaN: no layer.
  BOOST_TEST(choose_layer({NAN, NAN}, 1.0).layer == -1);
}
