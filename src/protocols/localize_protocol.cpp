#include "protocols/localize_protocol.h"

#include <algorithm>
#include <utility>

#include "util/error.h"

namespace moetrace::localize {
namespace {

constexpr std::uint64_t kSplitSeedTag = 0x73706c6974ull;    // seed offsets: independent streams per use
constexpr std::uint64_t kControlSeedTag = 0x63746c72ull;
constexpr std::uint64_t kBootstrapSeedTag = 0x62737470ull;

Deactivation as_deactivation(const ExpertList& s) { return Deactivation(s.begin(), s.end()); }

DeactivationEffect reask(Engine& engine, const Tokenizer& tokenizer, const QuestionSet& qs, const LocalizeOptions& o,
                         const std::vector<AskedPair>& asked, const std::vector<std::size_t>& validation,
                         const ExpertList& experts) {
  DeactivationEffect e;
  e.experts = experts;
  std::vector<std::pair<std::size_t, std::size_t>> pairs;
  for (std::size_t i : validation) pairs.emplace_back(asked[i].question, asked[i].language);
  const Deactivation d = as_deactivation(experts);
  AskOptions ask = o.ask;
  ask.deactivation = &d;
  ask.capture_routing = false;
  const std::vector<AskedPair> after = pairs.empty() ? std::vector<AskedPair>{} : ask_questions(engine, tokenizer, qs, pairs, ask);
  std::vector<PairOutcome> outcomes;
  for (std::size_t j = 0; j < validation.size(); ++j) {
    const AskedPair& b = asked[validation[j]];
    outcomes.push_back({qs.questions[b.question].id, qs.languages[b.language], b.bucket, after[j].bucket});
    if (b.bucket == Bucket::Success) e.turned_wrong.push_back(after[j].bucket == Bucket::Failure ? 1.0 : 0.0);
  }
  e.flips = count_flips(outcomes);
  return e;
}

}  // namespace

LocalizationResult run_localization(Engine& engine, const Tokenizer& tokenizer, const QuestionSet& qs,
                                    const LocalizeOptions& o) {
  if (o.ask.deactivation) fail_input("localize: the asking options must not carry a deactivation");
  if (o.control_draws < 1) fail_input("localize: control_draws must be >= 1");
  if (o.bootstrap_resamples < 1) fail_input("localize: bootstrap_resamples must be >= 1");
  for (std::size_t i = 0; i < o.curve_n.size(); ++i)
    if (o.curve_n[i] < 1 || (i > 0 && o.curve_n[i] <= o.curve_n[i - 1]))
      fail_input("localize: the curve's N must be ascending, distinct and >= 1");
  const ModelConfig& c = engine.model().config;
  LocalizationResult r;

  AskOptions ask = o.ask;
  ask.capture_routing = true;
  r.asked = ask_questions(engine, tokenizer, qs, {}, ask);

  std::vector<std::string> ids;
  for (const Question& q : qs.questions) ids.push_back(q.id);
  r.split = split_questions(ids, o.seed ^ kSplitSeedTag);
  std::vector<char> in_discovery(qs.questions.size(), 0);
  for (std::size_t q : r.split.discovery) in_discovery[q] = 1;

  ContrastInput input;
  input.layers = c.num_layers;
  input.experts = c.num_experts;
  std::vector<double> frequency(static_cast<std::size_t>(c.num_layers) * c.num_experts, 0.0);
  std::size_t n_discovery = 0;
  for (std::size_t i = 0; i < r.asked.size(); ++i) {
    const AskedPair& p = r.asked[i];
    if (!in_discovery[p.question]) {
      r.validation_pairs.push_back(i);
      continue;
    }
    input.pairs.push_back(to_contrast_pair(qs, p, o.statistic));
    for (std::size_t k = 0; k < frequency.size(); ++k) frequency[k] += p.routing.selected_mean[k];
    ++n_discovery;
  }
  for (double& f : frequency) f /= static_cast<double>(std::max<std::size_t>(n_discovery, 1));
  // Rank far enough for the curve; the chosen set is the first top_n of that ranking (the ranking
  // is a total order, so the first top_n are the top_n ranking's).
  ContrastOptions contrast = o.contrast;
  for (std::size_t n : o.curve_n) contrast.top_n = std::max(contrast.top_n, n);
  r.contrast = contrast_experts(input, contrast);
  ExpertList ranked;
  for (std::size_t i : r.contrast.top_global) ranked.emplace_back(r.contrast.experts[i].layer, r.contrast.experts[i].expert);
  r.chosen.assign(ranked.begin(), ranked.begin() + static_cast<std::ptrdiff_t>(std::min(o.contrast.top_n, ranked.size())));
  r.contrast.top_global.resize(r.chosen.size());
  for (auto& layer : r.contrast.top_per_layer) layer.resize(std::min(layer.size(), o.contrast.top_n));

  r.effect = reask(engine, tokenizer, qs, o, r.asked, r.validation_pairs, r.chosen);
  r.popular = reask(engine, tokenizer, qs, o, r.asked, r.validation_pairs,
                    popular_experts(frequency, c.num_layers, c.num_experts, r.chosen.size()));
  for (std::uint32_t d = 0; d < o.control_draws; ++d)
    r.random.push_back(reask(engine, tokenizer, qs, o, r.asked, r.validation_pairs,
                             random_layer_matched(r.chosen, c.num_layers, c.num_experts, o.seed ^ kControlSeedTag, d)));

  for (std::size_t n : o.curve_n) {
    const ExpertList top(ranked.begin(), ranked.begin() + static_cast<std::ptrdiff_t>(std::min(n, ranked.size())));
    r.curve.push_back({n, reask(engine, tokenizer, qs, o, r.asked, r.validation_pairs, top).flips});
  }
  if (o.unrelated) {
    AskOptions plain = o.ask;
    plain.capture_routing = false;
    const std::vector<AskedPair> before = ask_questions(engine, tokenizer, *o.unrelated, {}, plain);
    std::vector<std::size_t> all(before.size());
    for (std::size_t i = 0; i < all.size(); ++i) all[i] = i;
    r.unrelated = reask(engine, tokenizer, *o.unrelated, o, before, all, r.chosen).flips;
  }

  r.share_turned_wrong = r.effect.flips.overall.share_turned_wrong();
  r.popular_share_turned_wrong = r.popular.flips.overall.share_turned_wrong();
  const std::size_t n = r.effect.turned_wrong.size();
  std::vector<double> random_mean(n, 0.0), difference(n, 0.0);
  for (const DeactivationEffect& e : r.random)
    for (std::size_t j = 0; j < n; ++j) random_mean[j] += e.turned_wrong[j];
  double sum = 0;
  for (std::size_t j = 0; j < n; ++j) {
    random_mean[j] /= static_cast<double>(r.random.size());
    difference[j] = r.effect.turned_wrong[j] - random_mean[j];
    sum += random_mean[j];
  }
  r.random_share_turned_wrong = n ? sum / static_cast<double>(n) : std::nan("");
  if (n) {
    r.share_ci = bootstrap_ci(r.effect.turned_wrong, o.seed ^ kBootstrapSeedTag, o.bootstrap_resamples);
    r.difference_vs_random_ci = bootstrap_ci(difference, o.seed ^ kBootstrapSeedTag, o.bootstrap_resamples);
  } else {
    r.share_ci = r.difference_vs_random_ci = {std::nan(""), std::nan("")};
  }
  return r;
}

}  // namespace moetrace::localize
