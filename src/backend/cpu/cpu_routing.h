#pragma once
// Backend::route for backends whose tensors live in host memory (the CPU reference).
#include "backend/backend.h"

namespace moetrace {

// logits: [rows, num_experts] row-major floats in host memory. The result owns its host table.
RoutingPtr route_on_host(const float* logits, int rows, int num_experts, const RouteRequest& request);

}  // namespace moetrace
