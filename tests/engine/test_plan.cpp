// compile_plan (engine/plan.h): the row layout of a batch, the deactivation mask, and patches as
// merged row transfers in phases. Synthetic records on the CPU backend; no model is run (the
// patched results themselves are checked by test_interventions and the conformance suites).
#define BOOST_TEST_MODULE plan
#include <boost/test/unit_test.hpp>

#include <memory>
#include <vector>

#include "engine/plan.h"
#include "util/error.h"

using namespace moetrace;

namespace {

constexpr int kLayers = 3, kH = 4, kE = 6, kK = 2;

ModelConfig config() {
  ModelConfig c;
  c.num_layers = kLayers;
  c.hidden_size = kH;
  c.num_experts = kE;
  c.top_k = kK;
  c.vocab_size = 100;
  return c;
}

// A full record of a T-token run whose position t routes to experts (t % E, (t + 1) % E).
std::unique_ptr<RunRecord> full_record(Backend& b, int T) {
  auto r = std::make_unique<RunRecord>();
  r->num_tokens = T;
  r->level = RecordLevel::Full;
  r->layers.resize(kLayers);
  for (LayerRecord& L : r->layers) {
    L.input = b.zeros(T, kH);
    L.keys = b.zeros(T, kH);
    L.values = b.zeros(T, kH);
    L.attn_out = b.zeros(T, kH);
    L.moe_out = b.zeros(T, kH);
    L.updates = b.zeros(T * kK, kH);
    L.routing.k = kK;
    for (int t = 0; t < T; ++t) {
      L.routing.experts.insert(L.routing.experts.end(), {t % kE, (t + 1) % kE});
      L.routing.weights.insert(L.routing.weights.end(), {0.5f, 0.5f});
    }
  }
  r->output = b.zeros(T, kH);
  return r;
}

Prompt prompt(int T) {
  Prompt p;
  p.ids.assign(T, 1);
  p.subject_begin = 1;
  p.subject_end = 2;
  return p;
}

}  // namespace

BOOST_AUTO_TEST_CASE(streams_join_at_their_start_layer_and_keep_their_rows) {
  auto b = make_cpu_backend();
  const Prompt p5 = prompt(5), p3 = prompt(3);
  auto base5 = full_record(*b, 5);
  std::vector<StreamSpec> s(3);
  s[0].prompt = &p5;                                                   // full run: 5 rows from layer 0
  s[1].prompt = &p5, s[1].base = base5.get(), s[1].start_layer = 1, s[1].start_pos = 3;  // 2 rows from layer 1
  s[2].prompt = &p3;                                                   // 3 rows from layer 0
  const BatchPlan plan = compile_plan(s, config());
  BOOST_TEST(plan.layers[0].joining == std::vector<int>({0, 2}));
  BOOST_TEST(plan.layers[1].joining == std::vector<int>({1}));
  BOOST_TEST(plan.layers[2].joining.empty());
  BOOST_TEST(plan.layers[0].rows == 8);
  BOOST_TEST(plan.layers[1].rows == 10);
  BOOST_TEST(plan.layers[0].positions == std::vector<int>({0, 1, 2, 3, 4, 0, 1, 2}));
  BOOST_TEST(plan.layers[2].positions == std::vector<int>({0, 1, 2, 3, 4, 0, 1, 2, 3, 4}));
  const std::vector<StreamRows>& fin = plan.final_batch();
  BOOST_TEST_REQUIRE(fin.size() == 3u);
  BOOST_TEST((fin[0].stream == 0 && fin[0].offset == 0 && fin[0].count == 5));
  BOOST_TEST((fin[1].stream == 2 && fin[1].offset == 5 && fin[1].count == 3));
  BOOST_TEST((fin[2].stream == 1 && fin[2].offset == 8 && fin[2].count == 2));
  for (const LayerPlan& L : plan.layers) {
    BOOST_TEST(L.attn.empty());
    BOOST_TEST(L.moe.empty());
    BOOST_TEST(L.hidden.empty());
    BOOST_TEST(L.mask_offsets.empty());
    BOOST_TEST(!L.full_records);
  }
}

BOOST_AUTO_TEST_CASE(streams_of_one_clean_record_share_one_transfer_per_site_and_phase) {
  auto b = make_cpu_backend();
  const Prompt p = prompt(4);
  auto clean_a = full_record(*b, 4), clean_b = full_record(*b, 4);
  const Condition moe_last = restore_site(Site::Moe, 1, {3});
  const Condition moe_first = restore_site(Site::Moe, 1, {0, 2});
  const Condition hidden = restore_site(Site::Hidden, 2, {1});
  std::vector<StreamSpec> s(4);
  for (StreamSpec& x : s) x.prompt = &p;
  s[0].clean = clean_a.get(), s[0].condition = &moe_last;
  s[1].clean = clean_a.get(), s[1].condition = &moe_first;
  s[2].clean = clean_b.get(), s[2].condition = &moe_last;
  s[3].clean = clean_a.get(), s[3].condition = &hidden;
  const BatchPlan plan = compile_plan(s, config());
  const LayerPlan& L1 = plan.layers[1];
  BOOST_TEST_REQUIRE(L1.moe.size() == 1u);  // one patch per stream: phase 0 only
  const std::vector<RowTransfer>& t = L1.moe[0].transfers;
  BOOST_TEST_REQUIRE(t.size() == 2u);  // clean_a (streams 0, 1) and clean_b (stream 2)
  BOOST_TEST(t[0].src == clean_a->layers[1].moe_out.get());
  BOOST_TEST(!t[0].add);
  BOOST_TEST(t[0].src_rows == std::vector<int>({3, 0, 2}));
  BOOST_TEST(t[0].dst_rows == std::vector<int>({3, 4, 6}));
  BOOST_TEST(t[1].src == clean_b->layers[1].moe_out.get());
  BOOST_TEST(t[1].dst_rows == std::vector<int>({11}));
  BOOST_TEST_REQUIRE(plan.layers[2].hidden.size() == 1u);
  BOOST_TEST(plan.layers[2].hidden[0].transfers[0].src == clean_a->output.get());  // after the last layer
  BOOST_TEST(plan.layers[2].hidden[0].transfers[0].dst_rows == std::vector<int>({13}));
  BOOST_TEST(plan.layers[0].moe.empty());
}

BOOST_AUTO_TEST_CASE(overlapping_patches_of_one_stream_go_to_successive_phases) {
  auto b = make_cpu_backend();
  const Prompt p = prompt(4);
  auto clean = full_record(*b, 4);
  Condition c;
  c.patches.push_back(Patch{Site::Experts, 1, {2}, ExpertSet::Listed, {4, 2, 2, 5}, 0.5f});
  c.patches.push_back(Patch{Site::Moe, 1, {2}, ExpertSet::Listed, {}, 1.0f});
  c.patches.push_back(Patch{Site::Experts, 1, {2, 3}, ExpertSet::Union, {}, 1.0f});
  std::vector<StreamSpec> s(1);
  s[0].prompt = &p, s[0].clean = clean.get(), s[0].condition = &c;
  const BatchPlan plan = compile_plan(s, config());
  const LayerPlan& L = plan.layers[1];
  BOOST_TEST(L.expert_patches);
  BOOST_TEST_REQUIRE(L.moe.size() == 6u);  // add/sub, copy/-, add/sub
  // Patch 1 (Listed {2, 4, 5}): position 2 routes to clean experts 2 and 3 -> only expert 2 adds.
  BOOST_TEST_REQUIRE(L.moe[0].transfers.size() == 1u);
  BOOST_TEST(L.moe[0].transfers[0].src == clean->layers[1].updates.get());
  BOOST_TEST(L.moe[0].transfers[0].add);
  BOOST_TEST(L.moe[0].transfers[0].scale == 0.5f);
  BOOST_TEST(L.moe[0].transfers[0].src_rows == std::vector<int>({2 * kK + 0}));
  BOOST_TEST_REQUIRE(L.moe[1].own.size() == 1u);
  const OwnUpdateSubtraction& sub = L.moe[1].own[0];
  BOOST_TEST(sub.scale == -0.5f);
  BOOST_TEST(sub.rows == std::vector<int>({2}));
  BOOST_TEST(sub.set_experts == std::vector<int>({2, 4, 5}));  // sorted, duplicates removed
  BOOST_TEST(!sub.every_own[0]);
  // Patch 2: a copy in phase 2, nothing in phase 3.
  BOOST_TEST(L.moe[2].transfers.size() == 1u);
  BOOST_TEST(!L.moe[2].transfers[0].add);
  BOOST_TEST(L.moe[3].transfers.empty());
  BOOST_TEST(L.moe[3].own.empty());
  // Patch 3 (Union): clean experts of positions 2 (2, 3) and 3 (3, 4), ascending; every own expert.
  BOOST_TEST(L.moe[4].transfers[0].src_rows == std::vector<int>({2 * kK + 0, 2 * kK + 1, 3 * kK + 0, 3 * kK + 1}));
  BOOST_TEST(L.moe[4].transfers[0].dst_rows == std::vector<int>({2, 2, 3, 3}));
  BOOST_TEST(L.moe[5].own[0].every_own == std::vector<char>({1, 1}));
}

BOOST_AUTO_TEST_CASE(deactivations_become_a_per_row_mask_of_their_layer) {
  auto b = make_cpu_backend();
  const Prompt p3 = prompt(3), p2 = prompt(2);
  const Deactivation d = {{1, 4}, {0, 2}, {1, 5}};
  std::vector<StreamSpec> s(2);
  s[0].prompt = &p3;
  s[1].prompt = &p2, s[1].deactivation = &d;
  const BatchPlan plan = compile_plan(s, config());
  BOOST_TEST(plan.layers[0].mask_offsets == std::vector<int>({0, 0, 0, 0, 1, 2}));
  BOOST_TEST(plan.layers[0].mask_experts == std::vector<int>({2, 2}));
  BOOST_TEST(plan.layers[1].mask_offsets == std::vector<int>({0, 0, 0, 0, 2, 4}));
  BOOST_TEST(plan.layers[1].mask_experts == std::vector<int>({4, 5, 4, 5}));
  BOOST_TEST(plan.layers[2].mask_offsets.empty());
}

BOOST_AUTO_TEST_CASE(invalid_streams_are_rejected_before_any_work) {
  auto b = make_cpu_backend();
  const Prompt p = prompt(3);
  const Condition late = restore_site(Site::Moe, 0, {1});
  std::vector<StreamSpec> s(1);
  s[0].prompt = &p;
  s[0].condition = &late;  // patches without a clean record
  BOOST_CHECK_THROW(compile_plan(s, config()), InternalError);
  const Deactivation d = {{0, kE}};
  s[0].condition = nullptr;
  s[0].deactivation = &d;
  BOOST_CHECK_THROW(compile_plan(s, config()), InternalError);
}
