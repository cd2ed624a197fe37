#pragma once
// Rows spread over the expert-parallel groups of an MPI job (`mpirun -np N moetrace run --ep R`).
//
// World rank 0 coordinates: it hands rows out dynamically to the group leaders, costliest first,
// keeping every group one row ahead so that none waits for the next, computes rows with its own
// group in between, and is the only rank that writes the results file. A leader broadcasts each row
// it receives to its group, whose ranks compute it together (the engine's expert parallelism).
// Every computed row goes back to every rank, so the selections made from them are identical
// everywhere. Rows are keyed by case and stored with done flags, so the assignment of rows to
// groups never changes a result and a resumed run recomputes only what is missing.
//
// Stopping: when the coordinator sees SIGTERM/SIGUSR1, it hands out no more rows, collects the
// rows in flight, saves the file, and every rank throws StopRequested (exit code 75).
#include <functional>
#include <memory>

#include "comm/communicator.h"
#include "protocols/row_executor.h"

namespace moetrace {

class DistributedRowExecutor final : public RowExecutor {
 public:
  // world: every rank; group: this rank's EP group (rank 0 = leader); leaders: the communicator of
  // the group leaders (world rank 0 is its rank 0), unused on non-leaders. `results` is the real
  // file on world rank 0 and a scratch file elsewhere. `checkpoint` runs on the coordinator after
  // each stored row (periodic snapshots).
  DistributedRowExecutor(Communicator& world, Communicator& group, Communicator& leaders, ResultsFile& results,
                         double progress_every_s, std::function<void()> checkpoint);
  Matrix2 run(const std::string& label, int rows, const std::vector<RowOutput>& outputs,
              const RowFunction& compute) override;
  std::vector<std::vector<double>> map(const std::string& label, const std::vector<int>& rows,
                                       const RowFunction& compute) override;
  // Rows of run() are handed out in decreasing cost (e.g. prompt length); by default in row order.
  void set_row_cost(std::function<double(int)> cost) override { cost_ = std::move(cost); }

 private:
  // Computes compute(i) for every i in `rows` somewhere; on the coordinator, `deliver` receives
  // every (i, values). Returns true on every rank when the coordinator stopped on a signal.
  bool distribute(const std::string& label, const std::vector<int>& rows, const RowFunction& compute,
                  const std::function<void(int, const std::vector<double>&)>& deliver, bool report);
  bool coordinator() const { return world_.rank() == 0; }

  Communicator& world_;
  Communicator& group_;
  Communicator& leaders_;
  ResultsFile& results_;
  double progress_every_s_;
  std::function<void()> checkpoint_;
  std::function<double(int)> cost_;
};

}  // namespace moetrace
