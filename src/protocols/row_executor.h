#pragma once
// How the pipeline's per-case work is executed and stored. The pipeline says *what* to compute
// for a chunk of rows (cases); an executor decides *where*: in this process (LocalRowExecutor),
// or spread over MPI ranks by a coordinator (the distributed executor). Either way every rank gets
// every row back, so the selections made from them are identical everywhere (or, where the pipeline
// asks for it, the writing rank alone gets the wide columns and shares what it selects from them:
// set_shared_columns, on_writer).
//
// The unit of work is a chunk: rows still to do, costliest first (by token rows, from
// the table's RowCost), grouped while their token rows add up to at most `chunk_tokens` (at least one row
// per chunk). A chunk's cases are prepared and evaluated in a few batched engine calls. Every row
// is a deterministic function of its case, so neither the chunking nor where a chunk runs can
// change a result.
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

// A shard of a table's rows (`moetrace run --shard i/n`): row r belongs to shard r % count. A
// pipeline's case rows are in scan order (shuffled), so every shard gets an even share of long and
// short prompts, and its own rows are still handed out costliest first.
struct CaseShard {
  int index = 0, count = 1;
  bool has(int row) const { return row % count == index; }
};

// The values of every row of a chunk (outputs concatenated), in the order of `rows`.
using ChunkFunction = std::function<std::vector<std::vector<double>>(const std::vector<int>& rows)>;
// Token rows of a row of a table (chunk sizing; distributed executors also hand the costliest out
// first). An empty one counts every row as one token row.
using RowCost = std::function<double(int row)>;

// Rows in chunks: costliest first (ties in row order), each chunk at most `chunk_tokens` token rows (at
// least one row per chunk). The executors' rule, and the planner's (moetrace plan).
std::vector<std::vector<int>> make_chunks(std::vector<int> rows, const RowCost& cost, int chunk_tokens);

class RowExecutor {
 public:
  virtual ~RowExecutor() = default;
  // Rows of `subset` (of a table of `rows` rows) not yet marked done in the results file are
  // computed in chunks and handed to the results file; returns the whole table (rows done before
  // included, rows outside `subset` that were never computed NaN), identical on every rank.
  virtual Matrix2 run_rows(const std::string& label, int rows, const std::vector<int>& subset, const RowCost& cost,
                           const std::vector<RowOutput>& outputs, const ChunkFunction& compute) = 0;
  // run_rows over every row, or every row of the shard when one is set.
  Matrix2 run(const std::string& label, int rows, const RowCost& cost, const std::vector<RowOutput>& outputs,
              const ChunkFunction& compute);
  void set_shard(CaseShard shard) { shard_ = shard; }
  // Whether every row of the last table (rows outside its subset included) is done, on every rank.
  bool last_complete() const { return last_complete_; }
  // What a row is, for progress lines ("cases" for tracing, "pairs" for localisation).
  void set_row_unit(std::string unit) { unit_ = std::move(unit); }
  // For the next tables: ranks other than the writing one get only their first `columns` columns
  // back (0, the default: every column). A pipeline that sets it computes whatever needs the other
  // columns with on_writer.
  void set_shared_columns(int columns) { shared_columns_ = columns; }
  // Whether this rank gets every column of every table: the writing rank (every rank of a local
  // executor).
  virtual bool writer() const { return true; }
  // Runs `compute` on the writing rank and returns its bytes on every rank. An InputError there is
  // thrown on every rank (as a CollectiveError on several).
  virtual std::vector<char> on_writer(const std::function<std::vector<char>()>& compute) { return compute(); }

 protected:
  explicit RowExecutor(int chunk_tokens) : chunk_tokens_(chunk_tokens) {}
  std::vector<std::vector<int>> make_chunks(std::vector<int> rows, const RowCost& cost) const {
    return moetrace::make_chunks(std::move(rows), cost, chunk_tokens_);
  }

  int chunk_tokens_;
  std::string unit_ = "cases";
  CaseShard shard_;
  int shared_columns_ = 0;
  bool last_complete_ = true;
};

// Runs everything in this process, logging progress and checkpointing the results file.
class LocalRowExecutor final : public RowExecutor {
 public:
  // `between_chunks` is called after every computed chunk (checkpointing, stop signals).
  LocalRowExecutor(ResultsFile& results, int chunk_tokens, double progress_every_s, std::function<void()> between_chunks);
  Matrix2 run_rows(const std::string& label, int rows, const std::vector<int>& subset, const RowCost& cost,
                   const std::vector<RowOutput>& outputs, const ChunkFunction& compute) override;

 private:
  ResultsFile& results_;
  double progress_every_s_;
  std::function<void()> between_chunks_;
};

// The rows of a table already in the results file, read once when a stage starts (a resumed run).
struct StoredRows {
  Matrix2 values;          // NaN where not done
  std::vector<bool> done;  // per row: every output done
};
// Creates the outputs' datasets when missing and reads the rows already done.
StoredRows open_rows(ResultsFile& results, int rows, const std::vector<RowOutput>& outputs);
// Writes one computed row into its outputs (values first, done flags last) and into `table`.
void store_row(ResultsFile& results, int row, const std::vector<RowOutput>& outputs, const std::vector<double>& values,
               Matrix2& table);

}  // namespace moetrace
