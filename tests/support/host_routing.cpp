#include "support/host_routing.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>

#include "util/error.h"

namespace moetrace {

Routing route_top_k(const std::vector<float>& logits, int rows, int E, int k, bool renormalise,
                    const std::vector<std::vector<int>>& masked) {
  Routing r;
  r.k = k;
  r.experts.resize(static_cast<std::size_t>(rows) * k);
  r.weights.resize(static_cast<std::size_t>(rows) * k);
  std::vector<double> p(E), z(E);
  std::vector<int> order(E);
  for (int row = 0; row < rows; ++row) {
    const float* l = logits.data() + static_cast<std::size_t>(row) * E;
    for (int e = 0; e < E; ++e) {
      // Weights that overflow (or hold NaN/Inf) reach the router as non-finite logits: an input error.
      if (!std::isfinite(l[e]))
        throw InputError(fmt::format("a router logit is not finite ({} for expert {} of row {}): the model's weights "
                                     "or inputs hold or produce NaN/Inf", l[e], e, row));
      z[e] = l[e];
    }
    if (!masked.empty())
      for (int e : masked[row]) z[e] = -std::numeric_limits<double>::infinity();
    const int remaining = static_cast<int>(std::count_if(z.begin(), z.end(), [](double v) { return std::isfinite(v); }));
    // Callers check deactivations against top_k before the engine runs (replay does, exit 2).
    MOETRACE_ASSERT(remaining >= k, fmt::format("fewer than k = {} experts remain after deactivation ({} of {} are "
                                                "not deactivated)", k, remaining, E));
    const double mx = *std::max_element(z.begin(), z.end());
    double sum = 0;
    for (int e = 0; e < E; ++e) sum += (p[e] = std::exp(z[e] - mx));
    for (double& v : p) v /= sum;
    std::iota(order.begin(), order.end(), 0);
    // Equal probabilities (an underflow to 0, never seen with real logits) are ordered by logit,
    // so that a deactivated expert never outranks a live one; then by the lower expert index.
    std::partial_sort(order.begin(), order.begin() + k, order.end(), [&](int a, int b) {
      return p[a] > p[b] || (p[a] == p[b] && (z[a] > z[b] || (z[a] == z[b] && a < b)));
    });
    double top = 0;
    for (int j = 0; j < k; ++j) top += p[order[j]];
    for (int j = 0; j < k; ++j) {
      r.experts[row * k + j] = order[j];
      r.weights[row * k + j] = static_cast<float>(renormalise ? p[order[j]] / top : p[order[j]]);
    }
  }
  return r;
}

}  // namespace moetrace
