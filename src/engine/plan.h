#pragma once
// A batch of streams compiled once, before the layer loop, into flat per-layer tables: where each
// stream's rows sit, the absolute position of every row, the deactivation mask, and every patch as a
// few row transfers (one copy_rows / add_rows per source tensor and site) instead of per-stream and
// per-patch work inside the loop.
//
// Order: the transfers of one site are split into *phases*. Phase p holds every stream's p-th
// patch of that site at that layer (for the MoE site, an expert patch contributes its clean adds to
// phase 2p and its own-update subtraction to phase 2p+1; a MoE restore is a copy in phase 2p).
// Transfers inside a phase touch rows of different streams only, so they can be merged and applied
// in any order, and applying phases in order reproduces the per-patch order of the original engine
// row for row (bit-identical results, including overlapping patches of one stream).
#include <vector>

#include "engine/forward.h"

namespace moetrace {

// Where one stream's rows sit in the batch.
struct StreamRows {
  int stream = 0;
  int offset = 0;  // first row in the batch
  int count = 0;   // = T - start_pos
};

// dst[dst_rows[i]] = src[src_rows[i]] (copy), or dst[dst_rows[i]] += scale * src[src_rows[i]] (add).
struct RowTransfer {
  const Tensor* src = nullptr;
  bool add = false;
  float scale = 1.0f;
  std::vector<int> src_rows, dst_rows;
};

// Subtract scale * (own update of e) from rows' MoE output for each e of the row's expert set that
// the row's own routing chose (known only once the layer is routed). Rows' sets are CSR; a row with
// every_own[i] subtracts all of its own experts (ExpertSet::Union).
struct OwnUpdateSubtraction {
  float scale = 1.0f;
  std::vector<int> rows;
  std::vector<char> every_own;    // [rows]
  std::vector<int> set_offsets;   // [rows + 1]
  std::vector<int> set_experts;   // sorted, unique per row
};

struct PatchPhase {
  std::vector<RowTransfer> transfers;
  std::vector<OwnUpdateSubtraction> own;  // MoE site only
};

struct LayerPlan {
  std::vector<int> joining;         // streams that start at this layer, in stream order
  std::vector<StreamRows> batch;    // every stream in the batch at this layer (joined included)
  std::vector<int> positions;       // absolute position of every batch row
  int rows = 0;
  std::vector<PatchPhase> attn;     // after the attention output projection
  std::vector<PatchPhase> moe;      // after the MoE sum (restores and expert patches)
  std::vector<PatchPhase> hidden;   // after the residual add at the end of the layer
  std::vector<int> mask_offsets;    // deactivation, CSR over rows (RouteRequest); empty: none
  std::vector<int> mask_experts;
  bool full_records = false;        // some stream keeps a Full record (needs routing on the host)
  bool expert_patches = false;      // some OwnUpdateSubtraction (needs routing on the host)
};

struct BatchPlan {
  std::vector<LayerPlan> layers;
  // Streams in batch order after the last layer (the read-out order).
  const std::vector<StreamRows>& final_batch() const { return layers.back().batch; }
};

// Validates every stream against the model and compiles the plan. Clean records referenced by
// patches must outlive the plan (it points at their tensors).
BatchPlan compile_plan(const std::vector<StreamSpec>& streams, const ModelConfig& config);

}  // namespace moetrace
