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
#include "results/tracing_results.h"

namespace moetrace {

struct PipelineSummary {
  int usable_cases = 0;
  int selected_layer = -1;
  int selected_expert = -1;
  PreparedStats preparations;
  std::string stopped_before;  // a shard run: the first step that needs other shards' rows; else empty
};

class TracingPipeline {
 public:
  // `results` is the real file on the rank that writes it and a scratch copy elsewhere; `executor`
  // decides where chunks of cases are computed.
  TracingPipeline(const RunConfig& config, CaseTracer& tracer, const CaseBuilder& builder, double sigma_base,
                  ResultsFile& results, RowExecutor& executor);
  PipelineSummary run(const std::vector<CounterFactRecord>& records);
  // A shard run (`moetrace run --shard i/n`): the executor computes the per-case rows of the shard's
  // cases only (RowExecutor::set_shard), and run() returns, with stopped_before set, before the first
  // step that needs every case's rows while some are missing: the layer selection, then the expert
  // selection, and always before the statistics (summaries, heat maps and robustness grids are the
  // unsharded run's). The case scan is computed in full by every shard: it is sequential (which
  // records are scanned next depends on the usable cases found so far). Other shards' rows come
  // from `moetrace merge`; a shard run resumed on a merged file continues past the steps it allows.
  void set_shard(CaseShard shard);

 private:
  struct ExpertMatrices {
    Matrix2 rescue, active, weight;
  };
  struct ExpertValues {
    std::vector<double> rescue, specificity;
    int clean_active = 0;
  };

  PipelineSummary run_stages(const std::vector<CounterFactRecord>& records);
  // A shard run's stop before `step` when the last table is not complete (or in any case).
  void stop_shard_unless_complete(const char* step) const;
  void stop_shard(const char* step) const;
  void scan_cases(const std::vector<CounterFactRecord>& records);
  void layer_sweep();
  LayerSweepData choose_layer_on_discovery() const;
  void trace_expert_layers(const std::vector<int>& layers);
  void select_expert_stage();
  ExpertValues expert_values(const ExpertMatrices& M, int expert, const std::vector<int>& rows) const;
  void per_layer_expert_summary(int layer, const ExpertMatrices& M);
  void controls_and_coalitions();
  std::vector<std::vector<double>> control_rows(const std::vector<int>& rows);
  void statistics();
  SplitStatistics split_statistics(Split split, const std::vector<int>& rows) const;
  void heatmaps();
  void robustness(const std::vector<CounterFactRecord>& records);
  // Layer-sweep rerun of a robustness variant (its own scan): its selected layer and summary.
  RobustnessRow rerun_layer_stage(const std::vector<CounterFactRecord>& records, RobustnessGroup group,
                                  const std::string& name, double multiplier, FilterKind filter);
  void robust_split(std::uint64_t seed);

  // Prepared runs of the listed cases (indices into `cases`); Full: noised runs recorded in full at
  // the layers >= full_from (PreparedCases::get).
  std::vector<std::shared_ptr<const TracedCase>> prepare(const std::vector<UsableCase>& cases,
                                                         const std::vector<int>& rows, double multiplier,
                                                         RecordLevel level = RecordLevel::Base, int full_from = 0);

  const RunConfig& config_;
  CaseTracer& tracer_;
  PreparedCases prepared_;
  CaseScanner scanner_;
  Sweeps sweeps_;
  TracingResults out_;
  RowExecutor& executor_;
  bool sharded_ = false;
  const CaseBuilder& builder_;  // decodes token texts for heat-map labels
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
