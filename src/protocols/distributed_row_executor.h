#pragma once
// Chunks of rows spread over the expert-parallel groups of an MPI job
// (`mpirun -np N moetrace run --ep R`).
//
// World rank 0 coordinates: it hands chunks out dynamically to the group leaders, costliest first
// (chunks are formed from rows sorted by token rows), keeping every group one chunk ahead so that
// none waits for the next, computes chunks with its own group in between, and is the only rank that
// writes the results file. A leader broadcasts each chunk it receives to its group, whose ranks
// compute it together (the engine's expert parallelism). The whole table of a stage goes back to
// every rank at its end, so the selections made from it are identical everywhere; ranks other than
// the coordinator keep no copy of the results file. With set_shared_columns(k), the other ranks get
// the first k columns only (localisation's asked table: the outcomes, not the routing statistics,
// which can be gigabytes), and the pipeline selects on the coordinator and shares the result
// (on_writer). Rows are keyed by case and stored with done
// flags, so the assignment of chunks to groups never changes a result and a resumed run recomputes
// only what is missing.
//
// Stopping: when the coordinator sees SIGTERM/SIGUSR1, it hands out no more chunks, collects the
// chunks in flight, saves the file, and every rank throws StopRequested (exit code 75).
#include <functional>
#include <memory>

#include "comm/communicator.h"
#include "protocols/row_executor.h"

namespace moetrace {

class DistributedRowExecutor final : public RowExecutor {
 public:
  // world: every rank; group: this rank's EP group (rank 0 = leader); leaders: the communicator of
  // the group leaders (world rank 0 is its rank 0), unused on non-leaders. `results` is the real
  // file on world rank 0 and unused elsewhere. `checkpoint` runs on the coordinator after each
  // stored chunk.
  DistributedRowExecutor(Communicator& world, Communicator& group, Communicator& leaders, ResultsFile& results,
                         int chunk_tokens, double progress_every_s, std::function<void()> checkpoint);
  Matrix2 run_rows(const std::string& label, int rows, const std::vector<int>& subset, const RowCost& cost,
                   const std::vector<RowOutput>& outputs, const ChunkFunction& compute) override;
  bool writer() const override { return coordinator(); }
  std::vector<char> on_writer(const std::function<std::vector<char>()>& compute) override;

 private:
  // Computes every chunk somewhere; on the coordinator, `deliver` receives every (row, values).
  // Returns true on every rank when the coordinator stopped on a signal.
  bool distribute(const std::string& label, const std::vector<std::vector<int>>& chunks, const ChunkFunction& compute,
                  const std::function<void(int, const std::vector<double>&)>& deliver);
  bool coordinator() const { return world_.rank() == 0; }
  // A rank other than the coordinator: computes the chunks its group leader receives until an empty one.
  void follow(const ChunkFunction& compute);

  Communicator& world_;
  Communicator& group_;
  Communicator& leaders_;
  ResultsFile& results_;
  double progress_every_s_;
  std::function<void()> checkpoint_;
};

}  // namespace moetrace
