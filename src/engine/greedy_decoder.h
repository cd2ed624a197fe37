#pragma once
// Greedy decoding with the K/V cache, for asking questions (router-contrast localisation,
// docs/localize.md "Asking" and "Routing statistics").
//
// Each prompt is run once in full (recorded, so that its K/V can be continued); every new token is
// then a one-token continuation of the previous step's record: the stream's prompt is the sequence
// so far, it starts at (layer 0, position T) and its base is the previous record with the new
// token's embedding appended to the residual entering layer 0. Many prompts share each engine call;
// the backend's row independence (docs/engine.md) makes every prompt's output independent of which
// and how many prompts share a call. With routing captured, the prompt run and every step keep a
// full record (the routing of the generated tokens comes from the steps themselves).
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <utility>
#include <vector>

#include "engine/forward.h"
#include "engine/work_shape.h"

namespace moetrace {

struct DecodeRequest {
  std::vector<int> prompt;        // token ids, non-empty
  std::vector<int> answer_ids;    // first token of each accepted answer: log p at the last prompt position
};

// Where a decode spent its engine time (optional, DecodeOptions::stats; added to, never reset):
// the prompt runs versus the decoding steps (one-token continuations). Seconds are wall time and
// process CPU time (all threads) around each Engine::run call; streams count prompts per call
// summed over calls.
struct DecodeStats {
  double prompt_wall_s = 0, prompt_cpu_s = 0, step_wall_s = 0, step_cpu_s = 0;
  std::uint64_t prompt_calls = 0, step_calls = 0;
  std::uint64_t prompt_streams = 0, step_streams = 0;
  std::uint64_t prompt_tokens = 0;  // tokens of the prompt runs (each step runs one token per stream)
};

struct DecodeOptions {
  int max_new_tokens = 16;                     // >= 1
  std::vector<int> stop_ids;                   // newline and EOS tokens: decoding of a prompt stops at one
  const Deactivation* deactivation = nullptr;  // applied to the prompt run and every step
  bool capture_routing = false;                // fill DecodeResult::routing (every run is recorded fully)
  std::size_t prompts_per_call = 64;           // prompts decoded together (>= 1)
  DecodeStats* stats = nullptr;                // engine time of prompt runs and steps (optional)
};

// Router statistics of one prompt per (layer, expert), each a [layers x experts] row-major matrix
// (the layout of ContrastPair::values, src/localize/localize_contrast.h):
//  - logit: the router logit as the router computed it (before the deactivation mask);
//  - prob: softmax over all experts of the logits, in double, with deactivated experts at -inf
//    (probability 0);
//  - selected: 1 where the expert is among the token's top-k (the routing the run used), else 0.
// Over the prompt's tokens: `*_mean` is the mean over the prompt's T tokens, `*_last` the value at
// the last prompt token (position T - 1, whose logits choose the first generated token).
// Over the generated tokens: `*_generated` is the mean over the positions of the generated tokens
// that were fed back into the model, i.e. the one-token continuations of the decoding steps:
// positions T, ..., T + m - 1 where generated token i (0-based) sits at position T + i and m =
// `generated_positions` is the number of decoding steps run for the prompt. The routing at
// position T + i is the routing computed while reading generated token i (which chooses token
// i + 1). A generated token that ends decoding by reaching max_new_tokens is never fed back, and
// a stop token is not generated, so m = tokens.size() - 1 when max_new_tokens ended decoding and
// m = tokens.size() when a stop token did. With m = 0 (max_new_tokens = 1, or a stop token
// chosen first) every `*_generated` entry is NaN (the vectors keep their layers x experts size;
// has_generated_routing() says whether they hold values).
struct RoutingSummary {
  int layers = 0;
  int experts = 0;
  std::vector<double> logit_mean, prob_mean, selected_mean;
  std::vector<double> logit_last, prob_last, selected_last;
  std::vector<double> logit_generated, prob_generated, selected_generated;
  int generated_positions = 0;  // m above
  bool has_generated_routing() const { return generated_positions > 0; }
};

struct DecodeResult {
  std::vector<int> tokens;             // generated tokens, the stop token excluded
  std::vector<double> token_logprobs;  // log p of each generated token (log-softmax over the vocabulary)
  int stop_id = -1;                    // the stop token that ended decoding, -1 when max_new_tokens did
  std::vector<double> answer_logprobs; // per DecodeRequest::answer_ids, at the last prompt position
  RoutingSummary routing;              // when DecodeOptions::capture_routing
};

// Decodes every request greedily (argmax, ties to the lower token id). Throws InputError (naming the
// request index) for an empty prompt, a token id outside the vocabulary, a prompt plus max_new_tokens
// longer than the model's max_position_embeddings (where the config has one), bad options, and
// non-finite logits.
std::vector<DecodeResult> greedy_decode(Engine& engine, const std::vector<DecodeRequest>& requests,
                                        const DecodeOptions& options);

// The requests decoded together, [begin, end) in request order: groups of prompts_per_call. Each
// group is one prompt run, then one one-token continuation call per decoding step while any of its
// prompts still decodes.
std::vector<std::pair<std::size_t, std::size_t>> decode_groups(std::size_t requests, std::size_t prompts_per_call);

// Decoding steps (one-token continuations) a prompt ran, from what it generated: its generated
// tokens when a stop token ended decoding, one fewer when max_new_tokens did (the last token is not
// fed back). Equals RoutingSummary::generated_positions; at most max_new_tokens - 1.
inline int decoding_steps(int generated, bool stopped) { return stopped ? generated : std::max(0, generated - 1); }

// The engine calls greedy_decode makes (engine/work_shape.h) for prompts of `prompt_tokens` tokens
// that run `steps` decoding steps each (decoding_steps): per decode_groups group, the prompt run
// (every layer, the group's prompt tokens) and per step k = 1, 2, ... a call with one row per prompt
// with steps >= k. Every call starts at layer 0. `routing` (DecodeOptions::capture_routing): every
// call records fully, marked CallShape::prepare.
std::vector<CallShape> decode_calls(const std::vector<int>& prompt_tokens, const std::vector<int>& steps,
                                    std::size_t prompts_per_call, int layers, bool routing);

// log-softmax of `logits` at index `id`, in double: logits[id] - max - log(sum exp(logits - max)).
double log_softmax_at(const std::vector<float>& logits, int id);

// The RoutingSummary of a fully recorded run (RecordLevel::Full) whose tokens are all prompt
// tokens (the *_generated entries NaN, generated_positions 0).
RoutingSummary summarise_routing(const RunRecord& record, int num_experts, const Deactivation* deactivation);

// The RoutingSummary of a fully recorded run of prompt_tokens prompt tokens followed by
// record.num_tokens - prompt_tokens generated tokens fed back (1 <= prompt_tokens <= num_tokens):
// *_mean and *_last over positions [0, prompt_tokens), *_generated over the rest.
RoutingSummary summarise_routing(const RunRecord& record, int prompt_tokens, int num_experts,
                                 const Deactivation* deactivation);

}  // namespace moetrace
