#pragma once
// How the pipeline's per-case work is executed and stored. The pipeline says *what* to compute
// for each row (case); an executor decides *where*: in this process (LocalRowExecutor), or spread
// over MPI ranks by a coordinator (the distributed executor). Either way every rank gets every
// row back, so the selections made from them are identical everywhere.
#include <functional>
#include <string>
#include <vector>

#include "protocols/selection.h"
#include "results/results_file.h"

namespace moetrace {

// One stored output of a row task: dataset name and values per row.
struct RowOutput {
  std::string dataset;
  int width = 1;
};

using RowFunction = std::function<std::vector<double>(int row)>;

class RowExecutor {
 public:
  virtual ~RowExecutor() = default;
  // Rows not yet marked done in the results file are computed with `compute` (which returns the
  // outputs concatenated) and stored; returns all rows of all outputs, concatenated per row.
  virtual Matrix2 run(const std::string& label, int rows, const std::vector<RowOutput>& outputs,
                      const RowFunction& compute) = 0;
  // Distributed executors hand rows of run() out costliest first (e.g. longest prompt); optional.
  virtual void set_row_cost(std::function<double(int)>) {}
  // Computes rows without storing them (the case scan, robustness reruns); results in row order.
  // The caller reports progress.
  virtual std::vector<std::vector<double>> map(const std::string& label, const std::vector<int>& rows,
                                               const RowFunction& compute) = 0;
};

// Runs everything in this process, logging progress and checkpointing the results file.
class LocalRowExecutor final : public RowExecutor {
 public:
  // `between_rows` is called after every computed row (checkpointing, stop signals).
  LocalRowExecutor(ResultsFile& results, double progress_every_s, std::function<void()> between_rows);
  Matrix2 run(const std::string& label, int rows, const std::vector<RowOutput>& outputs,
              const RowFunction& compute) override;
  std::vector<std::vector<double>> map(const std::string& label, const std::vector<int>& rows,
                                       const RowFunction& compute) override;

 private:
  ResultsFile& results_;
  double progress_every_s_;
  std::function<void()> between_rows_;
};

// Creates the outputs' datasets when missing; returns the rows still to do.
std::vector<int> rows_to_do(ResultsFile& results, int rows, const std::vector<RowOutput>& outputs);
// Writes one computed row into its outputs (values first, done flags last).
void store_row(ResultsFile& results, int row, const std::vector<RowOutput>& outputs, const std::vector<double>& values);
// Reads every output back, concatenated per row.
Matrix2 load_rows(ResultsFile& results, int rows, const std::vector<RowOutput>& outputs);

}  // namespace moetrace
