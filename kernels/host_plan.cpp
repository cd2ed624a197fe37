#include "kernels/host_plan.h"

#include <algorithm>
#include <string>

#include "util/error.h"

namespace moetrace::cuda_plan {

bool is_contiguous_range(const std::vector<int>& rows) {
  if (rows.empty()) return false;
  for (std::size_t i = 1; i < rows.size(); ++i)
    if (rows[i] != rows[0] + static_cast<int>(i)) return false;
  return true;
}

bool has_duplicates(const std::vector<int>& rows) {
  if (rows.size() < 2) return false;
  std::vector<int> s(rows);
  std::sort(s.begin(), s.end());
  return std::adjacent_find(s.begin(), s.end()) != s.end();
}

ExpertPlan plan_experts(const std::vector<ExpertTask>& tasks, int x_rows, int out_rows) {
  ExpertPlan p;
  std::size_t total = 0;
  for (const ExpertTask& t : tasks) total += t.in_rows.size();
  p.gather_rows.reserve(total);
  p.scatter_rows.reserve(total);
  p.weights.reserve(total);
  p.offsets.push_back(0);
  for (std::size_t ti = 0; ti < tasks.size(); ++ti) {
    const ExpertTask& t = tasks[ti];
    MOETRACE_ASSERT(t.in_rows.size() == t.out_rows.size() && t.in_rows.size() == t.weights.size(),
                    "expert task " + std::to_string(ti) + ": row lists differ in length");
    if (t.in_rows.empty()) continue;
    MOETRACE_ASSERT(t.gate && t.up && t.down, "expert task " + std::to_string(ti) + " without weights");
    for (std::size_t i = 0; i < t.in_rows.size(); ++i) {
      MOETRACE_ASSERT(t.in_rows[i] >= 0 && t.in_rows[i] < x_rows, "expert task " + std::to_string(ti) + ": input row out of range");
      MOETRACE_ASSERT(t.out_rows[i] >= 0 && t.out_rows[i] < out_rows,
                      "expert task " + std::to_string(ti) + ": output row out of range");
    }
    p.gather_rows.insert(p.gather_rows.end(), t.in_rows.begin(), t.in_rows.end());
    p.scatter_rows.insert(p.scatter_rows.end(), t.out_rows.begin(), t.out_rows.end());
    p.weights.insert(p.weights.end(), t.weights.begin(), t.weights.end());
    p.offsets.push_back(static_cast<int>(p.gather_rows.size()));
    p.task_of_group.push_back(static_cast<int>(ti));
  }
  return p;
}

std::vector<AttentionItem> attention_items(const std::vector<AttentionSegment>& segments, int q_rows) {
  std::vector<AttentionItem> items;
  for (std::size_t s = 0; s < segments.size(); ++s) {
    const AttentionSegment& g = segments[s];
    MOETRACE_ASSERT(g.q_row >= 0 && g.num_queries >= 0 && g.q_row + g.num_queries <= q_rows,
                    "attention: segment rows outside the queries");
    MOETRACE_ASSERT(g.keys && g.values, "attention: segment without keys or values");
    MOETRACE_ASSERT(g.keys->rows() >= g.first_pos + g.num_queries && g.values->rows() >= g.first_pos + g.num_queries,
                    "attention: key context too short");
    for (int i = 0; i < g.num_queries; ++i) items.push_back({g.q_row + i, static_cast<int>(s), g.first_pos + i});
  }
  return items;
}

std::vector<Piece> split_copy(std::int64_t count, std::int64_t max_piece) {
  std::vector<Piece> out;
  for (std::int64_t o = 0; o < count; o += max_piece) out.push_back({o, o, std::min(max_piece, count - o)});
  return out;
}

}  // namespace moetrace::cuda_plan
