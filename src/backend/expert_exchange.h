#pragma once
// The seam between the engine and expert parallelism. Under expert parallelism each rank of a group
// holds a block of every layer's experts and runs only those; the exchange combines what the ranks
// computed so that every rank ends a MoE layer with the full slots tensor. It depends on the backend
// interface only: the engine calls it once per MoE layer with the layer's routing (identical on
// every rank, since the router is replicated) and the slots tensor [rows*k, H] in which this rank
// filled the rows of its own experts and left every other row exactly +0.0.
//
// Implementations: ExpertParallelExchange (src/comm: MPI, host staging, all-gather of owned rows)
// and NcclExpertExchange (kernels/: ncclAllReduce on device memory). A token-sharded dispatch would
// use `routing` (per-expert slot lists: which rows go to which rank) to send each token only to the
// ranks that hold its experts; the engine would not change.
#include "backend/backend.h"

namespace moetrace {

class ExpertExchange {
 public:
  virtual ~ExpertExchange() = default;
  // Collective over the group: every rank calls it once per MoE layer, in the same order.
  virtual void combine(Backend& backend, const RoutingResult& routing, Tensor& slots) = 0;
};

}  // namespace moetrace
