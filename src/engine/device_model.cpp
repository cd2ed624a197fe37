#include "engine/device_model.h"

#include <algorithm>
#include <cstdint>

#include "util/error.h"

namespace moetrace {

ExpertRange expert_block(int num_experts, int rank, int ranks) {
  MOETRACE_ASSERT(ranks >= 1 && rank >= 0 && rank < ranks, "bad rank");
  const int base = num_experts / ranks, extra = num_experts % ranks;
  const int begin = rank * base + std::min(rank, extra);
  return {begin, begin + base + (rank < extra ? 1 : 0)};
}

DeviceModel upload_model(const ModelWeights& w, Backend& b, ExpertRange local) {
  DeviceModel m;
  m.config = w.config;
  m.local_experts = local;
  // Each tensor's file pages are dropped once the backend has its copy: the mapped checkpoint never
  // adds to the peak (docs/benchmarks.md, "Memory").
  const auto up = [&](const TensorView& v) {
    WeightPtr p = b.upload_weight(v);
    if (w.checkpoint) w.checkpoint->release_pages(v);
    return p;
  };
  m.embed = up(w.embed);
  m.final_norm = up(w.final_norm);
  m.lm_head = up(w.lm_head);
  for (const LayerWeights& L : w.layers) {
    DeviceLayer d;
    d.attn_norm = up(L.attn_norm);
    d.moe_norm = up(L.moe_norm);
    d.q_proj = up(L.q_proj);
    d.k_proj = up(L.k_proj);
    d.v_proj = up(L.v_proj);
    d.o_proj = up(L.o_proj);
    if (L.q_norm) d.q_norm = up(*L.q_norm);
    if (L.k_norm) d.k_norm = up(*L.k_norm);
    d.router = up(L.router);
    d.experts.resize(L.experts.size());
    for (int e = local.begin; e < local.end; ++e) {
      d.experts[e].gate = up(L.experts[e].gate);
      d.experts[e].up = up(L.experts[e].up);
      d.experts[e].down = up(L.experts[e].down);
    }
    m.layers.push_back(std::move(d));
  }
  return m;
}

}  // namespace moetrace
