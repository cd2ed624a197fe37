// route_top_k (the engine's former host routing, kept as a reference) against an independent
// computation: a straightforward softmax in long double, a full sort, and renormalisation by hand.
// Then Backend::route (the CPU reference op) against route_top_k, bit for bit.
#define BOOST_TEST_MODULE routing
#include <boost/test/unit_test.hpp>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <string>
#include <limits>
#include <numeric>
#include <random>
#include <vector>

#include "backend/backend.h"
#include "support/backend_op_check.h"
#include "support/host_routing.h"
#include "util/error.h"

using namespace moetrace;
using test::same_bits;

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

// ---- Backend::route (the CPU reference op) against the former host routing ------------------------

namespace {

// The op on the CPU backend, with the per-row masks of route_top_k.
RoutingPtr route_op(Backend& b, const std::vector<float>& logits, int rows, int E, int k, bool renorm,
                    const std::vector<std::vector<int>>& masked = {}, int layer = 0) {
  TensorPtr t = b.upload(logits.data(), rows, E);
  return b.route(*t, test::route_request(k, renorm, masked, layer));
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

BOOST_AUTO_TEST_CASE(the_backend_op_is_bit_identical_to_the_host_routing) {
  auto b = make_cpu_backend();
  // k == E included; scale 0.01 makes near-ties, the exact ties are below.
  for (auto [E, k] : {std::pair{8, 2}, std::pair{16, 4}, std::pair{64, 8}, std::pair{128, 8}, std::pair{5, 5},
                      std::pair{7, 1}}) {
    for (float scale : {3.0f, 0.01f}) {
      const int rows = 41;
      const std::vector<float> logits = random_logits(rows, E, 77u + E * 3 + k, scale);
      for (bool renorm : {true, false}) {
        BOOST_TEST_CONTEXT("E " << E << " k " << k << " scale " << scale << " renormalise " << renorm) {
          const Routing old = route_top_k(logits, rows, E, k, renorm, {});
          const RoutingPtr r = route_op(*b, logits, rows, E, k, renorm);
          BOOST_TEST(r->rows() == rows);
          BOOST_TEST(r->k() == k);
          BOOST_TEST(r->host().top.experts == old.experts);
          BOOST_TEST(same_bits(r->host().top.weights, old.weights));
          expect_grouping(*r);
        }
      }
    }
  }
}

BOOST_AUTO_TEST_CASE(the_backend_op_masks_like_the_host_routing) {
  auto b = make_cpu_backend();
  const int rows = 30, E = 16, k = 4;
  const std::vector<float> logits = random_logits(rows, E, 4242u);
  const Routing plain = route_top_k(logits, rows, E, k, true, {});
  std::vector<std::vector<int>> masked(rows);
  for (int row = 0; row < rows; ++row) {
    if (row % 3 == 0) continue;                           // rows without masks
    masked[row] = {plain.expert(row, 0), (row * 7) % E};  // the top-1 and another expert
    if (row % 5 == 0) masked[row].push_back(plain.expert(row, 0));  // duplicates are harmless
  }
  masked[4] = {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11};  // exactly k left: all chosen
  for (bool renorm : {true, false}) {
    const Routing old = route_top_k(logits, rows, E, k, renorm, masked);
    const RoutingPtr r = route_op(*b, logits, rows, E, k, renorm, masked);
    BOOST_TEST(r->host().top.experts == old.experts);
    BOOST_TEST(same_bits(r->host().top.weights, old.weights));
    for (int row = 0; row < rows; ++row)
      for (int e : masked[row]) BOOST_TEST(r->host().top.slot_of(row, e) == -1);
    expect_grouping(*r);
  }
}

BOOST_AUTO_TEST_CASE(the_backend_op_breaks_exact_ties_by_the_lower_expert_index) {
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
  BOOST_TEST(t.expert(1, 0) == 0);
  BOOST_TEST(t.expert(1, 1) == 1);
  BOOST_TEST(t.expert(2, 0) == 2);
  BOOST_TEST(t.expert(2, 1) == 1);
  const RoutingPtr all = route_op(*b, logits, 3, E, E, false);
  for (int j = 0; j < E; ++j) BOOST_TEST(all->host().top.expert(1, j) == j);
  BOOST_TEST(all->host().top.experts == route_top_k(logits, 3, E, E, false, {}).experts);
  expect_grouping(*all);
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

  const Routing old = route_top_k(logits, rows, E, k, true, {});
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
