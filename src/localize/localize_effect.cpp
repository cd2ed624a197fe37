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

}  // namespace moetrace::localize
