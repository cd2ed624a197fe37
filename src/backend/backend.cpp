#include "backend/backend.h"

#include "util/error.h"

namespace moetrace {

std::pair<int, int> weight_matrix_shape(const TensorView& view) {
  if (view.shape.size() == 1) return {1, static_cast<int>(view.shape[0])};
  if (view.shape.size() == 2) return {static_cast<int>(view.shape[0]), static_cast<int>(view.shape[1])};
  fail_internal(__FILE__, __LINE__, "weights must be 1-D or 2-D: " + view.name);
}

std::vector<std::byte> Backend::weight_image(const Weight&) const {
  fail_internal(__FILE__, __LINE__, "backend " + name() + " has no weight store layout");
}

WeightPtr Backend::map_weight(const TensorView&, const std::byte*, std::size_t, const std::string&) {
  fail_internal(__FILE__, __LINE__, "backend " + name() + " has no weight store layout");
}

int Routing::slot_of(int row, int e) const {
  for (int j = 0; j < k; ++j)
    if (experts[row * k + j] == e) return j;
  return -1;
}

void Backend::run_routed_experts(const Tensor& x, const RoutingResult& routing,
                                 const std::vector<ExpertRef>& experts, Tensor& out) {
  const RoutingTable& t = routing.host();
  const int k = routing.k();
  MOETRACE_ASSERT(static_cast<int>(experts.size()) == routing.num_experts(), "run_routed_experts: expert count");
  std::vector<ExpertTask> tasks;
  for (int e = 0; e < routing.num_experts(); ++e) {
    const ExpertRef& w = experts[e];
    const int begin = t.expert_offsets[e], end = t.expert_offsets[e + 1];
    if (!w.gate || begin == end) continue;
    ExpertTask task{w.gate, w.up, w.down, {}, {}, {}};
    task.in_rows.reserve(end - begin);
    task.out_rows.reserve(end - begin);
    task.weights.reserve(end - begin);
    for (int i = begin; i < end; ++i) {
      const int slot = t.expert_slots[i];
      task.in_rows.push_back(slot / k);
      task.out_rows.push_back(slot);
      task.weights.push_back(t.top.weights[slot]);
    }
    tasks.push_back(std::move(task));
  }
  run_experts(x, tasks, out);
}

}  // namespace moetrace
