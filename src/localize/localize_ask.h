#pragma once
// Asking the questions (docs/localize.md "Asking the questions"): every selected (question,
// language) pair is tokenised, decoded greedily with the K/V cache (engine/greedy_decoder.h), its
// output matched against the accepted answers, bucketed, and its routing summarised; a pair becomes
// a ContrastPair with the routing statistic the config names. Library moetrace_localize_ask, on top
// of moetrace_localize (which stays engine-free), the engine and the tokenizer.
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "engine/greedy_decoder.h"
#include "localize/localize_contrast.h"
#include "localize/localize_data.h"
#include "localize/localize_match.h"
#include "tokenizer/tokenizer.h"

namespace moetrace::localize {

// How a pair's bucket is decided. Config words "generation" and "answer_logprob".
enum class BucketRule : std::uint8_t {
  Generation,     // success when the decoded output matches an accepted answer (MatchRule)
  AnswerLogprob,  // success when the best first-token log-probability of an answer >= threshold
};
BucketRule parse_bucket_rule(std::string_view text, std::string_view what);
std::string_view bucket_rule_name(BucketRule rule);

// Which RoutingSummary matrix a ContrastPair carries. Config words "prob_mean", "prob_last",
// "logit_mean", "logit_last", "selected_mean", "selected_last" (prompt tokens) and
// "prob_generated", "logit_generated", "selected_generated" (the generated tokens fed back;
// engine/greedy_decoder.h defines the positions).
enum class RoutingStatistic : std::uint8_t {
  ProbMean,
  ProbLast,
  LogitMean,
  LogitLast,
  SelectedMean,
  SelectedLast,
  ProbGenerated,
  LogitGenerated,
  SelectedGenerated,
};
inline constexpr std::size_t kRoutingStatisticCount = 9;
RoutingStatistic parse_routing_statistic(std::string_view text, std::string_view what);
std::string_view routing_statistic_name(RoutingStatistic stat);
const std::vector<double>& routing_values(const RoutingSummary& summary, RoutingStatistic stat);
// Whether the summary holds values for the statistic: false for a *_generated statistic of a pair
// with no generated token fed back (its values are NaN; such a pair cannot enter a contrast).
bool has_routing_values(const RoutingSummary& summary, RoutingStatistic stat);

// Token ids whose text, decoded alone, contains a line feed: decoding stops at any of them.
std::vector<int> newline_token_ids(const Tokenizer& tokenizer, int model_vocab_size);

struct AskOptions {
  int max_new_tokens = 16;
  std::size_t prompts_per_call = 64;
  std::vector<int> eos_ids;             // the model's end-of-sequence token ids (stop tokens besides newlines)
  bool add_special_tokens = true;       // the tokenizer's template (e.g. BOS) on every prompt
  std::string answer_prefix = " ";      // put before an answer to find its first token
  MatchRule match = MatchRule::ExactOrPrefix;
  BucketRule bucket = BucketRule::Generation;
  double logprob_threshold = -0.6931471805599453;  // log(1/2); finite and <= 0
  bool capture_routing = true;
  const Deactivation* deactivation = nullptr;
  DecodeStats* stats = nullptr;  // engine time of prompt runs vs decoding steps (optional)
};

// A prompt's token ids as asking encodes it (with the tokenizer's template when add_special_tokens).
std::vector<std::int32_t> prompt_token_ids(const Tokenizer& tokenizer, const LanguageEntry& entry, bool add_special_tokens);

// One asked pair.
struct AskedPair {
  std::size_t question = 0;  // index into QuestionSet::questions
  std::size_t language = 0;  // index into QuestionSet::languages
  std::vector<int> generated;  // token ids, the stop token excluded
  std::string output;          // decoded text (stop token included), cut before the first line feed
  int stop_id = -1;            // the stop token met, -1 when max_new_tokens ended decoding
  MatchKind match = MatchKind::None;
  double answer_logprob = 0;   // best first-token log-probability over the accepted answers
  Bucket bucket = Bucket::Failure;
  RoutingSummary routing;      // when AskOptions::capture_routing
};

// All pairs (questions in order, languages in order) when `pairs` is empty, else the listed
// (question, language) index pairs in the given order. InputError for an index out of range, bad
// options, and the decoder's errors (engine/greedy_decoder.h).
std::vector<AskedPair> ask_questions(Engine& engine, const Tokenizer& tokenizer, const QuestionSet& questions,
                                     const std::vector<std::pair<std::size_t, std::size_t>>& pairs,
                                     const AskOptions& options);

// What a prompt must fit: the model's positions (max_position_embeddings; 0: no limit) hold the
// prompt's tokens plus max_new_tokens.
struct PromptLimits {
  int max_new_tokens = 16;
  int max_positions = 0;
  bool add_special_tokens = true;
  std::string answer_prefix = " ";
};

// Tokenizes every entry's prompt and answers before anything is asked, and lists the questions
// that cannot be asked, in question order (one per question, its first language with a problem):
// a prompt of no token (EmptyQuestion), a prompt whose tokens plus max_new_tokens exceed
// max_positions (TooLong), an answer of no token after answer_prefix (EmptyAnswer). The loader's
// skip_questions (localize_data.h) removes them or, with strict, names the first.
std::vector<LateProblem> screen_prompts(const Tokenizer& tokenizer, const QuestionSet& questions, const PromptLimits& limits);

// The pair as contrast input: question id, language, bucket and the chosen routing matrix.
ContrastPair to_contrast_pair(const QuestionSet& questions, const AskedPair& pair, RoutingStatistic stat);

}  // namespace moetrace::localize
