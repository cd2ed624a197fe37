#include "protocols/replay.h"

#include <algorithm>
#include <cmath>
#include <numeric>

#include "util/error.h"
#include "util/input_file.h"

namespace moetrace {
namespace {

// What a fixture asks of the model, checked before the engine runs (exit 2 naming the file and the
// fact): token ids inside the vocabulary, deactivated experts that exist and leave at least top_k
// experts in every layer, finite noise.
void check_facts_against_model(const std::vector<FixtureFact>& facts, const ModelConfig& mc, const std::string& path) {
  for (const FixtureFact& f : facts) {
    const std::string where = fmt::format("{}: {}", path, f.group);
    for (std::size_t i = 0; i < f.ids.size(); ++i)
      if (f.ids[i] < 0 || f.ids[i] >= mc.vocab_size)
        fail_input("{}/ids[{}] = {} is outside the model's vocabulary of {}", where, i, f.ids[i], mc.vocab_size);
    for (auto [name, id] : {std::pair{"true_id", f.true_id}, std::pair{"foil_id", f.foil_id}})
      if (id < 0 || id >= mc.vocab_size)
        fail_input("{}@{} = {} is outside the model's vocabulary of {}", where, name, id, mc.vocab_size);
    std::vector<std::vector<bool>> off(mc.num_layers, std::vector<bool>(mc.num_experts, false));
    for (auto [l, e] : f.deactivate) {
      if (l < 0 || l >= mc.num_layers || e < 0 || e >= mc.num_experts)
        fail_input("{}/deactivate/experts: (layer {}, expert {}) does not exist in a model of {} layers of {} experts",
                   where, l, e, mc.num_layers, mc.num_experts);
      off[l][e] = true;
    }
    for (int l = 0; l < mc.num_layers; ++l) {
      const int left = static_cast<int>(std::count(off[l].begin(), off[l].end(), false));
      if (left < mc.top_k)
        fail_input("{}/deactivate/experts leaves {} expert(s) in layer {}, fewer than the {} the model routes each "
                   "token to (num_experts_per_tok)", where, left, l, mc.top_k);
    }
    for (std::size_t s = 0; s < f.noise.size(); ++s)
      for (float v : f.noise[s])
        if (!std::isfinite(v)) fail_input("{}/noise: sample {} holds a non-finite value ({})", where, s, v);
  }
}

}  // namespace

std::vector<FixtureFact> read_replay_inputs(const std::string& path, const ModelConfig& config) {
  require_regular_file(path, "--in");  // exit 2 naming it
  std::vector<FixtureFact> facts = read_fixture_inputs(path, config.hidden_size);
  check_facts_against_model(facts, config, path);
  return facts;
}

namespace {

std::vector<float> download(Backend& b, const Tensor& t) {
  std::vector<float> v(static_cast<std::size_t>(t.rows()) * t.cols());
  b.download(t, v.data());
  return v;
}

// Stacks one tensor per layer into [L, rows, cols].
NamedArray stack(Backend& b, const std::string& name, const std::vector<const Tensor*>& per_layer) {
  NamedArray a{name, {per_layer.size(), static_cast<std::size_t>(per_layer[0]->rows()),
                      static_cast<std::size_t>(per_layer[0]->cols())}, {}};
  for (const Tensor* t : per_layer) {
    auto v = download(b, *t);
    a.data.insert(a.data.end(), v.begin(), v.end());
  }
  return a;
}

}  // namespace

std::vector<TraceLayout> fixture_trace_layout(const ModelConfig& c, const Prompt& p) {
  const int L = c.num_layers, T = p.num_tokens(), E = c.num_experts;
  std::vector<int> subject(p.subject_end - p.subject_begin);
  std::iota(subject.begin(), subject.end(), p.subject_begin);
  const std::vector<int> last_subject{p.subject_end - 1}, last{T - 1};
  const auto uL = static_cast<std::size_t>(L), uT = static_cast<std::size_t>(T), uE = static_cast<std::size_t>(E);

  std::vector<TraceLayout> out;
  auto per_layer = [&](const std::string& name, auto make) {
    TraceLayout t{name, {uL}, {}};
    for (int l = 0; l < L; ++l) t.conditions.push_back(make(l));
    out.push_back(std::move(t));
  };
  for (auto [name, site] : {std::pair{"trace/heat_hidden", Site::Hidden}, std::pair{"trace/heat_attn", Site::Attn},
                            std::pair{"trace/heat_moe", Site::Moe}}) {
    TraceLayout t{name, {uL, uT}, {}};
    for (int l = 0; l < L; ++l)
      for (int pos = 0; pos < T; ++pos) t.conditions.push_back(restore_site(site, l, {pos}));
    out.push_back(std::move(t));
  }
  per_layer("trace/moe_subject", [&](int l) { return restore_site(Site::Moe, l, subject); });
  per_layer("trace/attn_subject", [&](int l) { return restore_site(Site::Attn, l, subject); });
  per_layer("trace/moe_last_subject", [&](int l) { return restore_site(Site::Moe, l, last_subject); });
  per_layer("trace/moe_window3_subject", [&](int l) { return restore_window(Site::Moe, l, 3, L, subject); });
  for (auto [name, positions] : {std::pair{"trace/expert_subject", subject}, std::pair{"trace/expert_last", last}}) {
    TraceLayout t{name, {uL, uE}, {}};
    for (int l = 0; l < L; ++l)
      for (int e = 0; e < E; ++e) t.conditions.push_back(restore_experts(l, positions, ExpertSet::Listed, {e}));
    out.push_back(std::move(t));
  }
  per_layer("trace/routed_coalition_subject",
            [&](int l) { return restore_experts(l, subject, ExpertSet::CleanRouted); });
  per_layer("trace/routed_coalition_last", [&](int l) { return restore_experts(l, last, ExpertSet::CleanRouted); });
  return out;
}

namespace {

void check_token_ids(const FixtureFact& fact, int vocab_size) {
  for (int id : {fact.true_id, fact.foil_id})
    if (id < 0 || id >= vocab_size) fail_input("{}: true/foil id {} outside the vocabulary", fact.group, id);
  for (int id : fact.ids)
    if (id < 0 || id >= vocab_size) fail_input("{}: token id {} outside the vocabulary of {}", fact.group, id, vocab_size);
}

// The clean run's hidden states (every layer's input, then the output), attention and MoE outputs.
void add_clean_activations(Backend& B, const RunRecord& rec, FactOutputs& out) {
  std::vector<const Tensor*> hidden, attn, moe;
  for (const LayerRecord& l : rec.layers) {
    hidden.push_back(l.input.get());
    attn.push_back(l.attn_out.get());
    moe.push_back(l.moe_out.get());
  }
  hidden.push_back(rec.output.get());
  out.floats.push_back(stack(B, "clean/hidden", hidden));
  out.floats.push_back(stack(B, "clean/attn_out", attn));
  out.floats.push_back(stack(B, "clean/moe_out", moe));
}

// The clean run's router logits and top-k weights and experts, [layers, tokens, ...].
void add_clean_routing(const RunRecord& rec, const ModelConfig& c, int T, FactOutputs& out) {
  const auto uL = static_cast<std::size_t>(c.num_layers), uT = static_cast<std::size_t>(T);
  const auto K = static_cast<std::size_t>(c.top_k), E = static_cast<std::size_t>(c.num_experts);
  NamedArray router{"clean/router_logits", {uL, uT, E}, {}};
  NamedArray topk_w{"clean/topk_w", {uL, uT, K}, {}};
  std::vector<int> topk_idx;
  for (const LayerRecord& l : rec.layers) {
    router.data.insert(router.data.end(), l.router_logits.begin(), l.router_logits.end());
    topk_w.data.insert(topk_w.data.end(), l.routing.weights.begin(), l.routing.weights.end());
    topk_idx.insert(topk_idx.end(), l.routing.experts.begin(), l.routing.experts.end());
  }
  out.floats.push_back(std::move(router));
  out.floats.push_back(std::move(topk_w));
  out.ints.emplace_back("clean/topk_idx", std::move(topk_idx));
  out.int_shapes.push_back({uL, uT, K});
}

// The corrupted runs' contrasts and every trace of the fixture's layout, [noise samples, ...].
void add_traces(CaseTracer& tracer, const TracedCase& tc, const ModelConfig& c, const Prompt& prompt,
                PatchMode mode, FactOutputs& out) {
  const std::size_t S = tc.noised.size();
  NamedArray corrupted{"trace/corrupted", {S}, {}};
  for (const StreamOutput& n : tc.noised) corrupted.data.push_back(n.contrast);
  out.floats.push_back(std::move(corrupted));
  for (const TraceLayout& layout : fixture_trace_layout(c, prompt)) {
    std::vector<PatchedRun> runs;
    for (std::size_t s = 0; s < S; ++s)
      for (const Condition& cond : layout.conditions) runs.push_back({&tc, static_cast<int>(s), &cond});
    NamedArray a{layout.name, {S}, tracer.evaluate(runs, mode)};
    a.shape.insert(a.shape.end(), layout.shape.begin(), layout.shape.end());
    out.floats.push_back(std::move(a));
  }
}

}  // namespace

FactOutputs replay_fact(Engine& engine, const FixtureFact& fact, const ReplayOptions& options) {
  const ModelConfig& c = engine.model().config;
  Backend& B = engine.backend();
  Prompt prompt{fact.ids, fact.subject_begin, fact.subject_end, fact.true_id, fact.foil_id};
  check_token_ids(fact, c.vocab_size);

  CaseTracer tracer(engine);
  const TracedCase tc = tracer.prepare(prompt, options.traces ? fact.noise : std::vector<std::vector<float>>{},
                                       Readout::AllLogits);
  const RunRecord& rec = *tc.clean.record;
  const int T = prompt.num_tokens(), V = c.vocab_size;
  const auto uT = static_cast<std::size_t>(T);

  FactOutputs out;
  out.group = fact.group;
  out.contrast = tc.clean.contrast;
  out.floats.push_back({"clean/logits", {uT, static_cast<std::size_t>(V)}, tc.clean.logits});
  out.floats.push_back({"clean/logits_last", {static_cast<std::size_t>(V)},
                        {tc.clean.logits.end() - V, tc.clean.logits.end()}});
  add_clean_activations(B, rec, out);
  add_clean_routing(rec, c, T, out);
  if (!options.traces) return out;
  add_traces(tracer, tc, c, prompt, options.mode, out);

  if (!fact.deactivate.empty()) {
    StreamSpec d;
    d.prompt = &prompt;
    d.deactivation = &fact.deactivate;
    d.readout = Readout::LastLogits;
    out.floats.push_back({"deactivate/logits_last", {static_cast<std::size_t>(V)}, engine.run({d}).front().logits});
  }
  return out;
}

void require_finite_outputs(const FactOutputs& out, const std::string& model, const std::string& fixture) {
  auto fail = [&](const std::string& what, double value) {
    fail_input("{}: replaying {} gives a non-finite value ({}) in {}/{}: the checkpoint's weights overflow float32 "
               "arithmetic (finite but extreme values, such as the largest bf16); nothing is written",
               model, fixture, value, out.group, what);
  };
  for (const NamedArray& a : out.floats) {
    const auto bad = std::find_if(a.data.begin(), a.data.end(), [](float v) { return !std::isfinite(v); });
    if (bad != a.data.end()) fail(fmt::format("{} (element {})", a.name, bad - a.data.begin()), *bad);
  }
  if (!std::isfinite(out.contrast)) fail("clean@contrast", out.contrast);
}

}  // namespace moetrace
