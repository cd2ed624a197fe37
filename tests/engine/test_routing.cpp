// Backend::route on the CPU backend (the reference op) against an independent float64 reference
// written from the definition (tests/support/routing_reference.h: softmax over the experts left,
// top-k by probability with ties to the lower index, renormalisation) and against hand-computed
// cases: ties, deactivation, non-finite logits, the grouping by expert.
#define BOOST_TEST_MODULE routing
#include <boost/test/unit_test.hpp>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <string>
#include <limits>
#include <numeric>
#include <random>
#include <stdexcept>
#include <vector>

#include "backend/backend.h"
#include "support/backend_op_check.h"
#include "support/routing_reference.h"
#include "util/error.h"

using namespace moetrace;
using test::reference_routing;
using test::ReferenceRouting;
using test::same_bits;

namespace {

std::vector<float> random_logits(int rows, int E, unsigned seed, float scale = 3.0f) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> d(0.0f, scale);
  std::vector<float> v(static_cast<std::size_t>(rows) * E);
  for (float& x : v) x = d(rng);
  return v;
}

// The op on the CPU backend; masked[row] lists the deactivated experts of each row.
RoutingPtr route_op(Backend& b, const std::vector<float>& logits, int rows, int E, int k, bool renorm,
                    const std::vector<std::vector<int>>& masked = {}, int layer = 0) {
  TensorPtr t = b.upload(logits.data(), rows, E);
  return b.route(*t, test::route_request(k, renorm, masked, layer));
}
Routing route(const std::vector<float>& logits, int rows, int E, int k, bool renorm,
              const std::vector<std::vector<int>>& masked = {}) {
  auto b = make_cpu_backend();
  return route_op(*b, logits, rows, E, k, renorm, masked)->host().top;
}

// The same experts in the same slots, and weights within float rounding of the float64 reference.
void expect_reference(const Routing& r, const ReferenceRouting& x, int rows) {
  BOOST_TEST_REQUIRE(r.k == x.k);
  BOOST_TEST_REQUIRE(r.experts.size() == static_cast<std::size_t>(rows) * r.k);
  BOOST_TEST_REQUIRE(r.weights.size() == static_cast<std::size_t>(rows) * r.k);
  for (int row = 0; row < rows; ++row)
    for (int j = 0; j < r.k; ++j) {
      BOOST_TEST(r.expert(row, j) == x.expert(row, j), "row " << row << " slot " << j);
      BOOST_TEST(std::abs(r.weights[row * r.k + j] - x.weight(row, j)) <= 1e-7,
                 "row " << row << " slot " << j << ": " << r.weights[row * r.k + j] << " vs " << x.weight(row, j));
    }
}

// The grouping must list every slot exactly once, under its own expert, slots ascending per expert.
void expect_grouping(const RoutingResult& r) {
  const RoutingTable& t = r.host();
  const int E = r.num_experts(), n = r.rows() * r.k();
  BOOST_TEST_REQUIRE(static_cast<int>(t.expert_offsets.size()) == E + 1);
  BOOST_TEST_REQUIRE(static_cast<int>(t.expert_slots.size()) == n);
  BOOST_TEST(t.expert_offsets.front() == 0);
  BOOST_TEST(t.expert_offsets.back() == n);
  std::vector<int> seen(n, 0);
  for (int e = 0; e < E; ++e)
    for (int i = t.expert_offsets[e]; i < t.expert_offsets[e + 1]; ++i) {
      const int slot = t.expert_slots[i];
      BOOST_TEST_REQUIRE((slot >= 0 && slot < n));
      BOOST_TEST(t.top.experts[slot] == e, "slot " << slot << " listed under expert " << e);
      if (i > t.expert_offsets[e]) BOOST_TEST(t.expert_slots[i - 1] < slot);
      ++seen[slot];
    }
  BOOST_TEST(std::all_of(seen.begin(), seen.end(), [](int c) { return c == 1; }));
}

}  // namespace

BOOST_AUTO_TEST_CASE(a_hand_computed_example) {
  // logits 0, ln 2, ln 4, ln 1 -> probabilities 1/8, 2/8, 4/8, 1/8.
  const std::vector<float> logits = {0.0f, std::log(2.0f), std::log(4.0f), 0.0f};
  const Routing renorm = route(logits, 1, 4, 2, true);
  BOOST_TEST(renorm.k == 2);
  BOOST_TEST(renorm.expert(0, 0) == 2);
  BOOST_TEST(renorm.expert(0, 1) == 1);
  BOOST_TEST(renorm.weights[0] == 2.0f / 3.0f, boost::test_tools::tolerance(1e-6f));
  BOOST_TEST(renorm.weights[1] == 1.0f / 3.0f, boost::test_tools::tolerance(1e-6f));
  const Routing raw = route(logits, 1, 4, 2, false);
  BOOST_TEST(raw.weights[0] == 0.5f, boost::test_tools::tolerance(1e-6f));
  BOOST_TEST(raw.weights[1] == 0.25f, boost::test_tools::tolerance(1e-6f));
  BOOST_TEST(raw.slot_of(0, 2) == 0);
  BOOST_TEST(raw.slot_of(0, 1) == 1);
  BOOST_TEST(raw.slot_of(0, 0) == -1);
  BOOST_TEST(raw.slot_of(0, 3) == -1);
}

BOOST_AUTO_TEST_CASE(the_reference_itself_on_hand_computed_rows) {
  // The oracle checked before it is trusted: probabilities 1/8, 2/8, 4/8, 1/8; ties; masks; errors.
  const std::vector<float> logits = {0.0f, std::log(2.0f), std::log(4.0f), 0.0f};
  const ReferenceRouting x = reference_routing(logits, 1, 4, 3, false);
  BOOST_TEST(x.experts == (std::vector<int>{2, 1, 0}));
  BOOST_TEST(x.weight(0, 0) == 0.5, boost::test_tools::tolerance(1e-7));
  BOOST_TEST(x.weight(0, 2) == 0.125, boost::test_tools::tolerance(1e-7));
  const ReferenceRouting m = reference_routing(logits, 1, 4, 2, true, {{2}});
  BOOST_TEST(m.experts == (std::vector<int>{1, 0}));  // 0 and 3 tie at 1/4: the lower index
  BOOST_TEST(m.weight(0, 0) == 2.0 / 3.0, boost::test_tools::tolerance(1e-7));
  BOOST_CHECK_THROW(reference_routing({0.0f, NAN}, 1, 2, 1, false), std::domain_error);
  BOOST_CHECK_THROW(reference_routing({0.0f, 1.0f}, 1, 2, 2, false, {{0}}), std::length_error);
}

BOOST_AUTO_TEST_CASE(matches_the_float64_reference_with_and_without_renormalisation) {
  auto b = make_cpu_backend();
  // k == E included; scale 0.01 makes near-ties, the exact ties are below.
  for (auto [E, k] : {std::pair{8, 2}, std::pair{16, 4}, std::pair{64, 8}, std::pair{128, 8}, std::pair{5, 5},
                      std::pair{7, 1}}) {
    for (float scale : {3.0f, 0.01f}) {
      const int rows = 41;
      const std::vector<float> logits = random_logits(rows, E, 77u + E * 3 + k, scale);
      for (bool renorm : {true, false}) {
        BOOST_TEST_CONTEXT("E " << E << " k " << k << " scale " << scale << " renormalise " << renorm) {
          const RoutingPtr r = route_op(*b, logits, rows, E, k, renorm);
          BOOST_TEST(r->rows() == rows);
          BOOST_TEST(r->k() == k);
          expect_reference(r->host().top, reference_routing(logits, rows, E, k, renorm), rows);
          expect_grouping(*r);
        }
      }
    }
  }
}

BOOST_AUTO_TEST_CASE(experts_come_in_descending_probability_and_renormalised_weights_sum_to_one) {
  const int rows = 50, E = 16, k = 4;
  const std::vector<float> logits = random_logits(rows, E, 7u);
  const Routing on = route(logits, rows, E, k, true);
  const Routing off = route(logits, rows, E, k, false);
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

BOOST_AUTO_TEST_CASE(exact_ties_go_to_the_lower_expert_index) {
  auto b = make_cpu_backend();
  // Row 0: three-way tie for the top; row 1: all equal (k == E keeps index order); row 2: a tie
  // at the k-th place between experts 3 and 1 -> 1 wins.
  const int E = 5;
  const std::vector<float> logits = {1.0f, 2.0f, 2.0f, 2.0f, 0.5f,  //
                                     0.0f, 0.0f, 0.0f, 0.0f, 0.0f,  //
                                     0.0f, 1.0f, 3.0f, 1.0f, -2.0f};
  const RoutingPtr r2 = route_op(*b, logits, 3, E, 2, true);
  const Routing& t = r2->host().top;
  BOOST_TEST(t.expert(0, 0) == 1);
  BOOST_TEST(t.expert(0, 1) == 2);
  BOOST_TEST(t.weights[0] == 0.5f, boost::test_tools::tolerance(1e-6f));
  BOOST_TEST(t.expert(1, 0) == 0);
  BOOST_TEST(t.expert(1, 1) == 1);
  BOOST_TEST(t.expert(2, 0) == 2);
  BOOST_TEST(t.expert(2, 1) == 1);
  expect_reference(t, reference_routing(logits, 3, E, 2, true), 3);
  const RoutingPtr all = route_op(*b, logits, 3, E, E, false);
  for (int j = 0; j < E; ++j) BOOST_TEST(all->host().top.expert(1, j) == j);
  expect_reference(all->host().top, reference_routing(logits, 3, E, E, false), 3);
  expect_grouping(*all);
}

BOOST_AUTO_TEST_CASE(large_logits_do_not_overflow) {
  const std::vector<float> logits = {1000.0f, 999.0f, -1000.0f, 80.0f};
  const Routing r = route(logits, 1, 4, 2, false);
  expect_reference(r, reference_routing(logits, 1, 4, 2, false), 1);
  for (float w : r.weights) BOOST_TEST(std::isfinite(w));
}

BOOST_AUTO_TEST_CASE(masked_experts_are_replaced_by_the_next_ones_and_weights_renormalised) {
  auto b = make_cpu_backend();
  const int rows = 30, E = 16, k = 4;
  const std::vector<float> logits = random_logits(rows, E, 4242u);
  const ReferenceRouting plain = reference_routing(logits, rows, E, k, true);
  // Mask each row's top-1 expert and one other (possibly unrouted) expert.
  std::vector<std::vector<int>> masked(rows);
  for (int row = 0; row < rows; ++row) {
    if (row % 3 == 0) continue;                           // rows without masks
    masked[row] = {plain.expert(row, 0), (row * 7) % E};  // the top-1 and another expert
    if (row % 5 == 0) masked[row].push_back(plain.expert(row, 0));  // duplicates are harmless
  }
  masked[4] = {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11};  // exactly k left: all chosen
  for (bool renorm : {true, false}) {
    BOOST_TEST_CONTEXT("renormalise " << renorm) {
      const RoutingPtr r = route_op(*b, logits, rows, E, k, renorm, masked);
      const Routing& t = r->host().top;
      expect_reference(t, reference_routing(logits, rows, E, k, renorm, masked), rows);
      for (int row = 0; row < rows; ++row) {
        for (int e : masked[row]) BOOST_TEST(t.slot_of(row, e) == -1);
        // Where the top-1 is masked, the former second choice is now first (unless it is masked too).
        auto is_masked = [&](int e) { return std::find(masked[row].begin(), masked[row].end(), e) != masked[row].end(); };
        if (is_masked(plain.expert(row, 0)) && !is_masked(plain.expert(row, 1)))
          BOOST_TEST(t.expert(row, 0) == plain.expert(row, 1));
      }
      for (int j = 0; j < k; ++j) BOOST_TEST(t.expert(3, j) == plain.expert(3, j));  // unmasked rows keep theirs
      expect_grouping(*r);
    }
  }
}

BOOST_AUTO_TEST_CASE(masking_an_unselected_expert_keeps_the_selection_and_renormalised_weights) {
  const int rows = 10, E = 8, k = 2;
  const std::vector<float> logits = random_logits(rows, E, 5u);
  const Routing plain = route(logits, rows, E, k, true);
  std::vector<std::vector<int>> masked(rows);
  for (int row = 0; row < rows; ++row)
    for (int e = 0; e < E; ++e)
      if (plain.slot_of(row, e) < 0) {
        masked[row] = {e};
        break;
      }
  const Routing r = route(logits, rows, E, k, true, masked);
  BOOST_TEST(r.experts == plain.experts);
  for (std::size_t i = 0; i < r.weights.size(); ++i)
    BOOST_TEST(r.weights[i] == plain.weights[i], boost::test_tools::tolerance(1e-6f));
  // Without renormalisation the probabilities grow (the softmax denominator lost a term).
  const Routing raw = route(logits, rows, E, k, false);
  const Routing raw_masked = route(logits, rows, E, k, false, masked);
  for (std::size_t i = 0; i < raw.weights.size(); ++i) BOOST_TEST(raw_masked.weights[i] > raw.weights[i]);
}

BOOST_AUTO_TEST_CASE(exactly_k_experts_left_are_all_chosen_in_order) {
  const int E = 4, k = 2;
  const std::vector<float> logits = {0.1f, 0.2f, 0.3f, 0.4f, 1.0f, 2.0f, 3.0f, 4.0f};
  const Routing r = route(logits, 2, E, k, true, {{0, 3}, {}});
  BOOST_TEST(r.expert(0, 0) == 2);
  BOOST_TEST(r.expert(0, 1) == 1);
  expect_reference(r, reference_routing(logits, 2, E, k, true, {{0, 3}, {}}), 2);
}

BOOST_AUTO_TEST_CASE(the_backend_op_rejects_non_finite_logits_and_too_few_experts_naming_layer_and_row) {
  auto b = make_cpu_backend();
  const int E = 4, k = 2;
  for (float bad : {std::numeric_limits<float>::quiet_NaN(), std::numeric_limits<float>::infinity(),
                    -std::numeric_limits<float>::infinity()}) {
    std::vector<float> logits = {0.1f, 0.2f, 0.3f, 0.4f, 1.0f, 2.0f, 3.0f, 4.0f};
    logits[6] = bad;
    try {
      route_op(*b, logits, 2, E, k, true, {}, 5);
      BOOST_ERROR("no error for a non-finite logit");
    } catch (const InputError& e) {
      const std::string what = e.what();
      BOOST_TEST(what.find("non-finite router logit") != std::string::npos, what);
      BOOST_TEST(what.find("layer 5, row 1") != std::string::npos, what);
    }
  }
  const std::vector<float> logits = {0.1f, 0.2f, 0.3f, 0.4f, 1.0f, 2.0f, 3.0f, 4.0f};
  for (const std::vector<std::vector<int>>& masked :
       {std::vector<std::vector<int>>{{}, {0, 1, 2}}, std::vector<std::vector<int>>{{}, {0, 1, 2, 3}}}) {
    try {
      route_op(*b, logits, 2, E, k, false, masked, 3);
      BOOST_ERROR("no error for too few experts");
    } catch (const InputError& e) {
      const std::string what = e.what();
      BOOST_TEST(what.find("fewer than k = 2 experts remain") != std::string::npos, what);
      BOOST_TEST(what.find("layer 3, row 1") != std::string::npos, what);
    }
  }
}

BOOST_AUTO_TEST_CASE(experts_run_from_the_routing_match_hand_built_tasks) {
  // run_routed_experts (tasks from the routing's grouping) against run_experts with tasks built
  // the way the engine built them before: per local expert, rows ascending.
  auto b = make_cpu_backend();
  const int rows = 9, E = 6, k = 2, H = 4, I = 3;
  std::mt19937 rng(3);
  std::normal_distribution<float> d(0.f, 1.f);
  auto random = [&](int n) {
    std::vector<float> v(n);
    for (float& x : v) x = d(rng);
    return v;
  };
  std::vector<std::vector<float>> host_w;
  host_w.reserve(64);  // views point into it
  std::vector<WeightPtr> weights;
  auto weight = [&](int r, int c) {
    host_w.push_back(random(r * c));
    TensorView v;
    v.name = "w";
    v.dtype = DType::F32;
    v.shape = {r, c};
    v.data = reinterpret_cast<const std::byte*>(host_w.back().data());
    weights.push_back(b->upload_weight(v));
    return weights.back().get();
  };
  std::vector<ExpertRef> experts(E);
  for (int e = 1; e < E - 1; ++e) experts[e] = {weight(I, H), weight(I, H), weight(H, I)};  // 0 and E-1 elsewhere
  const std::vector<float> xs = random(rows * H);
  TensorPtr x = b->upload(xs.data(), rows, H);
  const std::vector<float> logits = random_logits(rows, E, 11u);
  const RoutingPtr r = route_op(*b, logits, rows, E, k, true);
  TensorPtr got = b->zeros(rows * k, H);
  b->run_routed_experts(*x, *r, experts, *got);

  const Routing& old = r->host().top;  // tasks built from the per-row table, not from its grouping
  std::vector<ExpertTask> tasks;
  for (int e = 1; e < E - 1; ++e) {
    ExpertTask t{experts[e].gate, experts[e].up, experts[e].down, {}, {}, {}};
    for (int row = 0; row < rows; ++row)
      for (int j = 0; j < k; ++j)
        if (old.expert(row, j) == e) {
          t.in_rows.push_back(row);
          t.out_rows.push_back(row * k + j);
          t.weights.push_back(old.weights[row * k + j]);
        }
    if (!t.in_rows.empty()) tasks.push_back(std::move(t));
  }
  TensorPtr want = b->zeros(rows * k, H);
  b->run_experts(*x, tasks, *want);
  std::vector<float> g(rows * k * H), w(rows * k * H);
  b->download(*got, g.data());
  b->download(*want, w.data());
  BOOST_TEST(same_bits(g, w));
  // Slots of experts 0 and E-1 (held elsewhere) stay exactly zero.
  for (int slot = 0; slot < rows * k; ++slot)
    if (old.experts[slot] == 0 || old.experts[slot] == E - 1)
      for (int h = 0; h < H; ++h) BOOST_TEST(g[slot * H + h] == 0.0f);
}
