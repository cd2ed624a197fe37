#include "engine/run_record.h"

#include "util/error.h"

namespace moetrace {
namespace {

// The row of expert e's update at (layer, pos) in r's record; a null tensor where e is not routed.
RowRef expert_update_row(const RunRecord& r, int layer, int pos, int e) {
  MOETRACE_ASSERT(layer >= 0 && layer < static_cast<int>(r.layers.size()) && r.layers[layer].updates,
                  "expert update distances need runs recorded in full at their layer");
  const LayerRecord& L = r.layers[layer];
  const int slot = L.routing.slot_of(pos, e);
  if (slot < 0) return {};
  return {L.updates.get(), pos * L.routing.k + slot};
}

}  // namespace

std::vector<double> expert_update_distances(Backend& backend, const std::vector<ExpertUpdateDistance>& requests) {
  std::vector<RowPair> pairs;
  pairs.reserve(requests.size());
  for (const ExpertUpdateDistance& q : requests)
    pairs.push_back({expert_update_row(*q.a, q.layer, q.position, q.expert),
                     expert_update_row(*q.b, q.layer, q.position, q.expert)});
  return backend.row_distances(pairs);
}

}  // namespace moetrace
