#pragma once
// `moetrace run`: the whole protocol of docs/PROTOCOL.md, from CounterFact records to validated
// layers and experts in one results file. Stages, in order:
//   1. cases (scan, filter, split)      4. controls and coalitions at (l*, e*)
//   2. layer sweep -> l* on discovery   5. held-out statistics (validation; discovery for reference)
//   3. expert tracing -> e*             6. optional heat maps and robustness grids
// Every per-case row is written as soon as it is computed, with a done flag; --resume recomputes
// only rows that are not done (every number is a deterministic function of config and case).
#include <string>

#include "protocols/case_scan.h"
#include "protocols/run_config.h"
#include "results/results_file.h"

namespace moetrace {

struct PipelineSummary {
  int usable_cases = 0;
  int selected_layer = -1;
  int selected_expert = -1;
};

class TracingPipeline {
 public:
  // `results` is the real file on the rank that writes it and a scratch copy elsewhere; `executor`
  // decides where per-case rows are computed.
  TracingPipeline(const RunConfig& config, CaseTracer& tracer, const CaseBuilder& builder, double sigma_base,
                  ResultsFile& results, RowExecutor& executor);
  PipelineSummary run(const std::vector<CounterFactRecord>& records);

 private:
  const RunConfig& config_;
  CaseTracer& tracer_;
  CaseScanner scanner_;
  ResultsFile& results_;
  RowExecutor& executor_;
};

}  // namespace moetrace
