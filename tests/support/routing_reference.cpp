#include "support/routing_reference.h"

#include <cmath>
#include <stdexcept>
#include <string>

namespace moetrace::test {
namespace {

// The probabilities of one row: exp(z_e - max z) / sum, over the live experts; 0 for the others.
std::vector<double> softmax(const float* z, const std::vector<bool>& live) {
  const int E = static_cast<int>(live.size());
  double mx = -INFINITY;
  for (int e = 0; e < E; ++e)
    if (live[e] && z[e] > mx) mx = z[e];
  std::vector<double> p(E, 0.0);
  double sum = 0;
  for (int e = 0; e < E; ++e)
    if (live[e]) {
      p[e] = std::exp(static_cast<double>(z[e]) - mx);
      sum += p[e];
    }
  for (int e = 0; e < E; ++e) p[e] /= sum;
  return p;
}

// k rounds of "the most probable expert not yet chosen"; scanning upwards with a strict comparison
// keeps the lower index on equal probabilities.
std::vector<int> most_probable(const std::vector<double>& p, const std::vector<bool>& live, int k) {
  std::vector<bool> taken(p.size(), false);
  std::vector<int> chosen;
  for (int j = 0; j < k; ++j) {
    int best = -1;
    for (int e = 0; e < static_cast<int>(p.size()); ++e)
      if (live[e] && !taken[e] && (best < 0 || p[e] > p[best])) best = e;
    taken[best] = true;
    chosen.push_back(best);
  }
  return chosen;
}

}  // namespace

bool ReferenceRouting::routes(int row, int e) const {
  for (int j = 0; j < k; ++j)
    if (expert(row, j) == e) return true;
  return false;
}

ReferenceRouting reference_routing(const std::vector<float>& logits, int rows, int E, int k, bool renormalise,
                                   const std::vector<std::vector<int>>& masked) {
  ReferenceRouting r;
  r.k = k;
  for (int row = 0; row < rows; ++row) {
    const float* z = logits.data() + static_cast<std::size_t>(row) * E;
    std::vector<bool> live(E, true);
    for (int e = 0; e < E; ++e)
      if (!std::isfinite(z[e]))
        throw std::domain_error("non-finite logit in row " + std::to_string(row) + ", expert " + std::to_string(e));
    if (!masked.empty())
      for (int e : masked[row]) live[e] = false;
    int left = 0;
    for (int e = 0; e < E; ++e) left += live[e];
    if (left < k) throw std::length_error("fewer than k experts left in row " + std::to_string(row));
    const std::vector<double> p = softmax(z, live);
    const std::vector<int> chosen = most_probable(p, live, k);
    double total = 0;
    for (int e : chosen) total += p[e];
    for (int e : chosen) {
      r.experts.push_back(e);
      r.weights.push_back(renormalise ? p[e] / total : p[e]);
    }
  }
  return r;
}

}  // namespace moetrace::test
