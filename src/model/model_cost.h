#pragma once
// Matrix-product FLOPs of the forward, from a model's widths alone (`moetrace plan`,
// docs/distribution.md "Planning a study"). FLOPs count 2 per multiply-add; element-wise work
// (norms, RoPE, softmax, SiLU) is left out.
#include "model/model_config.h"

namespace moetrace {

// One token through one decoder layer, attending to `mean_context` keys: the q/k/v/o projections,
// the attention scores and their weighted sum over the keys, the router, and the top_k routed
// experts (gate, up, down). The supported architectures have no shared experts (ModelConfig has
// none to count).
double matmul_flops_per_layer_token(const ModelConfig& config, double mean_context);

// The routed experts' share of matmul_flops_per_layer_token (the part expert parallelism divides).
double moe_flop_fraction(const ModelConfig& config, double mean_context);

}  // namespace moetrace
