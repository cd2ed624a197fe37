#pragma once
// Router softmax and top-k on the host, in double precision: the selection must match the model's
// exactly (fixtures guarantee a top-k margin of at least 1e-3).
#include <vector>

namespace moetrace {

struct Routing {
  int k = 0;
  std::vector<int> experts;    // [rows * k], descending probability
  std::vector<float> weights;  // [rows * k], renormalised where the model does

  int expert(int row, int slot) const { return experts[row * k + slot]; }
  // Slot of expert e in row, or -1 when e is not routed there.
  int slot_of(int row, int e) const;
};

// logits: [rows, num_experts] row-major. masked[row] lists experts forced to -inf for that row
// (deactivation); pass an empty vector for none.
Routing route_top_k(const std::vector<float>& logits, int rows, int num_experts, int k, bool renormalise,
                    const std::vector<std::vector<int>>& masked);

}  // namespace moetrace
