#pragma once
// `moetrace run`: the whole protocol of docs/PROTOCOL.md, from CounterFact records to validated
// layers and experts in one results file. Stages, in order (one member function each):
//   1. cases (scan, filter, split)      4. controls and coalitions at (l*, e*)
//   2. layer sweep -> l* on discovery   5. held-out statistics (validation; discovery for reference)
//   3. expert tracing -> e*             6. optional heat maps and robustness grids
// Each stage hands chunks of cases to the executor; a chunk's cases are prepared together (kept
// between stages within [run] prepared_cache_mib) and all of its conditions evaluated in batched
// engine calls. Every per-case row is handed to the results file as soon as its chunk is computed,
// with a done flag; --resume recomputes only rows that are not done (every number is a
// deterministic function of config and case), the case scan and robustness reruns included.
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "protocols/case_scan.h"
#include "protocols/prepared_cases.h"
#include "protocols/run_config.h"
#include "protocols/sweeps.h"
#include "results/results_file.h"

namespace moetrace {

struct PipelineSummary {
  int usable_cases = 0;
  int selected_layer = -1;
  int selected_expert = -1;
  PreparedStats preparations;
};

class TracingPipeline {
 public:
  // `results` is the real file on the rank that writes it and a scratch copy elsewhere; `executor`
  // decides where chunks of cases are computed.
  TracingPipeline(const RunConfig& config, CaseTracer& tracer, const CaseBuilder& builder, double sigma_base,
                  ResultsFile& results, RowExecutor& executor);
  PipelineSummary run(const std::vector<CounterFactRecord>& records);

 private:
  struct ExpertMatrices {
    Matrix2 rescue, active, weight;
  };

  void scan_cases(const std::vector<CounterFactRecord>& records);
  void layer_sweep();
  void trace_expert_layers(const std::vector<int>& layers);
  void select_expert_stage();
  void controls_and_coalitions();
  void statistics();
  void heatmaps();
  void robustness(const std::vector<CounterFactRecord>& records);
  // Layer-sweep rerun of a robustness variant (its own scan); returns its selected layer and summary.
  std::pair<int, SummaryRecord> rerun_layer_stage(const std::vector<CounterFactRecord>& records,
                                                  const std::string& group, const std::string& name,
                                                  double multiplier, FilterKind filter);

  // Prepared runs of the listed cases (indices into `cases`); Full: noised runs recorded in full at
  // the layers >= full_from (PreparedCases::get).
  std::vector<std::shared_ptr<const TracedCase>> prepare(const std::vector<UsableCase>& cases,
                                                         const std::vector<int>& rows, double multiplier,
                                                         RecordLevel level = RecordLevel::Base, int full_from = 0);
  void use_case_costs(const std::vector<UsableCase>& cases);

  const RunConfig& config_;
  CaseTracer& tracer_;
  PreparedCases prepared_;
  CaseScanner scanner_;
  Sweeps sweeps_;
  ResultsFile& results_;
  RowExecutor& executor_;
  int L_ = 0, E_ = 0;

  // What the stages hand on to later ones (in memory; the results file is only written).
  std::vector<UsableCase> cases_;
  std::vector<int> discovery_, validation_;
  Matrix2 layer_rescue_;
  std::map<int, ExpertMatrices> experts_;  // by layer
  Matrix2 controls_;                       // [N, 5 + coalitions]
  PipelineSummary summary_;
};

// Chunk pointers of prepared cases.
Chunk chunk_of(const std::vector<std::shared_ptr<const TracedCase>>& prepared);

}  // namespace moetrace
