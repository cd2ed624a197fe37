#include "engine/device_model.h"

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
  m.embed = b.upload_weight(w.embed);
  m.final_norm = b.upload_weight(w.final_norm);
  m.lm_head = b.upload_weight(w.lm_head);
  for (const LayerWeights& L : w.layers) {
    DeviceLayer d;
    d.attn_norm = b.upload_weight(L.attn_norm);
    d.moe_norm = b.upload_weight(L.moe_norm);
    d.q_proj = b.upload_weight(L.q_proj);
    d.k_proj = b.upload_weight(L.k_proj);
    d.v_proj = b.upload_weight(L.v_proj);
    d.o_proj = b.upload_weight(L.o_proj);
    if (L.q_norm) d.q_norm = b.upload_weight(*L.q_norm);
    if (L.k_norm) d.k_norm = b.upload_weight(*L.k_norm);
    d.router = b.upload_weight(L.router);
    d.experts.resize(L.experts.size());
    for (int e = local.begin; e < local.end; ++e) {
      d.experts[e].gate = b.upload_weight(L.experts[e].gate);
      d.experts[e].up = b.upload_weight(L.experts[e].up);
      d.experts[e].down = b.upload_weight(L.experts[e].down);
    }
    m.layers.push_back(std::move(d));
  }
  return m;
}

}  // namespace moetrace
