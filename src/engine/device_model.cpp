#include "engine/device_model.h"

#include <algorithm>
#include <cstdint>
#include <set>

#include "util/error.h"
#include "util/logging.h"

namespace moetrace {

ExpertRange expert_block(int num_experts, int rank, int ranks) {
  MOETRACE_ASSERT(ranks >= 1 && rank >= 0 && rank < ranks, "bad rank");
  const int base = num_experts / ranks, extra = num_experts % ranks;
  const int begin = rank * base + std::min(rank, extra);
  return {begin, begin + base + (rank < extra ? 1 : 0)};
}

namespace {

// The tensors of `w` this rank holds, in load order: all but other ranks' experts.
std::vector<const TensorView*> rank_tensors(const ModelWeights& w, ExpertRange local) {
  std::set<const TensorView*> others;
  for (const LayerWeights& L : w.layers)
    for (int e = 0; e < static_cast<int>(L.experts.size()); ++e)
      if (e < local.begin || e >= local.end) others.insert({&L.experts[e].gate, &L.experts[e].up, &L.experts[e].down});
  std::vector<const TensorView*> out;
  for (const TensorView* v : model_tensors(w))
    if (!others.count(v)) out.push_back(v);
  return out;
}

// Reads this rank's pages of the store in now when they fit in half the available memory.
void prefault_rank(const WeightStoreFile& store, const ModelWeights& w, ExpertRange local) {
  const std::vector<const TensorView*> mine = rank_tensors(w, local);
  std::uint64_t bytes = 0;
  for (const TensorView* v : mine)
    if (auto it = store.blobs().find(v->name); it != store.blobs().end()) bytes += it->second.bytes;
  const std::uint64_t available = available_memory_bytes();
  if (available > 0 && bytes > available / 2) {
    spdlog::info("weight store: this rank's {:.2f} GB of weights exceed half the available memory ({:.2f} GB): "
                 "read as the forward reaches them (docs/weights.md, \"Larger than memory\")",
                 bytes / 1e9, available / 1e9);
    return;
  }
  for (const TensorView* v : mine) store.prefault(v->name);
}

}  // namespace

DeviceModel upload_model(const ModelWeights& w, Backend& b, ExpertRange local, const WeightStoreFile* store) {
  DeviceModel m;
  m.config = w.config;
  m.local_experts = local;
  if (store) prefault_rank(*store, w, local);
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
