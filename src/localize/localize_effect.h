#pragma once
// Discovery / validation split of the questions and the deactivation effect counts
// (docs/localize.md "Split and deactivation effect"). Pure functions of their inputs: question ids,
// not file or batch order, decide the split; pairs are counted whatever their order.
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "localize/localize_contrast.h"

namespace moetrace::localize {

struct QuestionSplit {
  std::vector<std::size_t> discovery;   // indices into the given ids, ascending
  std::vector<std::size_t> validation;  // the rest, ascending
};

// Splits questions into halves by their ids: the ids are sorted byte-wise, shuffled by a
// Fisher-Yates permutation from the counter RNG (NoiseStream(seed, kSplitStreamTag, 0)), and the
// first ceil(n/2) are the discovery half. The same ids give the same halves in any order.
// InputError for a repeated id.
inline constexpr std::uint64_t kSplitStreamTag = 0x6c6f632d73706c74ull;  // "loc-splt"
QuestionSplit split_questions(const std::vector<std::string>& question_ids, std::uint64_t seed);

// One validation pair asked twice: before (no deactivation) and after (experts deactivated).
struct PairOutcome {
  std::string question_id;
  std::string language;
  Bucket before = Bucket::Failure;
  Bucket after = Bucket::Failure;
};

struct FlipCount {
  std::size_t correct_before = 0;  // pairs in the success bucket before
  std::size_t turned_wrong = 0;    // of those, in the failure bucket after
  std::size_t wrong_before = 0;
  std::size_t turned_right = 0;
  double share_turned_wrong() const;  // NaN when correct_before is 0
  double share_turned_right() const;  // NaN when wrong_before is 0
};

struct FlipSummary {
  FlipCount overall;
  std::map<std::string, FlipCount> per_language;
};

// InputError for the same (question, language) twice or an empty id or language.
FlipSummary count_flips(const std::vector<PairOutcome>& outcomes);

// A set of (layer, expert) pairs, the layout of the engine's Deactivation.
using ExpertList = std::vector<std::pair<std::int32_t, std::int32_t>>;

// Random control set number `draw`, matched per layer to `chosen`: for each layer with c chosen
// experts, c experts of that layer drawn uniformly without replacement from those not chosen
// (a partial Fisher-Yates over the layer's other experts in index order, from
// NoiseStream(seed, kControlStreamTag, draw), layers ascending). Sorted by (layer, expert).
// InputError for a chosen pair outside [0, layers) x [0, experts), a pair chosen twice, or a layer
// with fewer non-chosen experts than chosen ones.
inline constexpr std::uint64_t kControlStreamTag = 0x6c6f632d63746c72ull;  // "loc-ctlr"
ExpertList random_layer_matched(const ExpertList& chosen, std::int32_t layers, std::int32_t experts, std::uint64_t seed,
                               std::uint32_t draw);

// The "just popular experts" control: the n (layer, expert) pairs with the highest `frequency`
// ([layers x experts] row-major, e.g. the mean over all asked pairs of RoutingSummary::selected_mean),
// ties to the lower layer, then the lower expert; sorted by rank. InputError for a size other than
// layers x experts or a non-finite value; fewer than n when there are fewer pairs.
ExpertList popular_experts(const std::vector<double>& frequency, std::int32_t layers, std::int32_t experts,
                          std::size_t n);

// How many experts of one layer a deactivated set may hold (docs/localize.md "Sets the model can
// take"): every token must keep its top_k experts (deactivation_cap = experts - top_k), and the
// chosen set leaves its random layer-matched controls as many others to draw from (chosen_cap, at
// most half the layer as well). Below 1 when nothing can be deactivated.
inline std::int32_t deactivation_cap(std::int32_t experts, std::int32_t top_k) { return experts - top_k; }
inline std::int32_t chosen_cap(std::int32_t experts, std::int32_t top_k) {
  return std::min(experts / 2, deactivation_cap(experts, top_k));
}

// The first n pairs of `ranked` (best first) passing over a pair whose layer already holds `cap`
// of those taken; in ranked order. Equals the first n of `ranked` whenever no layer reaches `cap`.
// InputError for a pair outside [0, layers) (experts are not checked) or a cap below 1.
ExpertList capped_prefix(const ExpertList& ranked, std::size_t n, std::int32_t layers, std::int32_t cap);

}  // namespace moetrace::localize
