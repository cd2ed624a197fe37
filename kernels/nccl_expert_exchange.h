#pragma once
// Expert parallelism across GPUs with NCCL: the ExpertExchange (backend/expert_exchange.h) of a group of
// ranks, one GPU each, whose CUDA backends hold contiguous blocks of every layer's experts
// (expert_block). Each rank fills only its own experts' slot rows of the engine's slots tensor and
// leaves the others exactly +0.0 (Backend::zeros), so summing the tensor over the ranks with
// ncclAllReduce is exact: every element is one rank's value plus zeros. The engine then sums the k
// slots of each token in slot order, so results do not depend on the number of ranks.
//
// Scope: the communicator is created and owned by the caller (ncclCommInitRank with an id shared
// out of band, e.g. over MPI); the all-reduce runs on the backend's stream, so no host sync is
// added. Token-sharded dispatch (all-to-all of hidden states) is not implemented (docs/cuda.md).
#include <cstdint>

#include "backend/expert_exchange.h"

typedef struct ncclComm* ncclComm_t;

namespace moetrace {

class NcclExpertExchange final : public ExpertExchange {
 public:
  explicit NcclExpertExchange(ncclComm_t comm);
  // Collective: every rank calls it once per MoE layer with its slots tensor (a CUDA tensor).
  void combine(Backend& backend, const RoutingResult& routing, Tensor& slots) override;
  std::uint64_t calls() const { return calls_; }
  std::uint64_t bytes_reduced() const { return bytes_; }

 private:
  ncclComm_t comm_;
  std::uint64_t calls_ = 0, bytes_ = 0;
};

}  // namespace moetrace
