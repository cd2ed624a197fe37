#pragma once
// The host routing the engine used before routing became a Backend operation (Backend::route),
// kept for tests only, as the reference every backend's `route` is checked against: router softmax
// and top-k in double precision.
// `Routing` itself is declared with the routing op in backend/backend.h.
#include <vector>

#include "backend/backend.h"

namespace moetrace {

// logits: [rows, num_experts] row-major. masked[row] lists experts forced to -inf for that row
// (deactivation); pass an empty vector for none.
Routing route_top_k(const std::vector<float>& logits, int rows, int num_experts, int k, bool renormalise,
                    const std::vector<std::vector<int>>& masked);

}  // namespace moetrace
