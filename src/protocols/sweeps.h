#pragma once
// The per-case measurements of the protocol's stages: rescues of restored sites, single experts,
// controls and coalitions. Each returns plain numbers; selection and statistics happen elsewhere.
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

class Sweeps {
 public:
  Sweeps(const RunConfig& config, CaseTracer& tracer);

  // Positions of the configured layer-sweep site (final, last subject or all subject tokens).
  std::vector<int> sweep_positions(const Prompt& p) const;
  // Rescue of the configured site and window at every layer: [L].
  std::vector<double> layer_sweep(const TracedCase& tc) const;
  // Every clean-active expert at `layer`, final position.
  ExpertRow expert_layer(const TracedCase& tc, int layer) const;
  // Equal-norm control: rescues of `expert` and `control` at `layer`, final position, with both
  // patches scaled to the smaller of their norms (so a larger update cannot win by size alone).
  // Needs tc prepared with RecordLevel::Full noised runs. Returns {selected, control}.
  std::pair<double, double> equal_norm(const TracedCase& tc, int layer, int expert, int control) const;
  // Coalition rescue at `layer`, final position: "clean_topk" or "union".
  double coalition(const TracedCase& tc, int layer, const std::string& set) const;
  // ROME-style heat maps [L, T] for hidden / attn / moe (window 1, each position).
  std::vector<double> heatmap(const TracedCase& tc, Site site) const;

  // Mean over samples of D(run_s) - D(noised_s) for conditions evaluated on every sample.
  std::vector<double> rescues(const TracedCase& tc, const std::vector<Condition>& conditions) const;

 private:
  const RunConfig& config_;
  CaseTracer& tracer_;
};

}  // namespace moetrace
