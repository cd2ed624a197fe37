#pragma once
// The engine work of `moetrace run`, counted before it runs (`moetrace plan`): the pipeline's stages
// walked with the cases' token counts only, through the same rules the run uses (scan order and
// rounds, executor chunks, the tracer's engine calls, the prepared-case cache and its budget, every
// measurement's conditions), never loading weights. What the model decides (which records pass the
// filter, l*, e*, ...) comes from a results file of the same config (exact) or from stated
// assumptions (an estimate, an upper bound where the choice is open). docs/distribution.md,
// "Planning a study".
#include <string>
#include <vector>

#include "model/model_config.h"
#include "protocols/case_scan.h"
#include "protocols/counterfact.h"
#include "protocols/run_config.h"
#include "protocols/study_profile.h"
#include "results/run_outcome.h"

namespace moetrace {

struct RunWorkAssumptions {
  double keep_rate = 1.0;  // share of the scanned buildable records that pass the filter
  std::string keep_rate_source = "assumed: every scanned record passes the filter";
};

struct RunWorkPlan {
  std::vector<StageProfile> stages;
  std::uint64_t peak_cache_bytes = 0;   // the prepared-case cache at its fullest (its budget at most)
  std::uint64_t peak_live_bytes = 0;    // cache plus a chunk's prepared cases not kept, at the worst chunk
  int max_call_rows = 0;                // token rows of the largest engine call (at its first layer)
  // The shapes of the results file's row tables (results size):
  std::int64_t scan_records = 0;        // records in scan order (every scan table's rows)
  std::int64_t usable_cases = 0;
  double mean_prompt_tokens = 16;       // of the usable cases (attention's context)
  int traced_layers = 0;                // expert tables
  int heatmap_cases = 0, heatmap_tokens = 0;
  std::vector<std::int64_t> robustness_cases;  // per robustness layer-sweep variant
};

// One StageProfile per stage that does engine work, in the run's order ("case scan", "layer sweep",
// "expert tracing (layer l)", "controls and coalitions", "heat maps", "robustness: ..."), with
// cases, conditions, chunks and every engine call as one rank (one EP group) runs the whole study.
// `outcome` null: every decision assumed (marked estimate, with the assumption in its note).
RunWorkPlan plan_run_work(const RunConfig& config, const ModelConfig& model,
                                        const std::vector<CounterFactRecord>& records, const CaseBuilder& builder,
                                        const RunOutcome* outcome, const RunWorkAssumptions& assumptions);

}  // namespace moetrace
