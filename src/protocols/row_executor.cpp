#include "protocols/row_executor.h"

#include "util/error.h"
#include "util/progress.h"

namespace moetrace {

std::vector<int> rows_to_do(ResultsFile& results, int rows, const std::vector<RowOutput>& outputs) {
  for (const RowOutput& o : outputs)
    results.ensure_matrix(o.dataset, {static_cast<std::size_t>(rows), static_cast<std::size_t>(o.width)});
  std::vector<bool> done(rows, true);
  for (const RowOutput& o : outputs) {
    const std::vector<bool> d = results.done_rows(o.dataset);
    for (int i = 0; i < rows; ++i) done[i] = done[i] && d[i];
  }
  std::vector<int> todo;
  for (int i = 0; i < rows; ++i)
    if (!done[i]) todo.push_back(i);
  return todo;
}

void store_row(ResultsFile& results, int row, const std::vector<RowOutput>& outputs, const std::vector<double>& values) {
  std::size_t offset = 0;
  for (const RowOutput& o : outputs) {
    MOETRACE_ASSERT(offset + o.width <= values.size(), "row shorter than its outputs");
    results.write_row(o.dataset, row, std::vector<double>(values.begin() + offset, values.begin() + offset + o.width));
    offset += o.width;
  }
  MOETRACE_ASSERT(offset == values.size(), "row longer than its outputs");
}

Matrix2 load_rows(ResultsFile& results, int rows, const std::vector<RowOutput>& outputs) {
  int width = 0;
  for (const RowOutput& o : outputs) width += o.width;
  Matrix2 m(rows, width, NAN);
  int col = 0;
  for (const RowOutput& o : outputs) {
    const auto a = results.read_matrix(o.dataset);
    for (int i = 0; i < rows; ++i)
      for (int j = 0; j < o.width; ++j) m.at(i, col + j) = a.data[static_cast<std::size_t>(i) * o.width + j];
    col += o.width;
  }
  return m;
}

LocalRowExecutor::LocalRowExecutor(ResultsFile& results, double progress_every_s, std::function<void()> between_rows)
    : results_(results), progress_every_s_(progress_every_s), between_rows_(std::move(between_rows)) {}

Matrix2 LocalRowExecutor::run(const std::string& label, int rows, const std::vector<RowOutput>& outputs,
                              const RowFunction& compute) {
  const std::vector<int> todo = rows_to_do(results_, rows, outputs);
  ProgressMeter progress(label, "cases", todo.size(), progress_every_s_);
  std::size_t done = 0;
  for (int i : todo) {
    store_row(results_, i, outputs, compute(i));
    between_rows_();
    progress.update(++done);
  }
  progress.finish();
  results_.flush();
  return load_rows(results_, rows, outputs);
}

std::vector<std::vector<double>> LocalRowExecutor::map(const std::string&, const std::vector<int>& rows,
                                                       const RowFunction& compute) {
  std::vector<std::vector<double>> out;
  for (int i : rows) {
    out.push_back(compute(i));
    between_rows_();
  }
  return out;
}

}  // namespace moetrace
