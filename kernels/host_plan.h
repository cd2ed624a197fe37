#pragma once
// Host-side index work of the CUDA backend, kept free of CUDA so that it is unit-tested on machines
// without a GPU (tests/gpu/test_cuda_host.cpp).
#include <cstdint>
#include <vector>

#include "backend/backend.h"

namespace moetrace::cuda_plan {

// rows == {r0, r0+1, ..., r0+n-1} (n >= 1)
bool is_contiguous_range(const std::vector<int>& rows);
bool has_duplicates(const std::vector<int>& rows);

// The tokens of every expert task, concatenated in task order: one gather, grouped products over
// [offsets[g], offsets[g+1]) for group g (the g-th non-empty task, tasks[task_of_group[g]]) and one
// weighted scatter into the slot rows.
struct ExpertPlan {
  std::vector<int> gather_rows;   // [M] rows of x
  std::vector<int> scatter_rows;  // [M] rows of out
  std::vector<float> weights;     // [M]
  std::vector<int> offsets;       // [groups + 1]
  std::vector<int> task_of_group;  // [groups]
  int total_rows() const { return static_cast<int>(gather_rows.size()); }
  int groups() const { return static_cast<int>(task_of_group.size()); }
};
// Validates every index against x_rows / out_rows (InternalError naming the task otherwise).
ExpertPlan plan_experts(const std::vector<ExpertTask>& tasks, int x_rows, int out_rows);

// One attention work item per query row covered by a segment.
struct AttentionItem {
  int row, seg, pos;
};
std::vector<AttentionItem> attention_items(const std::vector<AttentionSegment>& segments, int q_rows);

// A copy of `count` floats split into pieces of at most `max_piece` (one block each).
struct Piece {
  std::int64_t src_offset, dst_offset, count;
};
std::vector<Piece> split_copy(std::int64_t count, std::int64_t max_piece);

}  // namespace moetrace::cuda_plan
