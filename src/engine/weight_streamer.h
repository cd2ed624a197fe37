#pragma once
// Weights mapped from a store larger than the memory this rank may use (docs/weights.md, "Larger than
// memory"). An engine call walks every layer once for a whole chunk, so the weights cycle through in
// layer order, call after call; the page cache's LRU would evict every layer just before its next use.
// Instead the first layers that fit a budget (with the embeddings, the read-out and the norms) stay
// resident for the whole run, and the rest stream: the next streamed layer's pages are read in by a
// background thread while the current layer computes, and a streamed layer's pages are released as
// the engine leaves it, so that they never push the resident layers out.
#include <cstdint>
#include <memory>

#include "engine/device_model.h"

namespace moetrace {

// The rank's tensors of `store` (every replicated tensor, the experts of `local`): populated at once
// when they fit `budget_bytes`; otherwise the resident part is populated and the returned observer
// (for DeviceModel::layer_observer) streams the rest. Null when nothing streams.
std::shared_ptr<LayerObserver> plan_weight_residency(const WeightStoreFile& store, const ModelWeights& weights,
                                                     ExpertRange local, std::uint64_t budget_bytes);

}  // namespace moetrace
