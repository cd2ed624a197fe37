#include "localize/localize_ask.h"

#include <algorithm>
#include <array>
#include <optional>

#include <fmt/format.h>

#include "util/error.h"

namespace moetrace::localize {
namespace {

constexpr std::array<std::string_view, kRoutingStatisticCount> kStatisticNames = {
    "prob_mean",     "prob_last",      "logit_mean",      "logit_last",         "selected_mean",
    "selected_last", "prob_generated", "logit_generated", "selected_generated"};

void check_options(const AskOptions& o) {
  if (!std::isfinite(o.logprob_threshold) || o.logprob_threshold > 0)
    fail_input("asking: the answer log-probability threshold must be finite and <= 0 (got {})", o.logprob_threshold);
}

}  // namespace

BucketRule parse_bucket_rule(std::string_view text, std::string_view what) {
  if (text == "generation") return BucketRule::Generation;
  if (text == "answer_logprob") return BucketRule::AnswerLogprob;
  fail_input("{}: unknown bucket rule \"{}\" (expected \"generation\" or \"answer_logprob\")", what,
             text.substr(0, 64));
}

std::string_view bucket_rule_name(BucketRule rule) {
  return rule == BucketRule::Generation ? "generation" : "answer_logprob";
}

RoutingStatistic parse_routing_statistic(std::string_view text, std::string_view what) {
  for (std::size_t i = 0; i < kStatisticNames.size(); ++i)
    if (text == kStatisticNames[i]) return static_cast<RoutingStatistic>(i);
  fail_input("{}: unknown routing statistic \"{}\" (expected one of prob_mean, prob_last, logit_mean, logit_last, "
             "selected_mean, selected_last, prob_generated, logit_generated, selected_generated)",
             what, text.substr(0, 64));
}

std::string_view routing_statistic_name(RoutingStatistic stat) { return kStatisticNames[static_cast<std::size_t>(stat)]; }

const std::vector<double>& routing_values(const RoutingSummary& s, RoutingStatistic stat) {
  switch (stat) {
    case RoutingStatistic::ProbMean: return s.prob_mean;
    case RoutingStatistic::ProbLast: return s.prob_last;
    case RoutingStatistic::LogitMean: return s.logit_mean;
    case RoutingStatistic::LogitLast: return s.logit_last;
    case RoutingStatistic::SelectedMean: return s.selected_mean;
    case RoutingStatistic::SelectedLast: return s.selected_last;
    case RoutingStatistic::ProbGenerated: return s.prob_generated;
    case RoutingStatistic::LogitGenerated: return s.logit_generated;
    case RoutingStatistic::SelectedGenerated: return s.selected_generated;
  }
  MOETRACE_ASSERT(false, "routing statistic");
  return s.prob_mean;
}

bool has_routing_values(const RoutingSummary& s, RoutingStatistic stat) {
  if (s.layers <= 0) return false;
  switch (stat) {
    case RoutingStatistic::ProbGenerated:
    case RoutingStatistic::LogitGenerated:
    case RoutingStatistic::SelectedGenerated: return s.has_generated_routing();
    default: return true;
  }
}

std::vector<int> newline_token_ids(const Tokenizer& tokenizer, int model_vocab_size) {
  std::vector<int> ids;
  const int n = static_cast<int>(std::min<std::size_t>(tokenizer.vocab_size(), static_cast<std::size_t>(model_vocab_size)));
  for (int id = 0; id < n; ++id) {
    std::string text;
    try {
      text = tokenizer.decode({id}, false);
    } catch (const InputError&) {
      continue;  // a gap in the tokenizer's ids
    }
    if (text.find('\n') != std::string::npos) ids.push_back(id);
  }
  return ids;
}

std::vector<std::int32_t> prompt_token_ids(const Tokenizer& tokenizer, const LanguageEntry& entry, bool add_special_tokens) {
  return tokenizer.encode_ids(entry.prompt, add_special_tokens);
}

namespace {

// The (question, language) pairs to ask: `pairs`, checked against the set, or every pair when empty.
std::vector<AskedPair> select_pairs(const QuestionSet& qs, const std::vector<std::pair<std::size_t, std::size_t>>& pairs) {
  std::vector<AskedPair> out;
  if (pairs.empty()) {
    for (std::size_t q = 0; q < qs.questions.size(); ++q)
      for (std::size_t l = 0; l < qs.languages.size(); ++l) out.push_back({.question = q, .language = l});
  } else {
    for (auto [q, l] : pairs) {
      if (q >= qs.questions.size() || l >= qs.languages.size())
        fail_input("asking: pair (question {}, language {}) outside the {} questions and {} languages", q, l,
                   qs.questions.size(), qs.languages.size());
      out.push_back({.question = q, .language = l});
    }
  }
  return out;
}

// The prompt's token ids and the first token id of every answer, each checked against the model's vocabulary.
DecodeRequest build_request(const Tokenizer& tokenizer, const QuestionSet& qs, const AskedPair& p, int vocab,
                            const AskOptions& o) {
  const LanguageEntry& e = qs.questions[p.question].entries[p.language];
  DecodeRequest r;
  const std::string& qid = qs.questions[p.question].id;
  const std::string& language = qs.languages[p.language];
  for (std::int32_t id : prompt_token_ids(tokenizer, e, o.add_special_tokens)) {
    if (id < 0 || id >= vocab)
      fail_input("asking: question \"{}\" ({}): the prompt encodes to token id {}, outside the model's {} ids", qid,
                 language, id, vocab);
    r.prompt.push_back(id);
  }
  if (r.prompt.empty()) fail_input("asking: question \"{}\" ({}): the prompt encodes to no token", qid, language);
  for (const std::string& a : e.answers) {
    const std::vector<std::int32_t> ids = tokenizer.encode_ids(o.answer_prefix + a, false);
    if (ids.empty()) fail_input("asking: question \"{}\" ({}): answer \"{}\" encodes to no token", qid, language, a.substr(0, 64));
    if (ids.front() < 0 || ids.front() >= vocab)
      fail_input("asking: question \"{}\" ({}): answer \"{}\" starts with token id {}, outside the model's {} ids", qid,
                 language, a.substr(0, 64), ids.front(), vocab);
    r.answer_ids.push_back(ids.front());
  }
  return r;
}

// Decoding stops at any newline token and at the end-of-sequence ids.
DecodeOptions decode_options(const Tokenizer& tokenizer, int vocab, const AskOptions& o) {
  DecodeOptions d;
  d.max_new_tokens = o.max_new_tokens;
  d.prompts_per_call = o.prompts_per_call;
  d.deactivation = o.deactivation;
  d.capture_routing = o.capture_routing;
  d.stats = o.stats;
  d.stop_ids = newline_token_ids(tokenizer, vocab);
  for (int id : o.eos_ids)
    if (std::find(d.stop_ids.begin(), d.stop_ids.end(), id) == d.stop_ids.end()) d.stop_ids.push_back(id);
  return d;
}

// The pair's output (its first line), how it matches the answers, its best answer log-probability and its bucket.
void score_pair(const Tokenizer& tokenizer, const QuestionSet& qs, const AskOptions& o, DecodeResult& r, AskedPair& p) {
  const LanguageEntry& e = qs.questions[p.question].entries[p.language];
  const std::string& language = qs.languages[p.language];
  p.generated = std::move(r.tokens);
  p.stop_id = r.stop_id;
  std::vector<std::int32_t> ids(p.generated.begin(), p.generated.end());
  if (p.stop_id >= 0) ids.push_back(p.stop_id);  // a newline token may carry text before its line feed
  p.output = tokenizer.decode(ids, true);
  if (const auto nl = p.output.find('\n'); nl != std::string::npos) p.output.resize(nl);
  const std::string normalised = normalise_answer(p.output, language);
  for (const std::string& a : e.normalised_answers) p.match = std::max(p.match, match_normalised(normalised, a, o.match));
  p.answer_logprob = *std::max_element(r.answer_logprobs.begin(), r.answer_logprobs.end());
  const bool success = o.bucket == BucketRule::Generation ? p.match != MatchKind::None
                                                          : p.answer_logprob >= o.logprob_threshold;
  p.bucket = success ? Bucket::Success : Bucket::Failure;
  p.routing = std::move(r.routing);
}

}  // namespace

std::vector<AskedPair> ask_questions(Engine& engine, const Tokenizer& tokenizer, const QuestionSet& qs,
                                     const std::vector<std::pair<std::size_t, std::size_t>>& pairs,
                                     const AskOptions& o) {
  check_options(o);
  std::vector<AskedPair> out = select_pairs(qs, pairs);
  const int vocab = engine.model().config.vocab_size;
  std::vector<DecodeRequest> requests;
  requests.reserve(out.size());
  for (const AskedPair& p : out) requests.push_back(build_request(tokenizer, qs, p, vocab, o));
  std::vector<DecodeResult> results = greedy_decode(engine, requests, decode_options(tokenizer, vocab, o));
  for (std::size_t i = 0; i < out.size(); ++i) score_pair(tokenizer, qs, o, results[i], out[i]);
  return out;
}

namespace {

// The first problem of one entry (its message without file and line), or none when it can be asked.
std::optional<LateProblem> entry_problem(const Tokenizer& tokenizer, const LanguageEntry& e, const std::string& language,
                                         const PromptLimits& limits) {
  const std::size_t n = prompt_token_ids(tokenizer, e, limits.add_special_tokens).size();
  if (n == 0)
    return LateProblem{0, RecordProblem::EmptyQuestion, fmt::format("language '{}': the prompt encodes to no token", language)};
  if (limits.max_positions > 0 && n + static_cast<std::size_t>(limits.max_new_tokens) > static_cast<std::size_t>(limits.max_positions))
    return LateProblem{0, RecordProblem::TooLong,
                       fmt::format("language '{}': the prompt is {} tokens; with [ask] max_new_tokens = {} that is more than "
                                   "the model's {} positions (max_position_embeddings)",
                                   language, n, limits.max_new_tokens, limits.max_positions)};
  for (std::size_t i = 0; i < e.answers.size(); ++i)
    if (tokenizer.encode_ids(limits.answer_prefix + e.answers[i], false).empty())
      return LateProblem{0, RecordProblem::EmptyAnswer, fmt::format("language '{}': answer {} encodes to no token", language, i)};
  return std::nullopt;
}

}  // namespace

std::vector<LateProblem> screen_prompts(const Tokenizer& tokenizer, const QuestionSet& qs, const PromptLimits& limits) {
  std::vector<LateProblem> problems;
  for (std::size_t q = 0; q < qs.questions.size(); ++q)
    for (std::size_t l = 0; l < qs.languages.size(); ++l)
      if (auto p = entry_problem(tokenizer, qs.questions[q].entries[l], qs.languages[l], limits)) {
        p->question = q;
        problems.push_back(std::move(*p));
        break;
      }
  return problems;
}

ContrastPair to_contrast_pair(const QuestionSet& qs, const AskedPair& p, RoutingStatistic stat) {
  MOETRACE_ASSERT(p.routing.layers > 0, "a contrast pair needs the routing captured");
  return {qs.questions.at(p.question).id, qs.languages.at(p.language), p.bucket, routing_values(p.routing, stat)};
}

}  // namespace moetrace::localize
