#pragma once
// A model's weights uploaded to one backend. Under expert parallelism a rank holds only its own
// contiguous block of experts per layer; everything else is replicated.
#include <vector>

#include "backend/backend.h"
#include "model/model_weights.h"

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

struct DeviceModel {
  ModelConfig config;
  ExpertRange local_experts;
  WeightPtr embed, final_norm, lm_head;
  std::vector<DeviceLayer> layers;
};

DeviceModel upload_model(const ModelWeights& weights, Backend& backend, ExpertRange local);
inline DeviceModel upload_model(const ModelWeights& weights, Backend& backend) {
  return upload_model(weights, backend, {0, weights.config.num_experts});
}

}  // namespace moetrace
