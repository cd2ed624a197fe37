#include "engine/routing.h"

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
  std::vector<double> p(E);
  std::vector<int> order(E);
  for (int row = 0; row < rows; ++row) {
    const float* l = logits.data() + static_cast<std::size_t>(row) * E;
    for (int e = 0; e < E; ++e) p[e] = l[e];
    if (!masked.empty())
      for (int e : masked[row]) p[e] = -std::numeric_limits<double>::infinity();
    const double mx = *std::max_element(p.begin(), p.end());
    MOETRACE_ASSERT(std::isfinite(mx), "every expert of a row is deactivated");
    double sum = 0;
    for (double& v : p) sum += (v = std::exp(v - mx));
    for (double& v : p) v /= sum;
    std::iota(order.begin(), order.end(), 0);
    // Ties (never seen with real logits) go to the lower expert index.
    std::partial_sort(order.begin(), order.begin() + k, order.end(),
                      [&](int a, int b) { return p[a] > p[b] || (p[a] == p[b] && a < b); });
    double top = 0;
    for (int j = 0; j < k; ++j) top += p[order[j]];
    for (int j = 0; j < k; ++j) {
      MOETRACE_ASSERT(p[order[j]] > 0, "fewer than k experts remain after deactivation");
      r.experts[row * k + j] = order[j];
      r.weights[row * k + j] = static_cast<float>(renormalise ? p[order[j]] / top : p[order[j]]);
    }
  }
  return r;
}

}  // namespace moetrace
