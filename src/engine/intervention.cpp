#include "engine/intervention.h"

#include <algorithm>
#include <limits>

#include "util/error.h"

namespace moetrace {

int Condition::first_layer() const {
  int l = std::numeric_limits<int>::max();
  for (const Patch& p : patches) l = std::min(l, p.layer);
  return patches.empty() ? 0 : l;
}

int Condition::first_position() const {
  int t = std::numeric_limits<int>::max();
  for (const Patch& p : patches)
    for (int pos : p.positions) t = std::min(t, pos);
  return t == std::numeric_limits<int>::max() ? 0 : t;
}

Condition restore_site(Site site, int layer, std::vector<int> positions) {
  Condition c;
  c.patches.push_back(Patch{site, layer, std::move(positions), ExpertSet::Listed, {}});
  return c;
}

Condition restore_window(Site site, int center, int window, int num_layers, std::vector<int> positions) {
  MOETRACE_ASSERT(window >= 1, "window must be at least 1");
  // Layers center - floor(w/2) .. center + ceil(w/2) - 1, clipped to the model (PROTOCOL.md).
  const int lo = std::max(0, center - window / 2);
  const int hi = std::min(num_layers - 1, center + (window + 1) / 2 - 1);
  Condition c;
  for (int l = lo; l <= hi; ++l) c.patches.push_back(Patch{site, l, positions, ExpertSet::Listed, {}});
  return c;
}

Condition restore_experts(int layer, std::vector<int> positions, ExpertSet set, std::vector<int> experts) {
  Condition c;
  c.patches.push_back(Patch{Site::Experts, layer, std::move(positions), set, std::move(experts)});
  return c;
}

}  // namespace moetrace
