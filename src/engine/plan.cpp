#include "engine/plan.h"

#include <algorithm>

#include "util/error.h"

namespace moetrace {
namespace {

void validate(const StreamSpec& s, const ModelConfig& c) {
  MOETRACE_ASSERT(s.prompt && !s.prompt->ids.empty(), "stream without a prompt");
  const int T = s.prompt->num_tokens();
  MOETRACE_ASSERT(s.start_layer >= 0 && s.start_layer < c.num_layers, "start layer out of range");
  MOETRACE_ASSERT(s.start_pos >= 0 && s.start_pos < T, "start position out of range");
  if (s.start_layer > 0 || s.start_pos > 0) {
    MOETRACE_ASSERT(s.base && s.base->level != RecordLevel::None, "a continuation needs a recorded base run");
    MOETRACE_ASSERT(s.base->num_tokens == T, "base run of a different prompt");
  }
  if (s.record == RecordLevel::Full && s.start_pos > 0)
    MOETRACE_ASSERT(s.base->level == RecordLevel::Full, "a full record continuing a run needs a full base");
  // A recorded run starting after layer 0 (CaseTracer::record_noised_in_full) records the layers
  // from its start on, whole: it must start at position 0.
  if (s.record != RecordLevel::None && s.start_layer > 0)
    MOETRACE_ASSERT(s.start_pos == 0, "a recorded run starting after layer 0 must start at position 0");
  if (s.readout == Readout::AllLogits) MOETRACE_ASSERT(s.start_pos == 0, "all logits need start_pos 0");
  if (s.noise) {
    MOETRACE_ASSERT(s.start_layer == 0, "noise is added to embeddings: start_layer must be 0");
    const int n = s.prompt->subject_end - s.prompt->subject_begin;
    MOETRACE_ASSERT(static_cast<int>(s.noise->size()) == n * c.hidden_size, "noise shape");
  }
  if (s.condition) {
    for (const Patch& p : s.condition->patches) {
      MOETRACE_ASSERT(s.clean && s.clean->level == RecordLevel::Full, "patches need a full clean record");
      MOETRACE_ASSERT(p.layer >= s.start_layer && p.layer < c.num_layers, "patch layer before the stream start");
      for (int t : p.positions)
        MOETRACE_ASSERT(t >= s.start_pos && t < T, "patch position before the stream start");
    }
  }
  if (s.deactivation)
    for (auto [l, e] : *s.deactivation)
      MOETRACE_ASSERT(l >= 0 && l < c.num_layers && e >= 0 && e < c.num_experts, "deactivated expert out of range");
}

PatchPhase& phase(std::vector<PatchPhase>& phases, std::size_t p) {
  if (phases.size() <= p) phases.resize(p + 1);
  return phases[p];
}

// The phase's transfer from `src` with this kind and scale (one per distinct source: streams of
// one case share their clean record, so they share a transfer).
RowTransfer& transfer(PatchPhase& ph, const Tensor* src, bool add, float scale) {
  for (RowTransfer& t : ph.transfers)
    if (t.src == src && t.add == add && t.scale == scale) return t;
  ph.transfers.push_back(RowTransfer{src, add, scale, {}, {}});
  return ph.transfers.back();
}

OwnUpdateSubtraction& subtraction(PatchPhase& ph, float scale) {
  for (OwnUpdateSubtraction& o : ph.own)
    if (o.scale == scale) return o;
  ph.own.push_back(OwnUpdateSubtraction{scale, {}, {}, {0}, {}});
  return ph.own.back();
}

// Site::Experts at (layer l, stream rows r): adds of c_e(clean) for the clean-routed experts of
// the set (compiled now: the clean routing is recorded) into phase `add_phase`, and the
// subtraction of c_e(own) (resolved once the layer is routed) into `sub_phase`. Within a row both
// run over the set in ascending expert order, as std::set did in the original engine.
void compile_expert_patch(const Patch& p, const StreamSpec& s, const StreamRows& r, int l, int K,
                          PatchPhase& add_phase, PatchPhase& sub_phase) {
  const LayerRecord& clean = s.clean->layers[l];
  RowTransfer& add = transfer(add_phase, clean.updates.get(), true, p.scale);
  OwnUpdateSubtraction& sub = subtraction(sub_phase, -p.scale);
  std::vector<int> listed(p.experts.begin(), p.experts.end());
  std::sort(listed.begin(), listed.end());
  listed.erase(std::unique(listed.begin(), listed.end()), listed.end());
  for (int t : p.positions) {
    const int row = r.offset + t - s.start_pos;
    std::vector<int> set;  // the set without the own-routed part of a Union
    if (p.expert_set == ExpertSet::Listed) set = listed;
    else
      for (int j = 0; j < K; ++j) set.push_back(clean.routing.expert(t, j));
    std::sort(set.begin(), set.end());
    set.erase(std::unique(set.begin(), set.end()), set.end());
    for (int e : set)
      if (int cs = clean.routing.slot_of(t, e); cs >= 0) {
        add.src_rows.push_back(t * K + cs);
        add.dst_rows.push_back(row);
      }
    sub.rows.push_back(row);
    sub.every_own.push_back(p.expert_set == ExpertSet::Union);
    sub.set_experts.insert(sub.set_experts.end(), set.begin(), set.end());
    sub.set_offsets.push_back(static_cast<int>(sub.set_experts.size()));
  }
}

void compile_patches(const StreamSpec& s, const StreamRows& r, int l, int K, LayerPlan& L) {
  if (!s.condition) return;
  std::size_t n_attn = 0, n_moe = 0, n_hidden = 0;  // this stream's patches per site so far
  for (const Patch& p : s.condition->patches) {
    if (p.layer != l) continue;
    std::vector<int> dst;
    for (int t : p.positions) dst.push_back(r.offset + t - s.start_pos);
    const LayerRecord& clean = s.clean->layers[l];
    auto copy = [&](PatchPhase& ph, const Tensor* src) {
      RowTransfer& tr = transfer(ph, src, false, 1.0f);
      tr.src_rows.insert(tr.src_rows.end(), p.positions.begin(), p.positions.end());
      tr.dst_rows.insert(tr.dst_rows.end(), dst.begin(), dst.end());
    };
    switch (p.site) {
      case Site::Attn: copy(phase(L.attn, n_attn++), clean.attn_out.get()); break;
      case Site::Hidden: copy(phase(L.hidden, n_hidden++), &s.clean->after_layer(l)); break;
      case Site::Moe:
        copy(phase(L.moe, 2 * n_moe), clean.moe_out.get());
        ++n_moe;
        break;
      case Site::Experts: {
        phase(L.moe, 2 * n_moe + 1);
        compile_expert_patch(p, s, r, l, K, L.moe[2 * n_moe], L.moe[2 * n_moe + 1]);
        ++n_moe;
        L.expert_patches = true;
        break;
      }
    }
  }
}

void compile_mask(const std::vector<StreamSpec>& streams, int l, LayerPlan& L) {
  std::vector<std::vector<int>> per_stream(streams.size());
  bool any = false;
  for (const StreamRows& r : L.batch) {
    const StreamSpec& s = streams[r.stream];
    if (!s.deactivation) continue;
    for (auto [dl, de] : *s.deactivation)
      if (dl == l) per_stream[r.stream].push_back(de);
    any = any || !per_stream[r.stream].empty();
  }
  if (!any) return;
  L.mask_offsets.assign(1, 0);
  for (const StreamRows& r : L.batch) {
    const std::vector<int>& here = per_stream[r.stream];
    for (int i = 0; i < r.count; ++i) {
      L.mask_experts.insert(L.mask_experts.end(), here.begin(), here.end());
      L.mask_offsets.push_back(static_cast<int>(L.mask_experts.size()));
    }
  }
}

}  // namespace

BatchPlan compile_plan(const std::vector<StreamSpec>& streams, const ModelConfig& c) {
  for (const StreamSpec& s : streams) validate(s, c);
  BatchPlan plan;
  plan.layers.resize(c.num_layers);
  std::vector<StreamRows> batch;
  std::vector<int> positions;
  bool full_records = false;
  for (int l = 0; l < c.num_layers; ++l) {
    LayerPlan& L = plan.layers[l];
    // Streams join the batch at their start layer; the batch only grows.
    for (std::size_t i = 0; i < streams.size(); ++i) {
      const StreamSpec& s = streams[i];
      if (s.start_layer != l) continue;
      const int T = s.prompt->num_tokens();
      L.joining.push_back(static_cast<int>(i));
      batch.push_back({static_cast<int>(i), static_cast<int>(positions.size()), T - s.start_pos});
      for (int t = s.start_pos; t < T; ++t) positions.push_back(t);
      full_records = full_records || s.record == RecordLevel::Full;
    }
    L.batch = batch;
    L.positions = positions;
    L.rows = static_cast<int>(positions.size());
    L.full_records = full_records;
    for (const StreamRows& r : L.batch) compile_patches(streams[r.stream], r, l, c.top_k, L);
    compile_mask(streams, l, L);
  }
  MOETRACE_ASSERT(streams.empty() || !plan.layers.back().batch.empty(), "no stream reaches the last layer");
  return plan;
}

}  // namespace moetrace
