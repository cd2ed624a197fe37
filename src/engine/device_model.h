#pragma once
// A model's weights uploaded to one backend. Under expert parallelism a rank holds only its own
// contiguous block of experts per layer; everything else is replicated.
#include <memory>
#include <vector>

#include "backend/backend.h"
#include "model/model_weights.h"
#include "model/weight_store.h"

namespace moetrace {

// Experts [begin, end) of every layer live on this rank.
struct ExpertRange {
  int begin = 0;
  int end = 0;
};

// Contiguous blocks, uneven counts allowed: the first (E mod R) ranks hold one expert more.
ExpertRange expert_block(int num_experts, int rank, int ranks);

struct DeviceExpert {
  WeightPtr gate, up, down;  // null for experts held by other ranks
};

struct DeviceLayer {
  WeightPtr attn_norm, moe_norm, q_proj, k_proj, v_proj, o_proj, q_norm, k_norm, router;
  std::vector<DeviceExpert> experts;
};

// Told by the engine as it walks the layers of a call (a weight store larger than memory streams
// its layers through memory this way: engine/weight_streamer.h).
class LayerObserver {
 public:
  virtual ~LayerObserver() = default;
  virtual void entering(int layer) = 0;
  virtual void leaving(int layer) = 0;
};

struct DeviceModel {
  std::shared_ptr<LayerObserver> layer_observer;  // null: nothing to tell
  ModelConfig config;
  ExpertRange local_experts;
  WeightPtr embed, final_norm, lm_head;
  std::vector<DeviceLayer> layers;
};

// The bytes of mapped weights a rank keeps resident (engine/weight_streamer.h): 70% of the memory
// available at the start, or MOETRACE_RESIDENT_WEIGHT_BYTES; beyond, layers stream. The planner
// (moetrace plan) applies the same rule.
std::uint64_t resident_weight_budget();

// The weights this rank uses (every replicated tensor, the experts of `local`), uploaded from the
// checkpoint, or, with a weight store, mapped from it in place (docs/weights.md): then the rank's
// pages are read in at once when they take at most half the memory available (few page faults),
// and left to be read as the forward reaches them otherwise (a model larger than memory).
DeviceModel upload_model(const ModelWeights& weights, Backend& backend, ExpertRange local,
                         const WeightStoreFile* store = nullptr);
inline DeviceModel upload_model(const ModelWeights& weights, Backend& backend) {
  return upload_model(weights, backend, {0, weights.config.num_experts});
}

}  // namespace moetrace
