#include "protocols/selection.h"

#include <cmath>
#include <algorithm>
#include <numeric>

#include <fmt/format.h>

#include "util/counter_rng.h"

namespace moetrace {

double column_mean(const Matrix2& m, int c, const std::vector<int>& rows) {
  double sum = 0;
  int n = 0;
  for (int r : rows) {
    const double v = m.at(r, c);
    if (std::isnan(v)) continue;
    sum += v;
    ++n;
  }
  return n ? sum / n : NAN;
}

LayerChoice choose_layer(const std::vector<double>& means, double gap, double tie_tolerance) {
  LayerChoice out;
  double best = -INFINITY, scale = 0;
  int finite = 0;
  for (double m : means) {
    if (std::isnan(m)) continue;
    ++finite;
    best = std::max(best, m);
    scale = std::max(scale, std::abs(m));
  }
  if (finite == 0) return out;
  const double tie = tie_tolerance * scale, near = kNearTieTolerance * scale;
  for (int l = 0; l < static_cast<int>(means.size()); ++l) {
    const double m = means[l];
    if (std::isnan(m)) continue;
    if (best - m <= tie) out.tied.push_back(l);
    else if (best - m <= near) out.near_tied.push_back(l);
  }
  out.layer = out.tied.front();
  out.scale = scale;
  out.flat = finite > 1 && static_cast<int>(out.tied.size()) == finite;
  const double zero = kZeroRescueTolerance * std::abs(gap);
  out.zero = scale <= zero;
  out.no_rescue = means[out.layer] <= zero;
  return out;
}

std::vector<std::string> layer_choice_warnings(const LayerChoice& c, const std::vector<double>& means) {
  std::vector<std::string> out;
  if (c.layer < 0) return out;
  auto list = [](const std::vector<int>& v) {
    std::string s;
    for (int l : v) s += fmt::format("{}{}", s.empty() ? "" : ", ", l);
    return s;
  };
  if (c.zero)
    out.push_back(fmt::format("the layer curve is zero: no layer rescues anything (largest |mean| {:.3g}); layer {} "
                              "was picked by the tie rule only", c.scale, c.layer));
  else if (c.flat)
    out.push_back(fmt::format("the layer curve is flat: every layer's mean rescue is within the tie tolerance of the "
                              "best ({:.6g}); layer {} was picked by the tie rule only", means[c.layer], c.layer));
  else if (c.no_rescue)
    out.push_back(fmt::format("the selected layer {} has no rescue (mean {:.3g})", c.layer, means[c.layer]));
  if (!c.flat && c.tied.size() > 1)
    out.push_back(fmt::format("layers {} are tied (within the tie tolerance); the earliest, {}, is selected",
                              list(c.tied), c.layer));
  if (!c.flat && !c.near_tied.empty())
    out.push_back(fmt::format("near-tie: layer(s) {} are within {:.0f}% of the curve's scale of the selected layer {}",
                              list(c.near_tied), 100 * kNearTieTolerance, c.layer));
  return out;
}

int select_best_column(const Matrix2& m, const std::vector<int>& rows, double tie_tolerance) {
  std::vector<double> means(m.cols);
  for (int c = 0; c < m.cols; ++c) means[c] = column_mean(m, c, rows);
  return choose_layer(means, 0, tie_tolerance).layer;
}

std::vector<int> expert_candidates(const Matrix2& active, const std::vector<int>& rows, double threshold) {
  std::vector<int> out;
  for (int e = 0; e < active.cols; ++e) {
    int count = 0;
    for (int r : rows) count += active.at(r, e) != 0;
    // Compare counts, not fractions, so that "half of 128" means exactly 64.
    if (!rows.empty() && count >= std::ceil(threshold * static_cast<double>(rows.size()) - 1e-9)) out.push_back(e);
  }
  return out;
}

double rescue_or_zero(const Matrix2& rescue, const Matrix2& active, int r, int e) {
  if (active.at(r, e) == 0) return 0;
  const double v = rescue.at(r, e);
  return std::isnan(v) ? 0 : v;
}

int select_expert(const Matrix2& rescue, const Matrix2& active, const std::vector<int>& rows,
                  const std::vector<int>& candidates) {
  int best = -1;
  double best_mean = -INFINITY;
  for (int e : candidates) {
    double sum = 0;
    for (int r : rows) sum += rescue_or_zero(rescue, active, r, e);
    const double mean = rows.empty() ? NAN : sum / rows.size();
    if (mean > best_mean) {
      best_mean = mean;
      best = e;
    }
  }
  return best;
}

std::vector<int> seeded_permutation(int n, std::uint64_t seed, std::uint64_t tag) {
  // Fisher-Yates driven by the counter-based generator: the order depends only on (seed, tag, n).
  std::vector<int> p(n);
  std::iota(p.begin(), p.end(), 0);
  NoiseStream rng(seed, tag, 0);
  for (int i = n - 1; i > 0; --i) {
    const auto j = static_cast<int>(rng.next_uniform() * (i + 1));
    std::swap(p[i], p[std::min(j, i)]);
  }
  return p;
}

ExpertControls expert_controls(const std::vector<double>& rescue, const std::vector<double>& active,
                               const std::vector<double>& weight, int expert, int num_sampled, std::uint64_t seed,
                               std::int64_t case_id) {
  ExpertControls out;
  if (active[expert] == 0) return out;
  std::vector<int> others;
  for (int e = 0; e < static_cast<int>(active.size()); ++e)
    if (e != expert && active[e] != 0) others.push_back(e);
  if (others.empty()) return out;
  // Sampled controls, drawn reproducibly per (seed, case): with top-2 routing this is the other one.
  std::vector<int> sampled = others;
  if (static_cast<int>(others.size()) > num_sampled) {
    const std::vector<int> perm = seeded_permutation(static_cast<int>(others.size()), seed, static_cast<std::uint64_t>(case_id));
    sampled.clear();
    for (int i = 0; i < num_sampled; ++i) sampled.push_back(others[perm[i]]);
  }
  double sum = 0;
  for (int e : sampled) sum += rescue[e];
  out.sampled = sum / static_cast<double>(sampled.size());
  int best = others.front();
  for (int e : others)
    if (std::abs(weight[e] - weight[expert]) < std::abs(weight[best] - weight[expert])) best = e;
  out.gate_matched_expert = best;
  out.gate_matched = rescue[best];
  return out;
}

void split_halves(int n, std::uint64_t seed, std::vector<int>& first, std::vector<int>& second) {
  std::vector<int> p = seeded_permutation(n, seed, kSplitSeedTag);
  first.assign(p.begin(), p.begin() + (n + 1) / 2);
  second.assign(p.begin() + (n + 1) / 2, p.end());
  std::sort(first.begin(), first.end());
  std::sort(second.begin(), second.end());
}

}  // namespace moetrace
