// route_top_k against an independent computation: a straightforward softmax in long double, a full
// sort, and renormalisation by hand.
#define BOOST_TEST_MODULE routing
#include <boost/test/unit_test.hpp>

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>
#include <random>
#include <vector>

#include "engine/routing.h"
#include "util/error.h"

using namespace moetrace;

namespace {

struct Expected {
  std::vector<int> experts;
  std::vector<long double> weights;
};

// The reference: softmax over the unmasked experts (masked ones have probability 0), experts sorted
// by descending probability (ties to the lower index), the first k kept.
Expected reference(const std::vector<float>& row, int k, bool renormalise, const std::vector<int>& masked = {}) {
  const int E = static_cast<int>(row.size());
  std::vector<bool> off(E, false);
  for (int e : masked) off[e] = true;
  long double mx = -std::numeric_limits<long double>::infinity();
  for (int e = 0; e < E; ++e)
    if (!off[e]) mx = std::max(mx, static_cast<long double>(row[e]));
  std::vector<long double> p(E, 0.0L);
  long double sum = 0;
  for (int e = 0; e < E; ++e)
    if (!off[e]) sum += p[e] = std::exp(static_cast<long double>(row[e]) - mx);
  for (long double& v : p) v /= sum;
  std::vector<int> order(E);
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(), [&](int a, int b) { return p[a] > p[b]; });
  Expected x;
  long double top = 0;
  for (int j = 0; j < k; ++j) top += p[order[j]];
  for (int j = 0; j < k; ++j) {
    x.experts.push_back(order[j]);
    x.weights.push_back(renormalise ? p[order[j]] / top : p[order[j]]);
  }
  return x;
}

void expect_row(const Routing& r, int row, const Expected& x, double tol = 1e-7) {
  for (int j = 0; j < r.k; ++j) {
    BOOST_TEST(r.expert(row, j) == x.experts[j], "row " << row << " slot " << j);
    BOOST_TEST(std::abs(static_cast<long double>(r.weights[row * r.k + j]) - x.weights[j]) <= tol,
               "row " << row << " slot " << j << ": " << r.weights[row * r.k + j] << " vs "
                      << static_cast<double>(x.weights[j]));
  }
}

std::vector<float> random_logits(int rows, int E, unsigned seed, float scale = 3.0f) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> d(0.0f, scale);
  std::vector<float> v(static_cast<std::size_t>(rows) * E);
  for (float& x : v) x = d(rng);
  return v;
}

std::vector<float> row_of(const std::vector<float>& logits, int row, int E) {
  return {logits.begin() + static_cast<std::ptrdiff_t>(row) * E, logits.begin() + static_cast<std::ptrdiff_t>(row + 1) * E};
}

}  // namespace

BOOST_AUTO_TEST_CASE(a_hand_computed_example) {
  // logits 0, ln 2, ln 4, ln 1 -> probabilities 1/8, 2/8, 4/8, 1/8.
  const std::vector<float> logits = {0.0f, std::log(2.0f), std::log(4.0f), 0.0f};
  const Routing renorm = route_top_k(logits, 1, 4, 2, true, {});
  BOOST_TEST(renorm.k == 2);
  BOOST_TEST(renorm.expert(0, 0) == 2);
  BOOST_TEST(renorm.expert(0, 1) == 1);
  BOOST_TEST(renorm.weights[0] == 2.0f / 3.0f, boost::test_tools::tolerance(1e-6f));
  BOOST_TEST(renorm.weights[1] == 1.0f / 3.0f, boost::test_tools::tolerance(1e-6f));
  const Routing raw = route_top_k(logits, 1, 4, 2, false, {});
  BOOST_TEST(raw.weights[0] == 0.5f, boost::test_tools::tolerance(1e-6f));
  BOOST_TEST(raw.weights[1] == 0.25f, boost::test_tools::tolerance(1e-6f));
  BOOST_TEST(raw.slot_of(0, 2) == 0);
  BOOST_TEST(raw.slot_of(0, 1) == 1);
  BOOST_TEST(raw.slot_of(0, 0) == -1);
  BOOST_TEST(raw.slot_of(0, 3) == -1);
}

BOOST_AUTO_TEST_CASE(matches_a_long_double_softmax_with_and_without_renormalisation) {
  for (auto [E, k] : {std::pair{8, 2}, std::pair{16, 4}, std::pair{64, 8}, std::pair{5, 5}, std::pair{7, 1}}) {
    const int rows = 37;
    const std::vector<float> logits = random_logits(rows, E, 1000u + E * 10 + k);
    for (bool renorm : {true, false}) {
      const Routing r = route_top_k(logits, rows, E, k, renorm, {});
      BOOST_TEST_REQUIRE(r.experts.size() == static_cast<std::size_t>(rows * k));
      BOOST_TEST_REQUIRE(r.weights.size() == static_cast<std::size_t>(rows * k));
      for (int row = 0; row < rows; ++row) {
        BOOST_TEST_CONTEXT("E " << E << " k " << k << " renormalise " << renorm << " row " << row) {
          expect_row(r, row, reference(row_of(logits, row, E), k, renorm));
        }
      }
    }
  }
}

BOOST_AUTO_TEST_CASE(experts_come_in_descending_probability_and_renormalised_weights_sum_to_one) {
  const int rows = 50, E = 16, k = 4;
  const std::vector<float> logits = random_logits(rows, E, 7u);
  const Routing on = route_top_k(logits, rows, E, k, true, {});
  const Routing off = route_top_k(logits, rows, E, k, false, {});
  for (int row = 0; row < rows; ++row) {
    double sum_on = 0, sum_off = 0;
    for (int j = 0; j < k; ++j) {
      sum_on += on.weights[row * k + j];
      sum_off += off.weights[row * k + j];
      if (j > 0) {
        BOOST_TEST(on.weights[row * k + j - 1] >= on.weights[row * k + j]);
        BOOST_TEST(logits[row * E + on.expert(row, j - 1)] >= logits[row * E + on.expert(row, j)]);
      }
      BOOST_TEST(on.expert(row, j) == off.expert(row, j));  // selection does not depend on it
    }
    BOOST_TEST(sum_on == 1.0, boost::test_tools::tolerance(1e-6));
    BOOST_TEST(sum_off < 1.0);
    // No unselected expert has a larger logit than a selected one.
    const float kth = logits[row * E + on.expert(row, k - 1)];
    for (int e = 0; e < E; ++e)
      if (on.slot_of(row, e) < 0) BOOST_TEST(logits[row * E + e] <= kth);
  }
}

BOOST_AUTO_TEST_CASE(ties_go_to_the_lower_expert_index) {
  const std::vector<float> logits = {1.0f, 2.0f, 2.0f, 2.0f, 0.5f};
  const Routing r = route_top_k(logits, 1, 5, 2, true, {});
  BOOST_TEST(r.expert(0, 0) == 1);
  BOOST_TEST(r.expert(0, 1) == 2);
  BOOST_TEST(r.weights[0] == 0.5f, boost::test_tools::tolerance(1e-6f));
}

BOOST_AUTO_TEST_CASE(large_logits_do_not_overflow) {
  const std::vector<float> logits = {1000.0f, 999.0f, -1000.0f, 80.0f};
  const Routing r = route_top_k(logits, 1, 4, 2, false, {});
  const Expected x = reference(logits, 2, false);
  expect_row(r, 0, x);
  for (float w : r.weights) BOOST_TEST(std::isfinite(w));
}

BOOST_AUTO_TEST_CASE(masked_experts_are_replaced_by_the_next_ones_and_weights_renormalised) {
  const int rows = 20, E = 16, k = 4;
  const std::vector<float> logits = random_logits(rows, E, 99u);
  const Routing plain = route_top_k(logits, rows, E, k, true, {});
  // Mask each row's top-1 expert and one other (possibly unrouted) expert.
  std::vector<std::vector<int>> masked(rows);
  for (int row = 0; row < rows; ++row) masked[row] = {plain.expert(row, 0), (row * 5) % E};
  masked[3].clear();  // a row without masks
  for (bool renorm : {true, false}) {
    const Routing r = route_top_k(logits, rows, E, k, renorm, masked);
    for (int row = 0; row < rows; ++row) {
      BOOST_TEST_CONTEXT("renormalise " << renorm << " row " << row) {
        expect_row(r, row, reference(row_of(logits, row, E), k, renorm, masked[row]));
        for (int e : masked[row]) BOOST_TEST(r.slot_of(row, e) == -1);
        if (!masked[row].empty()) {
          // The former second choice is now first (unless it is masked too).
          const int second = plain.expert(row, 1);
          if (std::find(masked[row].begin(), masked[row].end(), second) == masked[row].end())
            BOOST_TEST(r.expert(row, 0) == second);
        }
      }
    }
    // Row 3 is unaffected by masks on other rows.
    for (int j = 0; j < k; ++j) BOOST_TEST(r.expert(3, j) == plain.expert(3, j));
  }
}

BOOST_AUTO_TEST_CASE(masking_an_unselected_expert_keeps_the_selection_and_renormalised_weights) {
  const int rows = 10, E = 8, k = 2;
  const std::vector<float> logits = random_logits(rows, E, 5u);
  const Routing plain = route_top_k(logits, rows, E, k, true, {});
  std::vector<std::vector<int>> masked(rows);
  for (int row = 0; row < rows; ++row)
    for (int e = 0; e < E; ++e)
      if (plain.slot_of(row, e) < 0) {
        masked[row] = {e};
        break;
      }
  const Routing r = route_top_k(logits, rows, E, k, true, masked);
  BOOST_TEST(r.experts == plain.experts);
  for (std::size_t i = 0; i < r.weights.size(); ++i)
    BOOST_TEST(r.weights[i] == plain.weights[i], boost::test_tools::tolerance(1e-6f));
  // Without renormalisation the probabilities grow (the softmax denominator lost a term).
  const Routing raw = route_top_k(logits, rows, E, k, false, {});
  const Routing raw_masked = route_top_k(logits, rows, E, k, false, masked);
  for (std::size_t i = 0; i < raw.weights.size(); ++i) BOOST_TEST(raw_masked.weights[i] > raw.weights[i]);
}

BOOST_AUTO_TEST_CASE(masking_every_expert_or_leaving_fewer_than_k_is_an_error) {
  const int E = 4, k = 2;
  const std::vector<float> logits = {0.1f, 0.2f, 0.3f, 0.4f, 1.0f, 2.0f, 3.0f, 4.0f};
  BOOST_CHECK_THROW(route_top_k(logits, 2, E, k, true, {{}, {0, 1, 2, 3}}), InternalError);
  BOOST_CHECK_THROW(route_top_k(logits, 2, E, k, true, {{0, 1, 2}, {}}), InternalError);
  BOOST_CHECK_THROW(route_top_k(logits, 2, E, k, false, {{1, 2, 3}, {}}), InternalError);
  try {
    route_top_k(logits, 2, E, k, true, {{}, {0, 1, 2, 3}});
  } catch (const InternalError& e) {
    BOOST_TEST(std::string(e.what()).find("deactivated") != std::string::npos, e.what());
  }
  // Exactly k left is fine: they are chosen, in order.
  const Routing r = route_top_k(logits, 2, E, k, true, {{0, 3}, {}});
  BOOST_TEST(r.expert(0, 0) == 2);
  BOOST_TEST(r.expert(0, 1) == 1);
}
