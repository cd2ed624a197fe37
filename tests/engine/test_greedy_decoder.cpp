// Greedy decoding with the K/V cache (engine/greedy_decoder.h) on the three fixture models:
// equal to step-by-step full recomputation (the whole sequence re-run every step), with and without
// a deactivation; stopping at stop tokens; independent of how many prompts share an engine call;
// answer log-probabilities equal a log-softmax of the full logits; the routing summary equals the
// statistics computed by hand from a fully recorded run; the routing at the generated tokens equals
// that of a full recomputation at their positions.
#define BOOST_TEST_MODULE greedy_decoder
#include <boost/test/unit_test.hpp>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "backend/backend.h"
#include "engine/device_model.h"
#include "engine/greedy_decoder.h"
#include "support/routing_reference.h"
#include "model/model_weights.h"
#include "results/fixture_io.h"
#include "support/test_paths.h"
#include "util/error.h"

using namespace moetrace;

namespace {

const std::vector<std::string> kModels = {"mixtral-tiny", "qwen3moe-tiny", "olmoe-tiny"};
constexpr int kNewTokens = 8;

struct Fixture {
  ModelWeights weights;
  std::unique_ptr<Backend> backend;
  DeviceModel model;
  std::unique_ptr<Engine> engine;
  std::vector<DecodeRequest> requests;
  Deactivation deactivation;  // the fixture's own deactivation set (or a made-up one)

  explicit Fixture(const std::string& m)
      : weights(load_model(test::fixtures_dir() / m)), backend(make_cpu_backend()),
        model(upload_model(weights, *backend)), engine(std::make_unique<Engine>(model, *backend)) {
    const ModelConfig& c = weights.config;
    auto facts = read_fixture_inputs((test::fixtures_dir() / (m + ".golden.h5")).string(), c.hidden_size);
    for (const FixtureFact& f : facts) {
      requests.push_back({f.ids, {f.true_id, f.foil_id, 0, c.vocab_size - 1}});
      if (deactivation.empty()) deactivation = f.deactivate;
    }
    // Prompts of other lengths: one token, and a prefix of the first fact.
    requests.push_back({{requests[0].prompt.back()}, {1}});
    requests.push_back({std::vector<int>(requests[0].prompt.begin(), requests[0].prompt.begin() + 3), {2, 3}});
    if (deactivation.empty()) deactivation = {{0, 0}, {1, 1}, {c.num_layers - 1, c.num_experts - 1}};
  }
  const ModelConfig& config() const { return weights.config; }

  // Full logits at the last position of `ids`, from a full run of the whole sequence.
  std::vector<float> full_logits(const std::vector<int>& ids, const Deactivation* d) {
    Prompt p;
    p.ids = ids;
    StreamSpec s;
    s.prompt = &p;
    s.deactivation = d;
    s.readout = Readout::LastLogits;
    return engine->run({s}).front().logits;
  }
};

int argmax(const std::vector<float>& v) {
  return static_cast<int>(std::max_element(v.begin(), v.end()) - v.begin());  // first maximum
}

// Independent log-softmax: long double, no max shift needed at these magnitudes but done anyway.
double reference_log_softmax(const std::vector<float>& v, int id) {
  long double mx = *std::max_element(v.begin(), v.end()), sum = 0;
  for (float x : v) sum += std::exp(static_cast<long double>(x) - mx);
  return static_cast<double>(static_cast<long double>(v[id]) - mx - std::log(sum));
}

struct Reference {
  std::vector<int> tokens;
  std::vector<double> logprobs;
  int stop_id = -1;
};

// Step-by-step full recomputation: every step re-runs the whole sequence from the embeddings.
Reference recompute(Fixture& f, const std::vector<int>& prompt, int max_new, const std::vector<int>& stops,
                    const Deactivation* d) {
  Reference r;
  std::vector<int> seq = prompt;
  while (static_cast<int>(r.tokens.size()) < max_new) {
    const std::vector<float> logits = f.full_logits(seq, d);
    const int next = argmax(logits);
    if (std::find(stops.begin(), stops.end(), next) != stops.end()) {
      r.stop_id = next;
      break;
    }
    r.tokens.push_back(next);
    r.logprobs.push_back(reference_log_softmax(logits, next));
    seq.push_back(next);
  }
  return r;
}

void expect_equal(const DecodeResult& got, const Reference& want, const std::string& what) {
  BOOST_TEST(got.tokens == want.tokens, what);
  BOOST_TEST(got.stop_id == want.stop_id, what);
  BOOST_REQUIRE_EQUAL(got.token_logprobs.size(), want.logprobs.size());
  for (std::size_t i = 0; i < want.logprobs.size(); ++i)
    BOOST_TEST(std::abs(got.token_logprobs[i] - want.logprobs[i]) <= 1e-9, what << " step " << i);
}

// Equal values, NaN equal to NaN (the *_generated entries of a prompt without generated routing).
bool same_values(const std::vector<double>& a, const std::vector<double>& b) {
  if (a.size() != b.size()) return false;
  for (std::size_t i = 0; i < a.size(); ++i)
    if (!(a[i] == b[i] || (std::isnan(a[i]) && std::isnan(b[i])))) return false;
  return true;
}

bool same(const DecodeResult& a, const DecodeResult& b) {
  const RoutingSummary &x = a.routing, &y = b.routing;
  return a.tokens == b.tokens && a.token_logprobs == b.token_logprobs && a.stop_id == b.stop_id &&
         a.answer_logprobs == b.answer_logprobs && x.logit_mean == y.logit_mean && x.prob_mean == y.prob_mean &&
         x.selected_mean == y.selected_mean && x.logit_last == y.logit_last && x.prob_last == y.prob_last &&
         x.selected_last == y.selected_last && x.generated_positions == y.generated_positions &&
         same_values(x.logit_generated, y.logit_generated) && same_values(x.prob_generated, y.prob_generated) &&
         same_values(x.selected_generated, y.selected_generated);
}

// Routing means over positions [begin, end) of one full run of `ids`, computed by hand in long
// double: softmax over the unmasked experts, top-k from the float64 reference routing
// (tests/support/routing_reference.h), not from the record. [layers x experts] each.
struct HandRouting {
  std::vector<double> logit, prob, selected;
};
HandRouting hand_routing(Fixture& f, const std::vector<int>& ids, const Deactivation* d, int begin, int end) {
  const ModelConfig& c = f.config();
  const int L = c.num_layers, E = c.num_experts, K = c.top_k;
  Prompt p;
  p.ids = ids;
  const int T = p.num_tokens();
  StreamSpec s;
  s.prompt = &p;
  s.deactivation = d;
  s.record = RecordLevel::Full;
  const auto rec = std::move(f.engine->run({s}).front().record);
  HandRouting h;
  for (auto* v : {&h.logit, &h.prob, &h.selected}) v->assign(static_cast<std::size_t>(L) * E, 0.0);
  for (int l = 0; l < L; ++l) {
    const std::vector<float>& z = rec->layers[l].router_logits;
    std::vector<bool> off(E, false);
    if (d)
      for (auto [dl, de] : *d)
        if (dl == l) off[de] = true;
    std::vector<std::vector<int>> masked(T);
    for (int t = 0; t < T; ++t)
      for (int e = 0; e < E; ++e)
        if (off[e]) masked[t].push_back(e);
    const test::ReferenceRouting top = test::reference_routing(z, T, E, K, c.norm_topk_prob, masked);
    for (int e = 0; e < E; ++e) {
      long double logit_sum = 0, prob_sum = 0, sel_sum = 0;
      for (int t = begin; t < end; ++t) {
        long double denom = 0;
        for (int e2 = 0; e2 < E; ++e2)
          if (!off[e2]) denom += std::exp(static_cast<long double>(z[t * E + e2]));
        logit_sum += z[t * E + e];
        prob_sum += off[e] ? 0 : std::exp(static_cast<long double>(z[t * E + e])) / denom;
        sel_sum += top.routes(t, e);
      }
      const std::size_t at = static_cast<std::size_t>(l) * E + e;
      h.logit[at] = static_cast<double>(logit_sum / (end - begin));
      h.prob[at] = static_cast<double>(prob_sum / (end - begin));
      h.selected[at] = static_cast<double>(sel_sum / (end - begin));
    }
  }
  return h;
}

}  // namespace

BOOST_AUTO_TEST_CASE(cache_equals_full_recomputation) {
  for (const std::string& m : kModels) {
    Fixture f(m);
    for (const Deactivation* d : std::vector<const Deactivation*>{nullptr, &f.deactivation}) {
      DecodeOptions o;
      o.max_new_tokens = kNewTokens;
      o.deactivation = d;
      o.prompts_per_call = f.requests.size();
      const std::vector<DecodeResult> got = greedy_decode(*f.engine, f.requests, o);
      BOOST_REQUIRE_EQUAL(got.size(), f.requests.size());
      for (std::size_t i = 0; i < f.requests.size(); ++i) {
        const std::string what = m + (d ? " deactivated" : "") + " prompt " + std::to_string(i);
        BOOST_TEST(got[i].tokens.size() == static_cast<std::size_t>(kNewTokens), what);
        expect_equal(got[i], recompute(f, f.requests[i].prompt, kNewTokens, {}, d), what);
      }
    }
    // The cache is used: a prompt of T tokens and N new tokens costs L x (T + N - 1) layer-token
    // steps (the prompt run, then one token per step), not the L x (N T + N (N - 1) / 2) of recomputation.
    // With the routing captured (full records) as well.
    for (const bool routing : {false, true}) {
      DecodeOptions o;
      o.max_new_tokens = kNewTokens;
      o.capture_routing = routing;
      f.engine->reset_steps();
      greedy_decode(*f.engine, {f.requests[0]}, o);
      const auto T = f.requests[0].prompt.size();
      BOOST_TEST(f.engine->layer_token_steps() ==
                 static_cast<std::uint64_t>(f.config().num_layers) * (T + kNewTokens - 1));
    }
    // The deactivation must matter, or the second pass above proves nothing about it.
    DecodeOptions plain, masked;
    plain.max_new_tokens = masked.max_new_tokens = 2;
    masked.deactivation = &f.deactivation;
    const auto a = greedy_decode(*f.engine, f.requests, plain), b = greedy_decode(*f.engine, f.requests, masked);
    bool differs = false;
    for (std::size_t i = 0; i < a.size(); ++i) differs = differs || a[i].token_logprobs != b[i].token_logprobs;
    BOOST_TEST(differs, m << ": the deactivation changes no log-probability");
  }
}

BOOST_AUTO_TEST_CASE(stops_at_stop_tokens) {
  for (const std::string& m : kModels) {
    Fixture f(m);
    DecodeOptions o;
    o.max_new_tokens = kNewTokens;
    const auto free_run = greedy_decode(*f.engine, f.requests, o);
    // Stop at prompt 0's third token ("newline") or at the model's EOS.
    const int newline = free_run[0].tokens.at(2), eos = 2;  // the fixtures' eos_token_id (config.json)
    o.stop_ids = {newline, eos};
    const auto got = greedy_decode(*f.engine, f.requests, o);
    BOOST_TEST(got[0].stop_id == newline);
    BOOST_TEST(got[0].tokens.size() <= 2u);
    for (std::size_t i = 0; i < f.requests.size(); ++i) {
      const std::string what = m + " prompt " + std::to_string(i);
      // The stopped output is the free run cut before the first stop token.
      const auto& all = free_run[i].tokens;
      const auto cut = std::find_if(all.begin(), all.end(), [&](int t) { return t == newline || t == eos; });
      BOOST_TEST(got[i].tokens == std::vector<int>(all.begin(), cut), what);
      BOOST_TEST(got[i].stop_id == (cut == all.end() ? -1 : *cut), what);
      BOOST_TEST(got[i].token_logprobs ==
                     std::vector<double>(free_run[i].token_logprobs.begin(),
                                         free_run[i].token_logprobs.begin() + (cut - all.begin())),
                 what);
      expect_equal(got[i], recompute(f, f.requests[i].prompt, kNewTokens, o.stop_ids, nullptr), what);
    }
    // A stop at the very first token gives an empty output.
    o.stop_ids = {free_run[1].tokens.at(0)};
    const auto first = greedy_decode(*f.engine, {f.requests[1]}, o);
    BOOST_TEST(first[0].tokens.empty());
    BOOST_TEST(first[0].token_logprobs.empty());
    BOOST_TEST(first[0].stop_id == free_run[1].tokens.at(0));
    // max_new_tokens bounds the output.
    o.stop_ids.clear();
    o.max_new_tokens = 1;
    const auto one = greedy_decode(*f.engine, f.requests, o);
    for (std::size_t i = 0; i < one.size(); ++i) BOOST_TEST(one[i].tokens == std::vector<int>{free_run[i].tokens.at(0)});
  }
}

BOOST_AUTO_TEST_CASE(batch_composition_changes_nothing) {
  for (const std::string& m : kModels) {
    Fixture f(m);
    DecodeOptions o;
    o.max_new_tokens = kNewTokens;
    o.capture_routing = true;
    o.deactivation = &f.deactivation;
    // Stop tokens make prompts leave the batch at different steps.
    o.stop_ids = {greedy_decode(*f.engine, {f.requests[0]}, o)[0].tokens.at(3)};
    o.prompts_per_call = f.requests.size();
    const auto all = greedy_decode(*f.engine, f.requests, o);
    for (std::size_t per_call : {std::size_t{1}, std::size_t{2}, std::size_t{3}}) {
      o.prompts_per_call = per_call;
      const auto got = greedy_decode(*f.engine, f.requests, o);
      for (std::size_t i = 0; i < all.size(); ++i)
        BOOST_TEST(same(got[i], all[i]), m << " prompt " << i << " with " << per_call << " prompts per call");
    }
    // Reversed order: each prompt's result unchanged.
    std::vector<DecodeRequest> reversed(f.requests.rbegin(), f.requests.rend());
    o.prompts_per_call = 4;
    const auto rev = greedy_decode(*f.engine, reversed, o);
    for (std::size_t i = 0; i < all.size(); ++i)
      BOOST_TEST(same(rev[all.size() - 1 - i], all[i]), m << " prompt " << i << " reversed");
  }
}

BOOST_AUTO_TEST_CASE(answer_logprobs_are_log_softmax_of_full_logits) {
  for (const std::string& m : kModels) {
    Fixture f(m);
    for (const Deactivation* d : std::vector<const Deactivation*>{nullptr, &f.deactivation}) {
      DecodeOptions o;
      o.max_new_tokens = 1;
      o.deactivation = d;
      const auto got = greedy_decode(*f.engine, f.requests, o);
      for (std::size_t i = 0; i < f.requests.size(); ++i) {
        const std::vector<float> logits = f.full_logits(f.requests[i].prompt, d);
        BOOST_REQUIRE_EQUAL(got[i].answer_logprobs.size(), f.requests[i].answer_ids.size());
        for (std::size_t a = 0; a < f.requests[i].answer_ids.size(); ++a) {
          const double want = reference_log_softmax(logits, f.requests[i].answer_ids[a]);
          BOOST_TEST(std::abs(got[i].answer_logprobs[a] - want) <= 1e-9, m << " prompt " << i << " answer " << a);
          BOOST_TEST(got[i].answer_logprobs[a] <= 0.0);
        }
        // And they are log-probabilities: exp over the whole vocabulary sums to 1.
        long double total = 0;
        for (int v = 0; v < f.config().vocab_size; ++v) total += std::exp(static_cast<long double>(log_softmax_at(logits, v)));
        BOOST_TEST(std::abs(static_cast<double>(total) - 1.0) <= 1e-9);
      }
    }
  }
}

BOOST_AUTO_TEST_CASE(routing_summary_equals_hand_computation) {
  for (const std::string& m : kModels) {
    Fixture f(m);
    const ModelConfig& c = f.config();
    const int L = c.num_layers, E = c.num_experts, K = c.top_k;
    for (const Deactivation* d : std::vector<const Deactivation*>{nullptr, &f.deactivation}) {
      DecodeOptions o;
      o.max_new_tokens = 2;
      o.deactivation = d;
      o.capture_routing = true;
      const auto got = greedy_decode(*f.engine, f.requests, o);
      for (std::size_t i = 0; i < f.requests.size(); ++i) {
        const std::string what = m + (d ? " deactivated" : "") + " prompt " + std::to_string(i);
        Prompt p;
        p.ids = f.requests[i].prompt;
        const int T = p.num_tokens();
        StreamSpec s;
        s.prompt = &p;
        s.deactivation = d;
        s.record = RecordLevel::Full;
        const auto rec = std::move(f.engine->run({s}).front().record);
        const RoutingSummary& r = got[i].routing;
        BOOST_REQUIRE_EQUAL(r.layers, L);
        BOOST_REQUIRE_EQUAL(r.experts, E);
        for (int l = 0; l < L; ++l) {
          const std::vector<float>& z = rec->layers[l].router_logits;
          std::vector<std::vector<int>> masked(T);
          std::vector<bool> off(E, false);
          if (d)
            for (auto [dl, de] : *d)
              if (dl == l) off[de] = true;
          for (int t = 0; t < T; ++t)
            for (int e = 0; e < E; ++e)
              if (off[e]) masked[t].push_back(e);
          // The top-k from the reference routing (tests/support/routing_reference.h), not from the record.
          const test::ReferenceRouting top = test::reference_routing(z, T, E, K, c.norm_topk_prob, masked);
          for (int e = 0; e < E; ++e) {
            long double logit_sum = 0, prob_sum = 0, sel_sum = 0, prob_last = 0;
            for (int t = 0; t < T; ++t) {
              long double denom = 0;
              for (int e2 = 0; e2 < E; ++e2)
                if (!off[e2]) denom += std::exp(static_cast<long double>(z[t * E + e2]));
              const long double pe = off[e] ? 0 : std::exp(static_cast<long double>(z[t * E + e])) / denom;
              logit_sum += z[t * E + e];
              prob_sum += pe;
              const bool sel = top.routes(t, e);
              sel_sum += sel;
              if (t == T - 1) {
                prob_last = pe;
                BOOST_TEST(r.selected_last[l * E + e] == (sel ? 1.0 : 0.0), what);
                BOOST_TEST(r.logit_last[l * E + e] == static_cast<double>(z[t * E + e]), what);
              }
            }
            const std::size_t at = static_cast<std::size_t>(l) * E + e;
            BOOST_TEST(std::abs(r.logit_mean[at] - static_cast<double>(logit_sum / T)) <= 1e-12, what);
            BOOST_TEST(std::abs(r.prob_mean[at] - static_cast<double>(prob_sum / T)) <= 1e-12, what);
            BOOST_TEST(std::abs(r.prob_last[at] - static_cast<double>(prob_last)) <= 1e-12, what);
            BOOST_TEST(r.selected_mean[at] == static_cast<double>(sel_sum / T), what);
            if (off[e]) BOOST_TEST(r.prob_mean[at] == 0.0, what);
            if (off[e]) BOOST_TEST(r.selected_mean[at] == 0.0, what);
          }
          double sel_total = 0;
          for (int e = 0; e < E; ++e) sel_total += r.selected_mean[l * E + e];
          BOOST_TEST(std::abs(sel_total - K) <= 1e-12, what);
        }
      }
    }
  }
}

// The routing at the generated tokens equals the routing of a full recomputation of the whole
// sequence (prompt plus the generated tokens fed back) at their positions T .. T + m - 1, with and
// without a deactivation; m counts the decoding steps (engine/greedy_decoder.h).
BOOST_AUTO_TEST_CASE(generated_routing_equals_full_recomputation) {
  for (const std::string& m : kModels) {
    Fixture f(m);
    const ModelConfig& c = f.config();
    const std::size_t n = static_cast<std::size_t>(c.num_layers) * c.num_experts;
    for (const Deactivation* d : std::vector<const Deactivation*>{nullptr, &f.deactivation}) {
      DecodeOptions o;
      o.max_new_tokens = kNewTokens;
      o.deactivation = d;
      o.capture_routing = true;
      o.prompts_per_call = f.requests.size();
      // Without stop tokens every prompt runs max_new_tokens - 1 steps; with prompt 0's fourth token
      // as a stop token, prompts end at different steps and a stopped prompt's last token was fed back.
      const auto free_run = greedy_decode(*f.engine, f.requests, o);
      for (const bool with_stop : {false, true}) {
        DecodeOptions oo = o;
        if (with_stop) oo.stop_ids = {free_run[0].tokens.at(3)};
        const auto got = with_stop ? greedy_decode(*f.engine, f.requests, oo) : free_run;
        bool some_stopped = false;
        for (std::size_t i = 0; i < f.requests.size(); ++i) {
          const std::string what = m + (d ? " deactivated" : "") + (with_stop ? " stopped" : "") + " prompt " +
                                   std::to_string(i);
          const DecodeResult& r = got[i];
          const RoutingSummary& g = r.routing;
          const int T = static_cast<int>(f.requests[i].prompt.size());
          const int steps = static_cast<int>(r.tokens.size()) - (r.stop_id < 0 ? 1 : 0);
          some_stopped = some_stopped || r.stop_id >= 0;
          BOOST_TEST(g.generated_positions == steps, what);
          BOOST_REQUIRE_EQUAL(g.logit_generated.size(), n);
          BOOST_REQUIRE_EQUAL(g.prob_generated.size(), n);
          BOOST_REQUIRE_EQUAL(g.selected_generated.size(), n);
          if (steps == 0) {
            BOOST_TEST(!g.has_generated_routing(), what);
            for (std::size_t k = 0; k < n; ++k)
              BOOST_TEST((std::isnan(g.logit_generated[k]) && std::isnan(g.prob_generated[k]) &&
                          std::isnan(g.selected_generated[k])),
                         what);
            continue;
          }
          BOOST_TEST(g.has_generated_routing(), what);
          std::vector<int> seq = f.requests[i].prompt;
          seq.insert(seq.end(), r.tokens.begin(), r.tokens.begin() + steps);
          const HandRouting h = hand_routing(f, seq, d, T, T + steps);
          // The prompt statistics stay those of the prompt alone.
          const HandRouting hp = hand_routing(f, f.requests[i].prompt, d, 0, T);
          for (std::size_t k = 0; k < n; ++k) {
            BOOST_TEST(std::abs(g.logit_generated[k] - h.logit[k]) <= 1e-9, what << " entry " << k);
            BOOST_TEST(std::abs(g.prob_generated[k] - h.prob[k]) <= 1e-9, what << " entry " << k);
            BOOST_TEST(std::abs(g.selected_generated[k] - h.selected[k]) <= 1e-12, what << " entry " << k);
            BOOST_TEST(std::abs(g.prob_mean[k] - hp.prob[k]) <= 1e-12, what << " entry " << k);
            BOOST_TEST(std::abs(g.selected_mean[k] - hp.selected[k]) <= 1e-12, what << " entry " << k);
          }
          if (d)
            for (auto [dl, de] : *d) {
              const std::size_t at = static_cast<std::size_t>(dl) * c.num_experts + de;
              BOOST_TEST(g.prob_generated[at] == 0.0, what);
              BOOST_TEST(g.selected_generated[at] == 0.0, what);
            }
          // selected_generated sums to top_k per layer: a mean of k-hot rows.
          for (int l = 0; l < c.num_layers; ++l) {
            double total = 0;
            for (int e = 0; e < c.num_experts; ++e) total += g.selected_generated[static_cast<std::size_t>(l) * c.num_experts + e];
            BOOST_TEST(std::abs(total - c.top_k) <= 1e-12, what);
          }
        }
        if (with_stop) BOOST_TEST(some_stopped, m << ": no prompt met the stop token");
      }
      // The generated routing differs from the prompt's: the statistic carries its own information.
      BOOST_TEST(!same_values(free_run[0].routing.prob_generated, free_run[0].routing.prob_mean), m);
    }
    // No step run: max_new_tokens = 1, or a stop token first. NaN, and the prompt statistics unchanged.
    DecodeOptions one;
    one.max_new_tokens = 1;
    one.capture_routing = true;
    const auto a = greedy_decode(*f.engine, f.requests, one);
    DecodeOptions stop_first = one;
    stop_first.max_new_tokens = kNewTokens;
    stop_first.stop_ids = {a[1].tokens.at(0)};
    const auto b = greedy_decode(*f.engine, {f.requests[1]}, stop_first);
    BOOST_TEST(b[0].tokens.empty());
    for (const DecodeResult* r : {&a[0], &a[1], &b[0]}) {
      BOOST_TEST(r->routing.generated_positions == 0);
      BOOST_TEST(!r->routing.has_generated_routing());
      BOOST_TEST(std::isnan(r->routing.prob_generated.at(0)));
    }
    BOOST_TEST(same_values(a[1].routing.prob_mean, b[0].routing.prob_mean));
    BOOST_TEST(same_values(a[1].routing.selected_last, b[0].routing.selected_last));
  }
}

// DecodeStats counts the engine calls, streams and tokens of the prompt runs and the steps, and
// observing changes nothing.
BOOST_AUTO_TEST_CASE(decode_stats_count_calls_and_streams) {
  Fixture f("qwen3moe-tiny");
  DecodeOptions o;
  o.max_new_tokens = kNewTokens;
  o.capture_routing = true;
  const auto plain = greedy_decode(*f.engine, f.requests, o);
  o.stop_ids = {plain[0].tokens.at(2)};  // prompts leave at different steps
  const auto stopped = greedy_decode(*f.engine, f.requests, o);
  DecodeStats st;
  o.stats = &st;
  o.prompts_per_call = 2;
  const auto got = greedy_decode(*f.engine, f.requests, o);
  std::uint64_t tokens = 0, steps = 0;
  std::size_t longest = 0;
  for (std::size_t i = 0; i < got.size(); ++i) {
    BOOST_TEST(same(got[i], stopped[i]), "prompt " << i);
    tokens += f.requests[i].prompt.size();
    steps += static_cast<std::uint64_t>(got[i].routing.generated_positions);
  }
  for (std::size_t g = 0; g < got.size(); g += 2) {  // a group runs as many step calls as its longest prompt
    std::size_t m = 0;
    for (std::size_t i = g; i < std::min(got.size(), g + 2); ++i)
      m = std::max<std::size_t>(m, static_cast<std::size_t>(got[i].routing.generated_positions));
    longest += m;
  }
  BOOST_TEST(st.prompt_calls == (f.requests.size() + 1) / 2);
  BOOST_TEST(st.prompt_streams == f.requests.size());
  BOOST_TEST(st.prompt_tokens == tokens);
  BOOST_TEST(st.step_streams == steps);
  BOOST_TEST(st.step_calls == longest);
  BOOST_TEST(steps > 0u);
  BOOST_TEST((st.prompt_wall_s > 0 && st.step_wall_s > 0 && st.prompt_cpu_s >= 0 && st.step_cpu_s >= 0));
  // Stats add up over calls.
  const DecodeStats before = st;
  greedy_decode(*f.engine, f.requests, o);
  BOOST_TEST(st.prompt_streams == 2 * before.prompt_streams);
  BOOST_TEST(st.step_calls == 2 * before.step_calls);
}

// decode_calls (what `moetrace plan` counts) from the prompts' lengths and their decoding steps
// equals the engine's own counters, with prompts leaving at different steps in groups of 2 and 3.
BOOST_AUTO_TEST_CASE(decode_calls_equal_the_engine_counters) {
  Fixture f("qwen3moe-tiny");
  DecodeOptions o;
  o.max_new_tokens = kNewTokens;
  o.stop_ids = {greedy_decode(*f.engine, f.requests, o)[0].tokens.at(2)};
  for (const std::size_t group : {2u, 3u}) {
    o.prompts_per_call = group;
    o.capture_routing = group == 3;
    f.engine->reset_steps();
    const auto got = greedy_decode(*f.engine, f.requests, o);
    std::vector<int> tokens, steps;
    for (std::size_t i = 0; i < got.size(); ++i) {
      tokens.push_back(static_cast<int>(f.requests[i].prompt.size()));
      steps.push_back(decoding_steps(static_cast<int>(got[i].tokens.size()), got[i].stop_id >= 0));
      if (o.capture_routing) BOOST_TEST(steps.back() == got[i].routing.generated_positions, "prompt " << i);
    }
    BOOST_TEST((*std::min_element(steps.begin(), steps.end()) < *std::max_element(steps.begin(), steps.end())));
    std::uint64_t predicted = 0;
    const std::vector<CallShape> calls = decode_calls(tokens, steps, group, f.config().num_layers, o.capture_routing);
    for (const CallShape& c : calls) {
      predicted += c.steps;
      BOOST_TEST(c.prepare == o.capture_routing);
    }
    BOOST_TEST(calls.size() == f.engine->engine_calls());
    BOOST_TEST(predicted == f.engine->layer_token_steps());
  }
}

BOOST_AUTO_TEST_CASE(bad_requests_are_input_errors) {
  Fixture f("olmoe-tiny");
  const int V = f.config().vocab_size;
  DecodeOptions o;
  auto bad = [&](std::vector<DecodeRequest> r, const DecodeOptions& opt) {
    BOOST_CHECK_THROW(greedy_decode(*f.engine, r, opt), InputError);
  };
  bad({{{}, {}}}, o);
  bad({{{1, V}, {}}}, o);
  bad({{{1, -1}, {}}}, o);
  bad({{{1, 2}, {V}}}, o);
  DecodeOptions z = o;
  z.max_new_tokens = 0;
  bad({{{1, 2}, {}}}, z);
  DecodeOptions s = o;
  s.stop_ids = {V};
  bad({{{1, 2}, {}}}, s);
  DecodeOptions p = o;
  p.prompts_per_call = 0;
  bad({{{1, 2}, {}}}, p);
  const Deactivation out_of_range = {{f.config().num_layers, 0}};
  DecodeOptions dd = o;
  dd.deactivation = &out_of_range;
  bad({{{1, 2}, {}}}, dd);
  if (f.config().max_position_embeddings > 0) {
    DecodeOptions longer = o;
    longer.max_new_tokens = f.config().max_position_embeddings;
    bad({{{1, 2}, {}}}, longer);
  }
  BOOST_TEST(greedy_decode(*f.engine, {}, o).empty());
}
