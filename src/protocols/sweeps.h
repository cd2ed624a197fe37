#pragma once
// The per-case measurements of the protocol's stages: rescues of restored sites, single experts,
// controls and coalitions. Each takes a chunk of prepared cases and evaluates all of their
// conditions in one CaseTracer::evaluate (which splits only by max_batch_rows), returning plain
// numbers per case; selection and statistics happen elsewhere.
// rescue = D(patched) - D(noised), averaged over the noise samples of the case.
#include <cstdint>
#include <vector>

#include "engine/case_tracer.h"
#include "protocols/run_config.h"

namespace moetrace {

// Per-expert results of one case at one layer, at the final position.
struct ExpertRow {
  std::vector<double> rescue;        // [E], NaN where not computed (experts not clean-active)
  std::vector<double> clean_active;  // [E], 1 where routed in the clean run
  std::vector<double> clean_weight;  // [E], clean routing weight (0 where not routed)
};

// The equal-norm control of one case: rescues of `expert` and `control` at `layer`.
struct EqualNormRequest {
  const TracedCase* traced = nullptr;
  int expert = -1, control = -1;
};

using Chunk = std::vector<const TracedCase*>;

class Sweeps {
 public:
  Sweeps(const RunConfig& config, CaseTracer& tracer);

  // Positions of the configured layer-sweep site (final, last subject or all subject tokens).
  static std::vector<int> sweep_positions(const RunConfig& config, const Prompt& p);
  // Rescue of the configured site and window at every layer: [case][L].
  std::vector<std::vector<double>> layer_sweep(const Chunk& cases) const;
  // Every clean-active expert at each of `layers`, final position: [case][layer index].
  std::vector<std::vector<ExpertRow>> expert_layers(const Chunk& cases, const std::vector<int>& layers) const;
  // Equal-norm controls at `layer`, final position, with both patches scaled to the smaller of their
  // norms (so a larger update cannot win by size alone). Needs RecordLevel::Full noised runs.
  // Returns {selected, control} per request.
  std::vector<std::pair<double, double>> equal_norm(const std::vector<EqualNormRequest>& requests, int layer) const;
  // Coalition rescues at `layer`, final position: [case][set].
  std::vector<std::vector<double>> coalitions(const Chunk& cases, int layer, const std::vector<CoalitionSet>& sets) const;
  // ROME-style heat maps for hidden / attn / moe (window 1, each position): [case][site][L * T].
  std::vector<std::vector<std::vector<double>>> heatmaps(const Chunk& cases) const;

  // The conditions of each measurement for one case (prompt), as the sweeps above evaluate them on
  // every noise sample; the planner (moetrace plan) counts their engine work from the same lists.
  static std::vector<Condition> layer_sweep_conditions(const RunConfig& config, const Prompt& p, int layers);
  static Condition expert_condition(int layer, int position, int expert);
  static std::vector<Condition> coalition_conditions(int layer, int position, const std::vector<CoalitionSet>& sets);
  static std::vector<Condition> heatmap_conditions(int tokens, int layers);

  // Mean over samples of D(run_s) - D(noised_s), for each case's own conditions evaluated on every
  // sample: [case][condition].
  std::vector<std::vector<double>> rescues(const Chunk& cases, const std::vector<std::vector<Condition>>& conditions) const;

 private:
  const RunConfig& config_;
  CaseTracer& tracer_;
};

}  // namespace moetrace
