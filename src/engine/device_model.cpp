#include "engine/device_model.h"

#include "engine/weight_streamer.h"

#include <algorithm>
#include <cstdint>
#include <cstdlib>

#include "util/error.h"
#include "util/logging.h"

namespace moetrace {

ExpertRange expert_block(int num_experts, int rank, int ranks) {
  MOETRACE_ASSERT(ranks >= 1 && rank >= 0 && rank < ranks, "bad rank");
  const int base = num_experts / ranks, extra = num_experts % ranks;
  const int begin = rank * base + std::min(rank, extra);
  return {begin, begin + base + (rank < extra ? 1 : 0)};
}

// A rank keeps resident weights up to 70% of the memory available at the start (the rest is for
// activations and the prepared-case cache); beyond, layers stream. MOETRACE_RESIDENT_WEIGHT_BYTES=N
// sets the budget (tests use it to stream tiny models).
std::uint64_t resident_weight_budget() {
  if (const char* env = std::getenv("MOETRACE_RESIDENT_WEIGHT_BYTES"); env && *env) {
    char* end = nullptr;
    const unsigned long long v = std::strtoull(env, &end, 10);
    if (end && *end == '\0') return v;
    fail_input("MOETRACE_RESIDENT_WEIGHT_BYTES={} is not a byte count", env);
  }
  const std::uint64_t available = available_memory_bytes();
  return available ? available / 10 * 7 : UINT64_MAX;
}

DeviceModel upload_model(const ModelWeights& w, Backend& b, ExpertRange local, const WeightStoreFile* store) {
  DeviceModel m;
  m.config = w.config;
  m.local_experts = local;
  if (store) m.layer_observer = plan_weight_residency(*store, w, local, resident_weight_budget());
  // From the checkpoint, each tensor's file pages are dropped once the backend has its copy: the
  // mapped checkpoint never adds to the peak (docs/benchmarks.md, "Memory").
  const auto up = [&](const TensorView& v) {
    if (store) {
      std::size_t bytes = 0;
      const std::byte* image = store->blob(v.name, bytes);
      return b.map_weight(v, image, bytes, store->path().string());
    }
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
