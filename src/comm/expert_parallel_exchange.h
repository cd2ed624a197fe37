#pragma once
// Expert parallelism on host buffers: the ExpertExchange (backend/expert_exchange.h) of an EP group.
//
// An EP group of R ranks shards the experts of every layer in contiguous blocks
// (expert_block(E, rank, R), uneven counts allowed); attention, norms, embeddings and the router are
// replicated, so every rank routes every token identically. Each rank runs only its own experts and
// fills only their rows of the engine's slots tensor [N*k, H] (row i*k + j: the weighted update of
// token i's j-th chosen expert); the other rows stay exactly +0.0 (Backend::zeros).
//
// combine() is the exchange: every rank sends the slot rows it computed to every other rank
// (an all-gather, written as one alltoallv), so that every rank ends with the full slots tensor.
// Each row is computed by exactly one rank and is copied, never added; the engine then sums the k
// slots of each token in slot order (Backend::sum_slots). The result is therefore bit-identical for
// any group size R, including R = 1 without an exchange (docs/distribution.md).
//
// Which rows a rank owns is read off the tensor: a row with any non-zero bit was written by this rank
// (no other rank writes it). A row the owner computed as exactly +0.0 everywhere is claimed by nobody
// and is +0.0 on every rank anyway, which is the owner's value bit for bit. Two ranks claiming one row
// breaks the contract above and is an internal error (detected identically on every rank).
//
// Next steps (not done here):
//  - token-sharded dispatch: today every rank holds every token (attention is replicated), so the
//    "dispatch" half of the all-to-all is implicit. Sharding tokens across the group for memory
//    scaling means sending each token's hidden state to the ranks owning its experts (alltoallv with
//    per-destination counts from the routing) and returning only the owner's rows (the combine below,
//    restricted to the token's home rank); combine() would then take the layer's routing.
//  - NCCL on device buffers: an exchange beside the CUDA backend in kernels/ using ncclSend/ncclRecv
//    (or ncclAllGather) on device memory instead of host staging through Backend::download /
//    Backend::upload (none today: CUDA runs use this exchange).
#include <cstdint>

#include "comm/communicator.h"
#include "backend/expert_exchange.h"

namespace moetrace {

class ExpertParallelExchange final : public ExpertExchange {
 public:
  // `group` must outlive the exchange; its ranks are the EP group (rank r holds
  // expert_block(E, r, group.size())).
  explicit ExpertParallelExchange(Communicator& group);

  // Collective over the group: every rank calls it once per MoE layer with its slots tensor
  // (ownership is read off the rows).
  void combine(Backend& backend, Tensor& slots) override;

  // Totals since construction (for logs, benchmarks and tests).
  // calls(): combine() calls, one per MoE layer step of the engine (a batch of tokens through one
  // layer), counted on every group size, R = 1 included.
  std::uint64_t calls() const { return calls_; }
  std::uint64_t rows_sent() const { return rows_sent_; }          // own rows, counted once
  std::uint64_t rows_received() const { return rows_received_; }  // other ranks' rows
  // Bytes this rank sent to / received from the other ranks of the group, counted as point-to-point
  // traffic (a row sent to R - 1 ranks counts R - 1 times): the slot rows (float32, H per row) plus
  // the ownership headers of the allgather. Logical volume: what MPI's collective algorithms move on
  // the wire may differ (relays), but not by the payload a rank must get. Zero when R = 1.
  std::uint64_t bytes_sent() const { return bytes_sent_; }
  std::uint64_t bytes_received() const { return bytes_received_; }
  // The slot-row part of the above (bytes_sent() - payload_bytes_sent() is headers).
  std::uint64_t payload_bytes_sent() const { return payload_bytes_sent_; }
  std::uint64_t payload_bytes_received() const { return payload_bytes_received_; }

 private:
  Communicator& group_;
  std::uint64_t calls_ = 0, rows_sent_ = 0, rows_received_ = 0;
  std::uint64_t bytes_sent_ = 0, bytes_received_ = 0, payload_bytes_sent_ = 0, payload_bytes_received_ = 0;
};

}  // namespace moetrace
