#pragma once
// What the model decided in a `moetrace run`, read back from its results file: the engine work of a
// run depends on it (which records pass the filter, the selected layer and expert, which cases need
// equal-norm controls, the layers the robustness splits trace). `moetrace plan --from` counts a
// study's work exactly from these (docs/distribution.md, "Planning a study").
#include <cstdint>
#include <map>
#include <string>
#include <utility>
#include <vector>

namespace moetrace {

struct RunOutcome {
  std::string config_text;  // the config the run stored (/provenance)
  // Per noise multiplier: each scan position's (clean, mean noised) contrast, NaN where not scanned.
  std::map<double, std::vector<std::pair<double, double>>> scans;
  int selected_layer = -1;           // -1: the layer sweep is not finished
  int selected_expert = -1;          // -1: none selected (or not yet)
  bool has_expert_selection = false;
  std::vector<int> expert_active;    // per usable case: the selected expert clean-active at l* (0/1)
  std::vector<int> gate_matched;     // per usable case: its gate-matched control expert, -1: none
  std::map<std::int64_t, int> split_layers;  // robustness split seed -> the layer it chose
};

// Reads the decisions of the run stored in `path` for the noise multipliers listed (those whose
// scan table exists). A damaged or foreign file is an InputError naming it.
RunOutcome read_run_outcome(const std::string& path, const std::vector<double>& multipliers);

}  // namespace moetrace
