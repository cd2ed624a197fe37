// The reference routing op: per row, softmax in double precision over the unmasked experts, top-k by
// (descending probability, ascending expert index), optional renormalisation; then the chosen slots
// grouped by expert. The arithmetic is the engine's former host routing step for step, so results
// are bit-identical to it (the fixtures' goldens and results files check that; tests/engine/
// test_routing.cpp checks the op against an independent float64 reference).
#include "backend/cpu/cpu_routing.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>

#include "util/error.h"

namespace moetrace {
namespace {

class HostRoutingResult final : public RoutingResult {
 public:
  HostRoutingResult(int rows, int k, int num_experts, RoutingTable table) : RoutingResult(rows, k, num_experts) {
    host_ = std::make_unique<RoutingTable>(std::move(table));
  }

 protected:
  void fetch(RoutingTable&) const override {}  // host_ is set at construction
};

void check_request(int rows, int E, const RouteRequest& q) {
  MOETRACE_ASSERT(rows >= 0 && E > 0, "route: empty expert dimension");
  MOETRACE_ASSERT(q.k >= 1 && q.k <= E, "route: k outside [1, num_experts]");
  if (q.mask_offsets.empty()) return;
  MOETRACE_ASSERT(static_cast<int>(q.mask_offsets.size()) == rows + 1, "route: mask offsets per row");
  MOETRACE_ASSERT(q.mask_offsets.front() == 0 &&
                      q.mask_offsets.back() == static_cast<int>(q.mask_experts.size()),
                  "route: mask offsets do not cover the mask");
  for (int r = 0; r < rows; ++r) MOETRACE_ASSERT(q.mask_offsets[r] <= q.mask_offsets[r + 1], "route: mask offsets");
  for (int e : q.mask_experts) MOETRACE_ASSERT(e >= 0 && e < E, "route: masked expert out of range");
}

}  // namespace

RoutingPtr route_on_host(const float* logits, int rows, int E, const RouteRequest& q) {
  check_request(rows, E, q);
  const int k = q.k;
  RoutingTable t;
  t.top.k = k;
  t.top.experts.resize(static_cast<std::size_t>(rows) * k);
  t.top.weights.resize(static_cast<std::size_t>(rows) * k);
  std::vector<double> p(E), z(E);
  std::vector<int> order(E);
  std::vector<int> count(E, 0);
  for (int row = 0; row < rows; ++row) {
    const float* l = logits + static_cast<std::size_t>(row) * E;
    for (int e = 0; e < E; ++e) {
      if (!std::isfinite(l[e]))
        fail_input("non-finite router logit {} at layer {}, row {}, expert {} (weights or input contain NaN/Inf)",
                   l[e], q.layer, row, e);
      z[e] = l[e];
    }
    if (!q.mask_offsets.empty())
      for (int i = q.mask_offsets[row]; i < q.mask_offsets[row + 1]; ++i)
        z[q.mask_experts[i]] = -std::numeric_limits<double>::infinity();
    const auto remaining = std::count_if(z.begin(), z.end(), [](double v) { return std::isfinite(v); });
    if (remaining < k)
      fail_input("fewer than k = {} experts remain after deactivation at layer {}, row {} ({} of {} are not "
                 "deactivated)", k, q.layer, row, remaining, E);
    const double mx = *std::max_element(z.begin(), z.end());
    double sum = 0;
    for (int e = 0; e < E; ++e) sum += (p[e] = std::exp(z[e] - mx));
    for (double& v : p) v /= sum;
    std::iota(order.begin(), order.end(), 0);
    // A strict total order: descending probability; equal probabilities (an underflow to 0, never
    // seen with real logits) by descending logit, so a deactivated expert never outranks a live one;
    // then the lower expert index (the rule of Backend::route, checked against the float64 reference
    // tests/support/routing_reference.h).
    std::partial_sort(order.begin(), order.begin() + k, order.end(), [&](int a, int b) {
      return p[a] > p[b] || (p[a] == p[b] && (z[a] > z[b] || (z[a] == z[b] && a < b)));
    });
    double top = 0;
    for (int j = 0; j < k; ++j) top += p[order[j]];
    for (int j = 0; j < k; ++j) {
      t.top.experts[row * k + j] = order[j];
      t.top.weights[row * k + j] = static_cast<float>(q.renormalise ? p[order[j]] / top : p[order[j]]);
      ++count[order[j]];
    }
  }
  // Group the slots by expert: a counting sort, rows ascending within each expert.
  t.expert_offsets.assign(E + 1, 0);
  for (int e = 0; e < E; ++e) t.expert_offsets[e + 1] = t.expert_offsets[e] + count[e];
  t.expert_slots.resize(static_cast<std::size_t>(rows) * k);
  std::vector<int> fill(t.expert_offsets.begin(), t.expert_offsets.end() - 1);
  for (int slot = 0; slot < rows * k; ++slot) t.expert_slots[fill[t.top.experts[slot]]++] = slot;
  return std::make_unique<HostRoutingResult>(rows, k, E, std::move(t));
}

}  // namespace moetrace
