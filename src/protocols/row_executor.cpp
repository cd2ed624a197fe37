#include "protocols/row_executor.h"

#include <algorithm>
#include <cmath>
#include <optional>

#include "util/error.h"
#include "util/progress.h"

namespace moetrace {

Matrix2 RowExecutor::run(const std::string& label, int rows, const RowCost& cost, const std::vector<RowOutput>& outputs,
                         const ChunkFunction& compute) {
  std::vector<int> all;
  for (int i = 0; i < rows; ++i)
    if (shard_.has(i)) all.push_back(i);
  return run_rows(label, rows, all, cost, outputs, compute);
}

std::vector<std::vector<int>> make_chunks(std::vector<int> rows, const RowCost& row_cost, int chunk_tokens) {
  auto cost = [&](int i) { return row_cost ? row_cost(i) : 1.0; };
  std::stable_sort(rows.begin(), rows.end(), [&](int a, int b) { return cost(a) > cost(b); });
  std::vector<std::vector<int>> chunks;
  double tokens = 0;
  for (int r : rows) {
    if (chunks.empty() || tokens + cost(r) > chunk_tokens) {
      chunks.emplace_back();
      tokens = 0;
    }
    chunks.back().push_back(r);
    tokens += cost(r);
  }
  return chunks;
}

StoredRows open_rows(ResultsFile& results, int rows, const std::vector<RowOutput>& outputs) {
  int width = 0;
  for (const RowOutput& o : outputs) width += o.width;
  StoredRows s{Matrix2(rows, width, NAN), std::vector<bool>(rows, true)};
  int col = 0;
  for (const RowOutput& o : outputs) {
    const bool existed = results.has(o.dataset);
    results.ensure_matrix(o.dataset, {static_cast<std::size_t>(rows), static_cast<std::size_t>(o.width)});
    if (!existed) {
      s.done.assign(rows, false);
      col += o.width;
      continue;
    }
    const std::vector<bool> d = results.done_rows(o.dataset);
    const auto a = results.read_matrix(o.dataset);
    for (int i = 0; i < rows; ++i) {
      s.done[i] = s.done[i] && d[i];
      for (int j = 0; j < o.width; ++j) s.values.at(i, col + j) = a.data[static_cast<std::size_t>(i) * o.width + j];
    }
    col += o.width;
  }
  return s;
}

void store_row(ResultsFile& results, int row, const std::vector<RowOutput>& outputs, const std::vector<double>& values,
               Matrix2& table) {
  MOETRACE_ASSERT(static_cast<int>(values.size()) == table.cols, "row width differs from its outputs");
  std::size_t offset = 0;
  for (const RowOutput& o : outputs) {
    results.write_row(o.dataset, row, std::vector<double>(values.begin() + offset, values.begin() + offset + o.width));
    offset += o.width;
  }
  std::copy(values.begin(), values.end(), table.v.begin() + static_cast<std::ptrdiff_t>(row) * table.cols);
}

LocalRowExecutor::LocalRowExecutor(ResultsFile& results, int chunk_tokens, double progress_every_s,
                                   std::function<void()> between_chunks)
    : RowExecutor(chunk_tokens), results_(results), progress_every_s_(progress_every_s),
      between_chunks_(std::move(between_chunks)) {}

Matrix2 LocalRowExecutor::run_rows(const std::string& label, int rows, const std::vector<int>& subset, const RowCost& cost,
                                   const std::vector<RowOutput>& outputs, const ChunkFunction& compute) {
  StoredRows stored = open_rows(results_, rows, outputs);
  std::vector<int> todo;
  for (int i : subset)
    if (!stored.done[i]) todo.push_back(i);
  std::optional<ProgressMeter> progress;  // none for an unlabelled table (the scan reports its own)
  if (!label.empty()) progress.emplace(label, unit_, todo.size(), progress_every_s_);
  std::size_t done = 0;
  for (const std::vector<int>& chunk : make_chunks(todo, cost)) {
    const std::vector<std::vector<double>> values = compute(chunk);
    MOETRACE_ASSERT(values.size() == chunk.size(), "one result per row of a chunk");
    for (std::size_t k = 0; k < chunk.size(); ++k) store_row(results_, chunk[k], outputs, values[k], stored.values);
    between_chunks_();
    done += chunk.size();
    if (progress) progress->update(done);
  }
  if (progress) progress->finish();
  if (!todo.empty()) results_.flush();  // a stage's end (or a scan round's) is saved at once
  last_complete_ = static_cast<std::size_t>(std::count(stored.done.begin(), stored.done.end(), true)) + todo.size() ==
                   static_cast<std::size_t>(rows);
  return std::move(stored.values);
}

}  // namespace moetrace
