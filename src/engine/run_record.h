#pragma once
// What a run keeps for later runs: a clean run is the source of restored values, a noised run is
// the base that fast-path conditions continue from. Tensors stay on the backend.
#include <vector>

#include "backend/backend.h"

namespace moetrace {

enum class RecordLevel {
  None,  // keep nothing (patched runs: only the read-out is wanted)
  Base,  // residual entering each layer and the K/V of each layer: enough to continue from
  Full,  // Base plus attention / MoE outputs, expert updates, routing, final residual
};

struct LayerRecord {
  TensorPtr input;     // residual entering the layer [T, H] (hidden[l])
  TensorPtr keys;      // post-RoPE keys [T, kv_heads*head_dim]
  TensorPtr values;    // [T, kv_heads*head_dim]
  TensorPtr attn_out;  // Full: [T, H]
  TensorPtr moe_out;   // Full: [T, H]
  TensorPtr updates;   // Full: [T*k, H] weighted expert updates, slot j of position t at row t*k+j
  Routing routing;     // Full: experts and weights per position
  std::vector<float> router_logits;  // Full: [T, E]
};

struct RunRecord {
  int num_tokens = 0;
  RecordLevel level = RecordLevel::None;
  std::vector<LayerRecord> layers;
  TensorPtr output;  // Full: residual after the last layer (hidden[L]), before the final norm

  // Residual after layer l (= hidden[l+1]).
  const Tensor& after_layer(int l) const {
    return l + 1 < static_cast<int>(layers.size()) ? *layers[l + 1].input : *output;
  }
};

// ||c_e(a) - c_e(b)|| at (layer, position), c_e a run's weighted update of expert e there (zero where
// e is not routed): the size of what restoring e's update changes (the equal-norm control). Both
// runs recorded in full at the layer.
struct ExpertUpdateDistance {
  const RunRecord* a = nullptr;
  const RunRecord* b = nullptr;
  int layer = 0, position = 0, expert = 0;
};
// One backend call for all requests (Backend::row_distances).
std::vector<double> expert_update_distances(Backend& backend, const std::vector<ExpertUpdateDistance>& requests);

}  // namespace moetrace
