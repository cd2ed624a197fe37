// Engine-level properties of interventions that hold by construction and need no goldens:
// restoring everything gives the clean run back, restoring nothing gives the noised run, Union
// expert restoration equals MoE-output restoration, no-op patches and deactivations change nothing,
// batching does not change results, and windows clip at the model's edges.
#define BOOST_TEST_MODULE interventions
#include <boost/test/unit_test.hpp>

#include <algorithm>
#include <cmath>
#include <memory>
#include <numeric>
#include <string>
#include <vector>

#include "backend/backend.h"
#include "engine/case_tracer.h"
#include "engine/device_model.h"
#include "model/model_weights.h"
#include "results/fixture_io.h"
#include "support/test_paths.h"

using namespace moetrace;

namespace {

const std::vector<std::string> kModels = {"mixtral-tiny", "qwen3moe-tiny", "olmoe-tiny"};
constexpr std::size_t kMaxFacts = 4;  // per model: enough variety, a bounded run time

// A loaded fixture model on the CPU backend, with its facts.
struct Fixture {
  std::string name;
  ModelWeights weights;
  std::unique_ptr<Backend> backend;
  DeviceModel model;
  std::unique_ptr<Engine> engine;
  std::vector<Prompt> prompts;
  std::vector<FixtureFact> facts;

  explicit Fixture(const std::string& m)
      : name(m), weights(load_model(test::fixtures_dir() / m)), backend(make_cpu_backend()),
        model(upload_model(weights, *backend)), engine(std::make_unique<Engine>(model, *backend)) {
    facts = read_fixture_inputs((test::fixtures_dir() / (m + ".golden.h5")).string(), weights.config.hidden_size);
    if (facts.size() > kMaxFacts) facts.resize(kMaxFacts);
    for (const FixtureFact& f : facts) prompts.push_back({f.ids, f.subject_begin, f.subject_end, f.true_id, f.foil_id});
  }
  const ModelConfig& config() const { return weights.config; }
  // Clean and noised runs of fact i, the noised ones recorded fully (routing included).
  TracedCase trace(std::size_t i, const Deactivation* deactivation = nullptr) {
    CaseTracer tracer(*engine);
    return tracer.prepare(prompts.at(i), facts.at(i).noise, Readout::Contrast, deactivation, RecordLevel::Full);
  }
  std::vector<float> evaluate(const TracedCase& tc, const std::vector<std::pair<int, const Condition*>>& runs,
                              PatchMode mode) {
    std::vector<PatchedRun> pr;
    for (auto [s, c] : runs) pr.push_back({&tc, s, c});
    CaseTracer tracer(*engine);
    return tracer.evaluate(pr, mode);
  }
  float evaluate1(const TracedCase& tc, int sample, const Condition& c, PatchMode mode) {
    return evaluate(tc, {{sample, &c}}, mode).front();
  }
  // Clean logits at every position (with an optional deactivation).
  std::vector<float> clean_logits(std::size_t i, const Deactivation* deactivation = nullptr) {
    StreamSpec s;
    s.prompt = &prompts.at(i);
    s.readout = Readout::AllLogits;
    s.deactivation = deactivation;
    return engine->run({s}).front().logits;
  }
};

std::vector<int> all_positions(const Prompt& p) {
  std::vector<int> v(p.num_tokens());
  std::iota(v.begin(), v.end(), 0);
  return v;
}

double tol_for(double reference, double tol = 1e-5) { return tol * std::max(1.0, std::abs(reference)); }

constexpr PatchMode kModes[] = {PatchMode::FastPath, PatchMode::FullRecompute};
const char* mode_name(PatchMode m) { return m == PatchMode::FastPath ? "fast path" : "full recompute"; }

int sample_count(const TracedCase& tc) { return static_cast<int>(tc.noised.size()); }

double max_abs_diff(const std::vector<float>& a, const std::vector<float>& b) {
  BOOST_TEST_REQUIRE(a.size() == b.size());
  double m = 0;
  for (std::size_t i = 0; i < a.size(); ++i) m = std::max(m, std::abs(static_cast<double>(a[i]) - b[i]));
  return m;
}

}  // namespace

BOOST_AUTO_TEST_CASE(restoring_the_residual_at_every_position_returns_the_clean_contrast) {
  for (const std::string& m : kModels) {
    Fixture fx(m);
    const int L = fx.config().num_layers;
    for (std::size_t i = 0; i < fx.prompts.size(); ++i) {
      const TracedCase tc = fx.trace(i);
      const float clean = tc.clean.contrast;
      BOOST_TEST_REQUIRE(std::isfinite(clean));
      const std::vector<int> all = all_positions(tc.prompt);
      std::vector<Condition> conds = {restore_site(Site::Hidden, L - 1, all), restore_site(Site::Hidden, 0, all)};
      // Every layer's residual at every position.
      Condition every;
      for (int l = 0; l < L; ++l) every.patches.push_back(restore_site(Site::Hidden, l, all).patches[0]);
      conds.push_back(every);
      for (PatchMode mode : kModes)
        for (int s = 0; s < sample_count(tc); ++s)
          for (std::size_t c = 0; c < conds.size(); ++c) {
            const float got = fx.evaluate1(tc, s, conds[c], mode);
            BOOST_TEST(std::abs(got - clean) <= tol_for(clean),
                       m << " fact " << i << " sample " << s << " condition " << c << " (" << mode_name(mode)
                         << "): " << got << " vs clean " << clean);
          }
      // Sanity: the noise does change the contrast, so the property above is not vacuous.
      double moved = 0;
      for (int s = 0; s < sample_count(tc); ++s) moved = std::max(moved, std::abs(double(tc.noised[s].contrast) - clean));
      BOOST_TEST(moved > 1e-3, m << " fact " << i << ": the noise does not move the contrast");
    }
  }
}

BOOST_AUTO_TEST_CASE(an_empty_condition_equals_the_noised_contrast) {
  for (const std::string& m : kModels) {
    Fixture fx(m);
    for (std::size_t i = 0; i < fx.prompts.size(); ++i) {
      const TracedCase tc = fx.trace(i);
      const Condition empty;
      for (PatchMode mode : kModes)
        for (int s = 0; s < sample_count(tc); ++s) {
          const float noised = tc.noised[s].contrast;
          const float got = fx.evaluate1(tc, s, empty, mode);
          BOOST_TEST(std::abs(got - noised) <= tol_for(noised),
                     m << " fact " << i << " sample " << s << " (" << mode_name(mode) << "): " << got << " vs " << noised);
        }
    }
  }
}

BOOST_AUTO_TEST_CASE(restoring_the_union_expert_set_equals_restoring_the_moe_output) {
  for (const std::string& m : kModels) {
    Fixture fx(m);
    const int L = fx.config().num_layers;
    for (std::size_t i = 0; i < fx.prompts.size(); ++i) {
      const TracedCase tc = fx.trace(i);
      const int last = tc.prompt.num_tokens() - 1;
      const std::vector<int> subject = [&] {
        std::vector<int> v;
        for (int t = tc.prompt.subject_begin; t < tc.prompt.subject_end; ++t) v.push_back(t);
        return v;
      }();
      for (int l = 0; l < L; ++l)
        for (const std::vector<int>& pos : {std::vector<int>{last}, subject}) {
          const Condition moe = restore_site(Site::Moe, l, pos);
          const Condition uni = restore_experts(l, pos, ExpertSet::Union);
          for (PatchMode mode : kModes)
            for (int s = 0; s < sample_count(tc); ++s) {
              const float a = fx.evaluate1(tc, s, moe, mode), b = fx.evaluate1(tc, s, uni, mode);
              BOOST_TEST(std::abs(a - b) <= tol_for(a), m << " fact " << i << " layer " << l << " positions "
                                                           << pos.size() << " sample " << s << " ("
                                                           << mode_name(mode) << "): moe " << a << " union " << b);
            }
        }
    }
  }
}

BOOST_AUTO_TEST_CASE(restoring_an_expert_routed_in_neither_run_changes_nothing) {
  for (const std::string& m : kModels) {
    Fixture fx(m);
    const int L = fx.config().num_layers, E = fx.config().num_experts, K = fx.config().top_k;
    int checked = 0;
    for (std::size_t i = 0; i < fx.prompts.size(); ++i) {
      const TracedCase tc = fx.trace(i);
      const int last = tc.prompt.num_tokens() - 1;
      for (int s = 0; s < sample_count(tc); ++s)
        for (int l = 0; l < L; ++l) {
          const Routing& cr = tc.clean.record->layers[l].routing;
          const Routing& nr = tc.noised[s].record->layers[l].routing;
          int unrouted = -1;
          for (int e = E - 1; e >= 0 && unrouted < 0; --e)
            if (cr.slot_of(last, e) < 0 && nr.slot_of(last, e) < 0) unrouted = e;
          BOOST_TEST_REQUIRE(unrouted >= 0);  // 2k <= E in every fixture
          BOOST_TEST_REQUIRE(2 * K <= E);
          // The same patch structure with no expert: the runs are computed identically.
          const Condition none = restore_experts(l, {last}, ExpertSet::Listed, {});
          const Condition one = restore_experts(l, {last}, ExpertSet::Listed, {unrouted});
          for (PatchMode mode : kModes) {
            const float a = fx.evaluate1(tc, s, none, mode), b = fx.evaluate1(tc, s, one, mode);
            BOOST_TEST(a == b, m << " fact " << i << " sample " << s << " layer " << l << " expert " << unrouted
                                 << " (" << mode_name(mode) << "): " << a << " vs " << b);
            BOOST_TEST(std::abs(b - tc.noised[s].contrast) <= tol_for(tc.noised[s].contrast));
          }
          ++checked;
        }
    }
    BOOST_TEST(checked > 0);
  }
}

BOOST_AUTO_TEST_CASE(deactivating_an_expert_outside_the_top_k_changes_nothing) {
  for (const std::string& m : kModels) {
    Fixture fx(m);
    const int L = fx.config().num_layers, E = fx.config().num_experts;
    int checked = 0;
    for (std::size_t i = 0; i < fx.prompts.size(); ++i) {
      const TracedCase tc = fx.trace(i);
      const int T = tc.prompt.num_tokens();
      for (int l = 0; l < L; ++l) {
        const Routing& r = tc.clean.record->layers[l].routing;
        for (int e = 0; e < E; ++e) {
          bool used = false;
          for (int t = 0; t < T; ++t) used |= r.slot_of(t, e) >= 0;
          if (used) continue;
          const Deactivation d = {{l, e}};
          if (fx.config().norm_topk_prob) {
            // Renormalised top-k weights do not depend on the other experts' probabilities.
            const std::vector<float> plain = fx.clean_logits(i), off = fx.clean_logits(i, &d);
            const double diff = max_abs_diff(plain, off);
            BOOST_TEST(diff <= 1e-6, m << " fact " << i << " layer " << l << " expert " << e << ": " << diff);
          } else {
            // Without renormalisation the softmax denominator loses a term: the same experts are
            // chosen (with slightly larger weights).
            // Later layers see slightly different inputs, so only layers <= l are compared.
            const TracedCase td = fx.trace(i, &d);
            for (int ll = 0; ll <= l; ++ll)
              BOOST_TEST(td.clean.record->layers[ll].routing.experts == tc.clean.record->layers[ll].routing.experts,
                         m << " fact " << i << " deactivated (" << l << ", " << e << "): routing of layer " << ll);
            const std::vector<float> plain = fx.clean_logits(i), off = fx.clean_logits(i, &d);
            BOOST_TEST(max_abs_diff(plain, off) > 0.0);
          }
          ++checked;
          break;  // one unused expert per layer is enough
        }
      }
    }
    BOOST_TEST_MESSAGE(m << ": " << checked << " (fact, layer) pairs with an unused expert");
    BOOST_TEST(checked > 0, m << ": no expert is unused anywhere; the property was not checked");
  }
}

BOOST_AUTO_TEST_CASE(deactivating_the_clean_top1_expert_changes_the_logits) {
  for (const std::string& m : kModels) {
    Fixture fx(m);
    for (std::size_t i = 0; i < fx.prompts.size(); ++i) {
      const TracedCase tc = fx.trace(i);
      const int last = tc.prompt.num_tokens() - 1;
      const int top1 = tc.clean.record->layers[0].routing.expert(last, 0);
      const Deactivation d = {{0, top1}};
      const std::vector<float> plain = fx.clean_logits(i), off = fx.clean_logits(i, &d);
      const double diff = max_abs_diff(plain, off);
      BOOST_TEST(diff > 1e-4, m << " fact " << i << ": deactivating layer 0 expert " << top1 << " moved logits by " << diff);
      // The expert is gone from the routing and the next one took its place.
      const TracedCase td = fx.trace(i, &d);
      const Routing& r = td.clean.record->layers[0].routing;
      BOOST_TEST(r.slot_of(last, top1) == -1);
      BOOST_TEST(r.expert(last, 0) == tc.clean.record->layers[0].routing.expert(last, 1));
    }
  }
}

BOOST_AUTO_TEST_CASE(batching_conditions_together_gives_the_same_contrasts) {
  for (const std::string& m : kModels) {
    Fixture fx(m);
    const int L = fx.config().num_layers;
    const TracedCase a = fx.trace(0);
    const TracedCase b = fx.trace(fx.prompts.size() > 1 ? 1 : 0);
    const int last_a = a.prompt.num_tokens() - 1;
    const std::vector<int> subj_b = [&] {
      std::vector<int> v;
      for (int t = b.prompt.subject_begin; t < b.prompt.subject_end; ++t) v.push_back(t);
      return v;
    }();
    // Conditions with different start layers and positions, on two prompts and two samples.
    const Condition c1 = restore_site(Site::Moe, L - 1, {last_a});
    const Condition c2 = restore_experts(1, subj_b, ExpertSet::CleanRouted);
    const Condition c3 = restore_site(Site::Attn, 0, {a.prompt.subject_begin});
    const Condition c4 = restore_window(Site::Moe, 2, 3, L, subj_b);
    const Condition empty;
    std::vector<PatchedRun> runs = {{&a, 0, &c1}, {&b, 1, &c2}, {&a, 2, &c3}, {&b, 0, &c4}, {&a, 1, &empty}};
    for (PatchMode mode : kModes) {
      CaseTracer tracer(*fx.engine);
      const std::vector<float> together = tracer.evaluate(runs, mode);
      BOOST_TEST_REQUIRE(together.size() == runs.size());
      for (std::size_t j = 0; j < runs.size(); ++j) {
        const float alone = tracer.evaluate({runs[j]}, mode).front();
        BOOST_TEST(std::abs(alone - together[j]) <= 1e-6 * std::max(1.0f, std::abs(alone)),
                   m << " run " << j << " (" << mode_name(mode) << "): alone " << alone << " batched " << together[j]);
      }
      // Two conditions in one Engine::run call directly, too.
      std::vector<StreamSpec> two = {CaseTracer::stream_for(runs[0], mode), CaseTracer::stream_for(runs[1], mode)};
      const std::vector<StreamOutput> out = fx.engine->run(two);
      for (std::size_t j = 0; j < 2; ++j)
        BOOST_TEST(std::abs(out[j].contrast - together[j]) <= 1e-6 * std::max(1.0f, std::abs(together[j])));
    }
    // A small row budget forces several engine calls: the same results.
    CaseTracer small(*fx.engine, 8);
    const std::vector<float> split = small.evaluate(runs, PatchMode::FastPath);
    const std::vector<float> whole = CaseTracer(*fx.engine).evaluate(runs, PatchMode::FastPath);
    for (std::size_t j = 0; j < runs.size(); ++j)
      BOOST_TEST(std::abs(split[j] - whole[j]) <= 1e-6 * std::max(1.0f, std::abs(whole[j])));
  }
}

BOOST_AUTO_TEST_CASE(windows_clip_at_the_model_edges) {
  const int L = 4;
  auto layers_of = [](const Condition& c) {
    std::vector<int> v;
    for (const Patch& p : c.patches) v.push_back(p.layer);
    return v;
  };
  BOOST_TEST(layers_of(restore_window(Site::Moe, 0, 3, L, {1, 2})) == (std::vector<int>{0, 1}));
  BOOST_TEST(layers_of(restore_window(Site::Moe, 1, 3, L, {1})) == (std::vector<int>{0, 1, 2}));
  BOOST_TEST(layers_of(restore_window(Site::Moe, L - 1, 3, L, {1})) == (std::vector<int>{L - 2, L - 1}));
  BOOST_TEST(layers_of(restore_window(Site::Attn, 2, 1, L, {1})) == (std::vector<int>{2}));
  BOOST_TEST(layers_of(restore_window(Site::Attn, 2, 10, L, {1})) == (std::vector<int>{0, 1, 2, 3}));
  const Condition w = restore_window(Site::Moe, 0, 3, L, {1, 2});
  for (const Patch& p : w.patches) {
    BOOST_TEST((p.site == Site::Moe));
    BOOST_TEST(p.positions == (std::vector<int>{1, 2}));
  }
  BOOST_TEST(w.first_layer() == 0);
  BOOST_TEST(w.first_position() == 1);

  // On a model: the clipped window is exactly the two-layer condition.
  Fixture fx("mixtral-tiny");
  const TracedCase tc = fx.trace(0);
  std::vector<int> subject;
  for (int t = tc.prompt.subject_begin; t < tc.prompt.subject_end; ++t) subject.push_back(t);
  const Condition window = restore_window(Site::Moe, 0, 3, fx.config().num_layers, subject);
  Condition manual;
  for (int l : {0, 1}) manual.patches.push_back(restore_site(Site::Moe, l, subject).patches[0]);
  for (PatchMode mode : kModes)
    BOOST_TEST(fx.evaluate1(tc, 0, window, mode) == fx.evaluate1(tc, 0, manual, mode));
  const Condition top = restore_window(Site::Moe, fx.config().num_layers - 1, 3, fx.config().num_layers, subject);
  BOOST_TEST(top.patches.size() == 2u);
}

// The controls stage extends a kept case (Base-level noised runs) instead of preparing it again:
// its noised runs re-recorded in full from layer l on must equal noised runs prepared in full, bit
// for bit, at every layer >= l (routing, updates, MoE outputs, the residual), keep their Base
// records before l, and leave the contrasts of conditions continuing from them unchanged.
BOOST_AUTO_TEST_CASE(noised_runs_recorded_in_full_from_a_layer_equal_noised_runs_prepared_in_full) {
  auto same = [](Backend& b, const Tensor* x, const Tensor* y) {
    if (!x || !y) return x == y;
    if (x->rows() != y->rows() || x->cols() != y->cols()) return false;
    std::vector<float> u(static_cast<std::size_t>(x->rows()) * x->cols()), v(u.size());
    b.download(*x, u.data());
    b.download(*y, v.data());
    return u == v;
  };
  for (const std::string& m : kModels) {
    BOOST_TEST_CONTEXT(m) {
      Fixture f(m);
      const int L = f.config().num_layers;
      for (std::size_t i = 0; i < f.prompts.size(); ++i) {
        const TracedCase full = f.trace(i);
        for (int from = 0; from < L; from += 2) {
          CaseTracer tracer(*f.engine);
          TracedCase ext = tracer.prepare(f.prompts.at(i), f.facts.at(i).noise);
          BOOST_TEST(ext.noised_full_from == -1);
          tracer.record_noised_in_full({&ext}, from);
          BOOST_TEST(ext.noised_full_from == from);
          BOOST_TEST_REQUIRE(ext.noised.size() == full.noised.size());
          for (std::size_t s = 0; s < ext.noised.size(); ++s) {
            const RunRecord& a = *ext.noised[s].record;
            const RunRecord& b = *full.noised[s].record;
            BOOST_TEST(ext.noised[s].contrast == full.noised[s].contrast);
            for (int l = 0; l < L; ++l) {
              BOOST_TEST_CONTEXT("fact " << i << ", from layer " << from << ", layer " << l) {
                BOOST_TEST(same(*f.backend, a.layers[l].input.get(), b.layers[l].input.get()));
                BOOST_TEST(same(*f.backend, a.layers[l].keys.get(), b.layers[l].keys.get()));
                BOOST_TEST(same(*f.backend, a.layers[l].values.get(), b.layers[l].values.get()));
                if (l < from) continue;
                BOOST_TEST(same(*f.backend, a.layers[l].updates.get(), b.layers[l].updates.get()));
                BOOST_TEST(same(*f.backend, a.layers[l].moe_out.get(), b.layers[l].moe_out.get()));
                BOOST_TEST(same(*f.backend, a.layers[l].attn_out.get(), b.layers[l].attn_out.get()));
                BOOST_TEST(a.layers[l].routing.experts == b.layers[l].routing.experts);
                BOOST_TEST(a.layers[l].routing.weights == b.layers[l].routing.weights);
              }
            }
            BOOST_TEST(same(*f.backend, a.output.get(), b.output.get()));
          }
          // A final-position expert restoration continuing from the extended records.
          const int last = f.prompts.at(i).num_tokens() - 1;
          const int e = full.clean.record->layers[from].routing.expert(last, 0);
          const Condition c = restore_experts(from, {last}, ExpertSet::Listed, {e});
          BOOST_TEST(f.evaluate1(ext, 0, c, PatchMode::FastPath) == f.evaluate1(full, 0, c, PatchMode::FastPath));
        }
      }
    }
  }
}
