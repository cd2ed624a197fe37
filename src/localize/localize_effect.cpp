#include "localize/localize_effect.h"

#include <algorithm>
#include <cmath>
#include <numeric>
#include <set>
#include <utility>

#include "util/counter_rng.h"
#include "util/error.h"

namespace moetrace::localize {

QuestionSplit split_questions(const std::vector<std::string>& ids, std::uint64_t seed) {
  std::vector<std::size_t> order(ids.size());
  std::iota(order.begin(), order.end(), std::size_t{0});
  std::sort(order.begin(), order.end(), [&](std::size_t a, std::size_t b) { return ids[a] < ids[b]; });
  for (std::size_t i = 1; i < order.size(); ++i)
    if (ids[order[i]] == ids[order[i - 1]]) fail_input("question split: question id \"{}\" occurs twice", ids[order[i]].substr(0, 256));
  NoiseStream rng(seed, kSplitStreamTag, 0);
  for (std::size_t i = order.size(); i-- > 1;) {
    const auto j = static_cast<std::size_t>(rng.next_uniform() * static_cast<double>(i + 1));
    std::swap(order[i], order[std::min(j, i)]);
  }
  QuestionSplit s;
  const std::size_t half = (order.size() + 1) / 2;
  s.discovery.assign(order.begin(), order.begin() + static_cast<std::ptrdiff_t>(half));
  s.validation.assign(order.begin() + static_cast<std::ptrdiff_t>(half), order.end());
  std::sort(s.discovery.begin(), s.discovery.end());
  std::sort(s.validation.begin(), s.validation.end());
  return s;
}

double FlipCount::share_turned_wrong() const {
  return correct_before ? static_cast<double>(turned_wrong) / static_cast<double>(correct_before) : std::nan("");
}
double FlipCount::share_turned_right() const {
  return wrong_before ? static_cast<double>(turned_right) / static_cast<double>(wrong_before) : std::nan("");
}

FlipSummary count_flips(const std::vector<PairOutcome>& outcomes) {
  FlipSummary s;
  std::set<std::pair<std::string, std::string>> seen;
  for (std::size_t i = 0; i < outcomes.size(); ++i) {
    const PairOutcome& o = outcomes[i];
    if (o.question_id.empty() || o.language.empty()) fail_input("deactivation effect: pair {} has an empty question id or language", i);
    if (!seen.insert({o.question_id, o.language}).second)
      fail_input("deactivation effect: pair {} (question \"{}\", language {}) occurs twice", i,
                 o.question_id.substr(0, 256), o.language.substr(0, 64));
    for (FlipCount* c : {&s.overall, &s.per_language[o.language]}) {
      if (o.before == Bucket::Success) {
        ++c->correct_before;
        if (o.after == Bucket::Failure) ++c->turned_wrong;
      } else {
        ++c->wrong_before;
        if (o.after == Bucket::Success) ++c->turned_right;
      }
    }
  }
  return s;
}

ExpertList random_layer_matched(const ExpertList& chosen, std::int32_t layers, std::int32_t experts, std::uint64_t seed,
                               std::uint32_t draw) {
  if (layers < 1 || experts < 1) fail_input("control experts: layers and experts must be >= 1 (got {} and {})", layers, experts);
  std::vector<std::vector<char>> taken(static_cast<std::size_t>(layers), std::vector<char>(static_cast<std::size_t>(experts), 0));
  std::vector<std::int32_t> per_layer(static_cast<std::size_t>(layers), 0);
  for (auto [l, e] : chosen) {
    if (l < 0 || l >= layers || e < 0 || e >= experts)
      fail_input("control experts: chosen (layer {}, expert {}) outside the model ({} layers, {} experts)", l, e, layers, experts);
    if (taken[l][e]) fail_input("control experts: (layer {}, expert {}) chosen twice", l, e);
    taken[l][e] = 1;
    ++per_layer[l];
  }
  for (std::int32_t l = 0; l < layers; ++l)
    if (per_layer[l] > experts - per_layer[l])
      fail_input("control experts: layer {} has {} chosen experts but only {} others to draw from", l, per_layer[l],
                 experts - per_layer[l]);
  NoiseStream rng(seed, kControlStreamTag, draw);
  ExpertList out;
  for (std::int32_t l = 0; l < layers; ++l) {
    if (per_layer[l] == 0) continue;
    std::vector<std::int32_t> pool;
    for (std::int32_t e = 0; e < experts; ++e)
      if (!taken[l][e]) pool.push_back(e);
    for (std::int32_t i = 0; i < per_layer[l]; ++i) {
      const std::size_t left = pool.size() - static_cast<std::size_t>(i);
      const auto j = static_cast<std::size_t>(i) +
                     std::min(left - 1, static_cast<std::size_t>(rng.next_uniform() * static_cast<double>(left)));
      std::swap(pool[static_cast<std::size_t>(i)], pool[j]);
    }
    std::sort(pool.begin(), pool.begin() + per_layer[l]);
    for (std::int32_t i = 0; i < per_layer[l]; ++i) out.emplace_back(l, pool[static_cast<std::size_t>(i)]);
  }
  return out;
}

ExpertList popular_experts(const std::vector<double>& frequency, std::int32_t layers, std::int32_t experts, std::size_t n) {
  if (layers < 1 || experts < 1) fail_input("popular experts: layers and experts must be >= 1 (got {} and {})", layers, experts);
  const std::size_t m = static_cast<std::size_t>(layers) * static_cast<std::size_t>(experts);
  if (frequency.size() != m) fail_input("popular experts: {} values for {} layers x {} experts", frequency.size(), layers, experts);
  for (std::size_t i = 0; i < m; ++i)
    if (!std::isfinite(frequency[i])) fail_input("popular experts: non-finite value at layer {}, expert {}", i / experts, i % experts);
  std::vector<std::size_t> idx(m);
  std::iota(idx.begin(), idx.end(), std::size_t{0});
  const std::size_t k = std::min(n, m);
  std::partial_sort(idx.begin(), idx.begin() + static_cast<std::ptrdiff_t>(k), idx.end(), [&](std::size_t a, std::size_t b) {
    return frequency[a] != frequency[b] ? frequency[a] > frequency[b] : a < b;  // layer-major index: lower layer, then expert
  });
  ExpertList out;
  for (std::size_t i = 0; i < k; ++i)
    out.emplace_back(static_cast<std::int32_t>(idx[i] / experts), static_cast<std::int32_t>(idx[i] % experts));
  return out;
}

ExpertList capped_prefix(const ExpertList& ranked, std::size_t n, std::int32_t layers, std::int32_t cap) {
  if (cap < 1) fail_input("capped expert set: the per-layer cap must be >= 1 (got {})", cap);
  std::vector<std::int32_t> taken(static_cast<std::size_t>(std::max(layers, 0)), 0);
  ExpertList out;
  for (auto [l, e] : ranked) {
    if (out.size() >= n) break;
    if (l < 0 || l >= layers) fail_input("capped expert set: (layer {}, expert {}) outside the model's {} layers", l, e, layers);
    if (taken[static_cast<std::size_t>(l)] >= cap) continue;
    ++taken[static_cast<std::size_t>(l)];
    out.emplace_back(l, e);
  }
  return out;
}

}  // namespace moetrace::localize
