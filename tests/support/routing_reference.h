#pragma once
// An independent reference for Backend::route, written from the definition in double precision
// (not from any backend's code, as the conformance goldens are): per row, the softmax over the experts
// that are not deactivated (a deactivated expert has probability 0), the k most probable experts in
// descending probability (equal probabilities: the lower expert index first), and their probabilities,
// divided by their sum when renormalising.
#include <vector>

namespace moetrace::test {

struct ReferenceRouting {
  int k = 0;
  std::vector<int> experts;     // [rows * k]
  std::vector<double> weights;  // [rows * k]
  int expert(int row, int slot) const { return experts[row * k + slot]; }
  double weight(int row, int slot) const { return weights[row * k + slot]; }
  bool routes(int row, int e) const;
};

// logits: [rows, num_experts] row-major; masked[row] lists the deactivated experts of that row (empty:
// none). A non-finite logit throws std::domain_error; a row with fewer than k experts left throws
// std::length_error.
ReferenceRouting reference_routing(const std::vector<float>& logits, int rows, int num_experts, int k,
                                   bool renormalise, const std::vector<std::vector<int>>& masked = {});

}  // namespace moetrace::test
