#include "engine/greedy_decoder.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <ctime>
#include <limits>
#include <memory>
#include <string>

#include "util/error.h"

namespace moetrace {
namespace {

// Argmax with ties to the lower index; non-finite logits are an error.
int argmax(const std::vector<float>& logits, std::size_t request) {
  int best = 0;
  for (std::size_t v = 0; v < logits.size(); ++v) {
    if (!std::isfinite(logits[v])) fail_input("decoding request {}: non-finite logit at token id {}", request, v);
    if (logits[v] > logits[best]) best = static_cast<int>(v);
  }
  return best;
}

void validate(const Engine& engine, const std::vector<DecodeRequest>& requests, const DecodeOptions& o) {
  const ModelConfig& c = engine.model().config;
  if (o.max_new_tokens < 1) fail_input("decoding: max_new_tokens must be >= 1 (got {})", o.max_new_tokens);
  if (o.prompts_per_call < 1) fail_input("decoding: prompts_per_call must be >= 1");
  for (int id : o.stop_ids)
    if (id < 0 || id >= c.vocab_size) fail_input("decoding: stop token id {} outside the vocabulary [0, {})", id, c.vocab_size);
  if (o.deactivation)
    for (auto [l, e] : *o.deactivation)
      if (l < 0 || l >= c.num_layers || e < 0 || e >= c.num_experts)
        fail_input("decoding: deactivated expert (layer {}, expert {}) outside the model ({} layers, {} experts)", l, e,
                   c.num_layers, c.num_experts);
  for (std::size_t i = 0; i < requests.size(); ++i) {
    const DecodeRequest& r = requests[i];
    if (r.prompt.empty()) fail_input("decoding request {}: empty prompt", i);
    for (int id : r.prompt)
      if (id < 0 || id >= c.vocab_size) fail_input("decoding request {}: token id {} outside the vocabulary [0, {})", i, id, c.vocab_size);
    for (int id : r.answer_ids)
      if (id < 0 || id >= c.vocab_size) fail_input("decoding request {}: answer token id {} outside the vocabulary [0, {})", i, id, c.vocab_size);
    const long long longest = static_cast<long long>(r.prompt.size()) + o.max_new_tokens;
    if (c.max_position_embeddings > 0 && longest > c.max_position_embeddings)
      fail_input("decoding request {}: prompt of {} tokens plus max_new_tokens {} exceeds max_position_embeddings {}", i,
                 r.prompt.size(), o.max_new_tokens, c.max_position_embeddings);
  }
}

// One prompt being decoded: its sequence so far and the record of the last step.
struct Active {
  std::size_t request = 0;
  Prompt seq;
  std::unique_ptr<RunRecord> record;
  int next = -1;  // token chosen at the last step, not yet in seq
  int prompt_tokens = 0;
};

// A prompt is done: its routing over prompt and generated tokens from its last (full) record.
void finish(Active& a, const DecodeOptions& o, int num_experts, DecodeResult& r) {
  if (o.capture_routing) r.routing = summarise_routing(*a.record, a.prompt_tokens, num_experts, o.deactivation);
  a.record.reset();
}

// The base of the next one-token continuation: the previous record's residual entering each layer
// and K/V (moved, not copied), with the new token's embedding appended to the input of layer 0,
// where the continuation reads its input.
// A full previous record (routing captured) gives a full base: everything moves, so that the
// continuation's full record covers the whole sequence.
std::unique_ptr<RunRecord> extend_base(Engine& engine, RunRecord& prev, int token) {
  Backend& B = engine.backend();
  auto base = std::make_unique<RunRecord>();
  base->num_tokens = prev.num_tokens + 1;
  base->level = prev.level == RecordLevel::Full ? RecordLevel::Full : RecordLevel::Base;
  base->layers.resize(prev.layers.size());
  for (std::size_t l = 0; l < prev.layers.size(); ++l) {
    if (base->level == RecordLevel::Full) {
      base->layers[l] = std::move(prev.layers[l]);
      continue;
    }
    base->layers[l].keys = std::move(prev.layers[l].keys);
    base->layers[l].values = std::move(prev.layers[l].values);
    base->layers[l].input = std::move(prev.layers[l].input);
  }
  base->output = std::move(prev.output);
  TensorPtr emb = B.embed(*engine.model().embed, {token});
  base->layers[0].input = B.concat_rows({base->layers[0].input.get(), emb.get()});
  return base;
}

// Engine::run, timed into `stats` (when given) as a prompt run or a step.
std::vector<StreamOutput> timed_run(Engine& engine, const std::vector<StreamSpec>& specs, DecodeStats* stats,
                                    bool prompt) {
  if (!stats) return engine.run(specs);
  const auto wall0 = std::chrono::steady_clock::now();
  const std::clock_t cpu0 = std::clock();
  std::vector<StreamOutput> outs = engine.run(specs);
  const double cpu = static_cast<double>(std::clock() - cpu0) / CLOCKS_PER_SEC;
  const double wall = std::chrono::duration<double>(std::chrono::steady_clock::now() - wall0).count();
  (prompt ? stats->prompt_wall_s : stats->step_wall_s) += wall;
  (prompt ? stats->prompt_cpu_s : stats->step_cpu_s) += cpu;
  (prompt ? stats->prompt_calls : stats->step_calls) += 1;
  (prompt ? stats->prompt_streams : stats->step_streams) += specs.size();
  if (prompt)
    for (const StreamSpec& s : specs) stats->prompt_tokens += static_cast<std::uint64_t>(s.prompt->num_tokens());
  return outs;
}

StreamSpec stream_spec(const Prompt& seq, const DecodeOptions& o) {
  StreamSpec s;
  s.prompt = &seq;
  s.deactivation = o.deactivation;
  s.record = o.capture_routing ? RecordLevel::Full : RecordLevel::Base;
  s.readout = Readout::LastLogits;
  return s;
}

// Prompt runs: one call for the group; each prompt's answer log-probabilities and its first chosen token.
void run_prompts(Engine& engine, const std::vector<DecodeRequest>& requests, const DecodeOptions& o,
                 std::vector<Active>& active, std::vector<DecodeResult>& out) {
  std::vector<StreamSpec> specs;
  for (Active& a : active) {
    a.seq.ids = requests[a.request].prompt;
    a.prompt_tokens = a.seq.num_tokens();
    specs.push_back(stream_spec(a.seq, o));
  }
  std::vector<StreamOutput> outs = timed_run(engine, specs, o.stats, true);
  for (std::size_t j = 0; j < active.size(); ++j) {
    Active& a = active[j];
    DecodeResult& r = out[a.request];
    for (int id : requests[a.request].answer_ids) r.answer_logprobs.push_back(log_softmax_at(outs[j].logits, id));
    a.record = std::move(outs[j].record);
    a.next = argmax(outs[j].logits, a.request);
    r.token_logprobs.push_back(log_softmax_at(outs[j].logits, a.next));
  }
}

// Takes each stream's chosen token: finishes the streams that stop here, returns those that go on.
std::vector<Active*> take_chosen_tokens(std::vector<Active>& active, const DecodeOptions& o, int E,
                                        std::vector<DecodeResult>& out) {
  std::vector<Active*> running;
  for (Active& a : active) {
    if (!a.record) continue;
    DecodeResult& r = out[a.request];
    if (std::find(o.stop_ids.begin(), o.stop_ids.end(), a.next) != o.stop_ids.end()) {
      r.stop_id = a.next;
      r.token_logprobs.pop_back();  // the stop token is not part of the output
      finish(a, o, E, r);
      continue;
    }
    r.tokens.push_back(a.next);
    if (static_cast<int>(r.tokens.size()) >= o.max_new_tokens) {
      finish(a, o, E, r);
      continue;
    }
    running.push_back(&a);
  }
  return running;
}

// One step: every running stream continues by its chosen token (one call) and chooses the next.
void step(Engine& engine, const std::vector<Active*>& running, const DecodeOptions& o, std::vector<DecodeResult>& out) {
  std::vector<std::unique_ptr<RunRecord>> bases;
  std::vector<StreamSpec> specs;
  for (Active* a : running) {
    bases.push_back(extend_base(engine, *a->record, a->next));
    a->record.reset();
    a->seq.ids.push_back(a->next);
    StreamSpec s = stream_spec(a->seq, o);
    s.start_pos = a->seq.num_tokens() - 1;
    s.base = bases.back().get();
    specs.push_back(s);
  }
  std::vector<StreamOutput> outs = timed_run(engine, specs, o.stats, false);
  for (std::size_t j = 0; j < running.size(); ++j) {
    Active& a = *running[j];
    a.record = std::move(outs[j].record);
    a.next = argmax(outs[j].logits, a.request);
    out[a.request].token_logprobs.push_back(log_softmax_at(outs[j].logits, a.next));
  }
}

void decode_group(Engine& engine, const std::vector<DecodeRequest>& requests, std::size_t begin, std::size_t end,
                  const DecodeOptions& o, std::vector<DecodeResult>& out) {
  const int E = engine.model().config.num_experts;
  std::vector<Active> active(end - begin);
  for (std::size_t i = begin; i < end; ++i) active[i - begin].request = i;
  run_prompts(engine, requests, o, active, out);
  for (;;) {
    const std::vector<Active*> running = take_chosen_tokens(active, o, E, out);
    if (running.empty()) break;
    step(engine, running, o, out);
  }
}

}  // namespace

double log_softmax_at(const std::vector<float>& logits, int id) {
  MOETRACE_ASSERT(id >= 0 && static_cast<std::size_t>(id) < logits.size(), "log-softmax index out of range");
  double mx = -std::numeric_limits<double>::infinity();
  for (float v : logits) mx = std::max(mx, static_cast<double>(v));
  double sum = 0.0;
  for (float v : logits) sum += std::exp(static_cast<double>(v) - mx);
  return static_cast<double>(logits[id]) - mx - std::log(sum);
}

RoutingSummary summarise_routing(const RunRecord& record, int num_experts, const Deactivation* deactivation) {
  return summarise_routing(record, record.num_tokens, num_experts, deactivation);
}

namespace {

// The router's probabilities over the experts not masked (masked ones: 0), in double.
void masked_softmax(const float* z, const char* masked, int E, std::vector<double>& p) {
  double mx = -std::numeric_limits<double>::infinity();
  for (int e = 0; e < E; ++e)
    if (!masked[e]) mx = std::max(mx, static_cast<double>(z[e]));
  double sum = 0.0;
  for (int e = 0; e < E; ++e) {
    p[e] = masked[e] ? 0.0 : std::exp(static_cast<double>(z[e]) - mx);
    sum += p[e];
  }
  for (int e = 0; e < E; ++e) p[e] /= sum;
}

// One layer's sums over the prompt and over the generated positions become means.
void sums_to_means(RoutingSummary& s, std::size_t row0, int E, int prompt_tokens) {
  const double m = s.generated_positions > 0 ? static_cast<double>(s.generated_positions)
                                              : std::numeric_limits<double>::quiet_NaN();
  for (int e = 0; e < E; ++e) {
    s.logit_mean[row0 + e] /= prompt_tokens;
    s.prob_mean[row0 + e] /= prompt_tokens;
    s.selected_mean[row0 + e] /= prompt_tokens;
    s.logit_generated[row0 + e] /= m;  // 0 / NaN = NaN when nothing was generated
    s.prob_generated[row0 + e] /= m;
    s.selected_generated[row0 + e] /= m;
  }
}

}  // namespace

RoutingSummary summarise_routing(const RunRecord& record, int prompt_tokens, int num_experts,
                                 const Deactivation* deactivation) {
  MOETRACE_ASSERT(record.level == RecordLevel::Full, "routing statistics need a full record");
  const int L = static_cast<int>(record.layers.size()), E = num_experts, T = record.num_tokens;
  MOETRACE_ASSERT(prompt_tokens > 0 && prompt_tokens <= T, "routing statistics: prompt tokens outside the run");
  RoutingSummary s;
  s.layers = L;
  s.experts = E;
  s.generated_positions = T - prompt_tokens;
  const std::size_t n = static_cast<std::size_t>(L) * E;
  for (auto* v : {&s.logit_mean, &s.prob_mean, &s.selected_mean, &s.logit_last, &s.prob_last, &s.selected_last,
                  &s.logit_generated, &s.prob_generated, &s.selected_generated})
    v->assign(n, 0.0);
  std::vector<char> masked(n, 0);
  if (deactivation)
    for (auto [l, e] : *deactivation) masked[static_cast<std::size_t>(l) * E + e] = 1;
  std::vector<double> p(E);
  for (int l = 0; l < L; ++l) {
    const LayerRecord& R = record.layers[l];
    MOETRACE_ASSERT(R.router_logits.size() == static_cast<std::size_t>(T) * E, "router logits of a full record");
    MOETRACE_ASSERT(R.routing.experts.size() == static_cast<std::size_t>(T) * R.routing.k, "routing of a full record");
    const int K = R.routing.k;
    const std::size_t row0 = static_cast<std::size_t>(l) * E;
    for (int t = 0; t < T; ++t) {
      const bool prompt = t < prompt_tokens;
      double* logit = prompt ? &s.logit_mean[row0] : &s.logit_generated[row0];
      double* prob = prompt ? &s.prob_mean[row0] : &s.prob_generated[row0];
      double* selected = prompt ? &s.selected_mean[row0] : &s.selected_generated[row0];
      const float* z = &R.router_logits[static_cast<std::size_t>(t) * E];
      masked_softmax(z, &masked[row0], E, p);
      for (int e = 0; e < E; ++e) {
        logit[e] += z[e];
        prob[e] += p[e];
      }
      for (int j = 0; j < K; ++j) selected[R.routing.experts[static_cast<std::size_t>(t) * K + j]] += 1.0;
      if (t == prompt_tokens - 1) {
        for (int e = 0; e < E; ++e) {
          s.logit_last[row0 + e] = z[e];
          s.prob_last[row0 + e] = p[e];
        }
        for (int j = 0; j < K; ++j) s.selected_last[row0 + R.routing.experts[static_cast<std::size_t>(t) * K + j]] = 1.0;
      }
    }
    sums_to_means(s, row0, E, prompt_tokens);
  }
  return s;
}

std::vector<DecodeResult> greedy_decode(Engine& engine, const std::vector<DecodeRequest>& requests,
                                        const DecodeOptions& options) {
  validate(engine, requests, options);
  std::vector<DecodeResult> out(requests.size());
  for (auto [begin, end] : decode_groups(requests.size(), options.prompts_per_call))
    decode_group(engine, requests, begin, end, options, out);
  return out;
}

std::vector<std::pair<std::size_t, std::size_t>> decode_groups(std::size_t requests, std::size_t prompts_per_call) {
  MOETRACE_ASSERT(prompts_per_call >= 1, "decode groups of no prompt");
  std::vector<std::pair<std::size_t, std::size_t>> groups;
  for (std::size_t b = 0; b < requests; b += prompts_per_call) groups.emplace_back(b, std::min(requests, b + prompts_per_call));
  return groups;
}

std::vector<CallShape> decode_calls(const std::vector<int>& prompt_tokens, const std::vector<int>& steps,
                                    std::size_t prompts_per_call, int layers, bool routing) {
  MOETRACE_ASSERT(prompt_tokens.size() == steps.size(), "decode calls: one step count per prompt");
  std::vector<CallShape> calls;
  const auto L = static_cast<std::uint64_t>(layers);
  for (auto [begin, end] : decode_groups(prompt_tokens.size(), prompts_per_call)) {
    std::uint64_t tokens = 0;
    int longest = 0;
    for (std::size_t i = begin; i < end; ++i) {
      tokens += static_cast<std::uint64_t>(prompt_tokens[i]);
      longest = std::max(longest, steps[i]);
    }
    calls.push_back({layers, L * tokens, routing});
    for (int k = 1; k <= longest; ++k) {
      std::uint64_t running = 0;
      for (std::size_t i = begin; i < end; ++i) running += steps[i] >= k ? 1 : 0;
      calls.push_back({layers, L * running, routing});
    }
  }
  return calls;
}

}  // namespace moetrace
