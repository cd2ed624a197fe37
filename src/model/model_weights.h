#pragma once
// Resolves a checkpoint's tensors into the model's structure, validating every name and shape.
// A missing, extra or misshapen tensor is an error naming the file and the tensor: a model is
// either loaded exactly or not at all.
#include <filesystem>
#include <memory>
#include <optional>
#include <vector>

#include "model/checkpoint.h"
#include "model/model_config.h"

namespace moetrace {

struct ExpertWeights {
  TensorView gate;  // [I, H]  (Mixtral w1)
  TensorView up;    // [I, H]  (Mixtral w3)
  TensorView down;  // [H, I]  (Mixtral w2)
};

struct LayerWeights {
  TensorView attn_norm;      // input_layernorm [H]
  TensorView moe_norm;       // post_attention_layernorm [H]
  TensorView q_proj, k_proj, v_proj, o_proj;
  std::optional<TensorView> q_norm, k_norm;  // per-head [head_dim] or whole [heads*head_dim]
  TensorView router;         // [E, H]
  std::vector<ExpertWeights> experts;
};

enum class ExpertLayout { PerExpert, Fused };

struct ModelWeights {
  ModelConfig config;
  std::shared_ptr<const Checkpoint> checkpoint;  // keeps the mapped files alive
  ExpertLayout expert_layout = ExpertLayout::PerExpert;
  TensorView embed;       // [V, H]
  TensorView final_norm;  // [H]
  TensorView lm_head;     // [V, H]
  std::vector<LayerWeights> layers;
};

struct LoadOptions {
  // NaN or infinite weights are an InputError naming the file and the tensor unless this is set.
  bool allow_nonfinite_weights = false;
  // false: the weights' bytes are not read here (a weight store recorded their scan when it was
  // built, and the caller checks that record instead).
  bool scan_weights = true;
};

// Every tensor the model uses, in load order: embeddings, final norm, read-out, then each layer's
// norms, projections, q/k norms, router and experts (fused experts as their per-expert slices).
std::vector<const TensorView*> model_tensors(const ModelWeights& weights);
// One layer's tensors in the same order, with the experts [expert_begin, expert_end) only.
std::vector<const TensorView*> layer_tensors(const LayerWeights& layer, int expert_begin, int expert_end);

// Loads config.json and the safetensors of a model folder; every input is validated
// (docs/ARCHITECTURE.md, "Inputs"), the weights included (a scan of every tensor for NaN/Inf).
ModelWeights load_model(const std::filesystem::path& model_dir, const LoadOptions& options = {});
// Resolves an already-open checkpoint against a config (used by tests to feed altered configs).
ModelWeights resolve_weights(const ModelConfig& config, std::shared_ptr<const Checkpoint> checkpoint);

}  // namespace moetrace
