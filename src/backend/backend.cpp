#include "backend/backend.h"

#include <algorithm>
#include <cmath>

#include "util/error.h"

namespace moetrace {
namespace {

// Population standard deviation over a stream of values (Welford: stable for large matrices).
struct RunningStd {
  double mean = 0, m2 = 0;
  std::size_t n = 0;
  void add(double x) {
    ++n;
    const double d = x - mean;
    mean += d / static_cast<double>(n);
    m2 += d * (x - mean);
  }
  double value() const { return n ? std::sqrt(m2 / static_cast<double>(n)) : 0.0; }
};

}  // namespace

std::pair<int, int> weight_matrix_shape(const TensorView& view) {
  if (view.shape.size() == 1) return {1, static_cast<int>(view.shape[0])};
  if (view.shape.size() == 2) return {static_cast<int>(view.shape[0]), static_cast<int>(view.shape[1])};
  fail_internal(__FILE__, __LINE__, "weights must be 1-D or 2-D: " + view.name);
}

std::span<const std::byte> Backend::weight_image(const Weight&) const {
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

double Backend::rows_std(const Weight& table, const std::vector<int>& rows) {
  MOETRACE_ASSERT(!rows.empty(), "rows_std: no rows");
  constexpr std::size_t kChunkRows = 4096;  // bounds the host copy (32 MiB at 2048 columns)
  const std::size_t cols = static_cast<std::size_t>(table.cols());
  std::vector<float> chunk;
  RunningStd s;
  for (std::size_t begin = 0; begin < rows.size(); begin += kChunkRows) {
    const std::size_t end = std::min(rows.size(), begin + kChunkRows);
    const TensorPtr t = embed(table, std::vector<int>(rows.begin() + begin, rows.begin() + end));
    chunk.resize((end - begin) * cols);
    download(*t, chunk.data());
    for (float x : chunk) s.add(x);
  }
  return s.value();
}

}  // namespace moetrace
