#pragma once
// The seam between the engine and expert parallelism. Under expert parallelism each rank of a group
// holds a block of every layer's experts and runs only those; the exchange combines what the ranks
// computed so that every rank ends a MoE layer with the full slots tensor. It depends on the backend
// interface only: the engine calls it once per MoE layer with the slots tensor [rows*k, H] in which
// this rank filled the rows of its own experts and left every other row exactly +0.0.
//
// Implementation: ExpertParallelExchange (src/comm: MPI, host staging, all-gather of owned rows), for
// every backend, the CUDA one included (its slots go through Backend::download / upload). A
// token-sharded dispatch, or an exchange on device memory (NCCL), would be another implementation
// (a dispatch would also need the layer's routing: which rows go to which rank); the engine would
// not change.
#include "backend/backend.h"

namespace moetrace {

class ExpertExchange {
 public:
  virtual ~ExpertExchange() = default;
  // Collective over the group: every rank calls it once per MoE layer, in the same order.
  virtual void combine(Backend& backend, Tensor& slots) = 0;
};

}  // namespace moetrace
