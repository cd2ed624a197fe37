#pragma once
// The operations the MoE forward needs, on one device. The engine is written once against this
// interface; the CPU backend (Eigen, float32) is the reference and the CUDA backend (kernels/)
// implements the same operations. Every backend is checked against the same fixtures.
//
// Tensors are dense row-major float32 matrices [rows, cols] owned by the backend (host memory for
// the CPU backend, device memory for CUDA). Rows are tokens; a batch concatenates the tokens of
// several independent sequences ("streams"), so per-row operations never mix streams and only
// attention needs to know where streams begin and end.
#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "model/safetensors_file.h"

namespace moetrace {

class Tensor {
 public:
  virtual ~Tensor() = default;
  int rows() const { return rows_; }
  int cols() const { return cols_; }

 protected:
  Tensor(int rows, int cols) : rows_(rows), cols_(cols) {}
  int rows_, cols_;
};
using TensorPtr = std::unique_ptr<Tensor>;

// A weight matrix [rows, cols] in the backend's storage format (float32 on the CPU; bf16 or
// float32 on CUDA). 1-D checkpoint tensors (norm weights) become [1, n].
class Weight {
 public:
  virtual ~Weight() = default;
  int rows() const { return rows_; }
  int cols() const { return cols_; }

 protected:
  Weight(int rows, int cols) : rows_(rows), cols_(cols) {}
  int rows_, cols_;
};
using WeightPtr = std::unique_ptr<Weight>;

// One sequence's share of an attention call: its queries are rows [q_row, q_row + num_queries)
// of q at positions first_pos .. first_pos + num_queries - 1; its keys and values are rows
// 0 .. first_pos + num_queries - 1 of `keys` / `values`, row j at position j. Causal: the query at
// position p sees keys 0..p.
struct AttentionSegment {
  int q_row = 0;
  int num_queries = 0;
  int first_pos = 0;
  const Tensor* keys = nullptr;
  const Tensor* values = nullptr;
};

struct AttentionShape {
  int num_heads = 0;
  int num_kv_heads = 0;
  int head_dim = 0;
};

// The rows one expert processes: out[out_rows[i]] = weights[i] * E(x[in_rows[i]]).
struct ExpertTask {
  const Weight* gate = nullptr;  // [I, H]
  const Weight* up = nullptr;    // [I, H]
  const Weight* down = nullptr;  // [H, I]
  std::vector<int> in_rows;
  std::vector<int> out_rows;
  std::vector<float> weights;
};

// The weights of one expert (null pointers for an expert held by another rank).
struct ExpertRef {
  const Weight* gate = nullptr;  // [I, H]
  const Weight* up = nullptr;    // [I, H]
  const Weight* down = nullptr;  // [H, I]
};

// One row of a tensor; a null tensor stands for a row of zeros.
struct RowRef {
  const Tensor* tensor = nullptr;
  int row = 0;
};
struct RowPair {
  RowRef a, b;
};

// ---- routing -------------------------------------------------------------------------------------
// Top-k routing of `rows` token rows over `num_experts` experts, on the host.
struct Routing {
  int k = 0;
  std::vector<int> experts;    // [rows * k], descending probability (ties: lower expert index first)
  std::vector<float> weights;  // [rows * k], renormalised where the model does

  int expert(int row, int slot) const { return experts[row * k + slot]; }
  // Slot of expert e in row, or -1 when e is not routed there.
  int slot_of(int row, int e) const;
};

// The host copy of a RoutingResult: the top-k per row, and the same slots grouped by expert.
struct RoutingTable {
  Routing top;                       // per row
  std::vector<int> expert_offsets;   // [num_experts + 1]
  std::vector<int> expert_slots;     // [rows * k]: slot indices row*k + j, grouped by expert (ascending),
                                     // rows ascending within an expert; expert e's are
                                     // expert_slots[expert_offsets[e] .. expert_offsets[e+1])
};

// What Backend::route computes for one MoE layer.
struct RouteRequest {
  int layer = 0;  // for error messages only
  int k = 0;
  bool renormalise = false;  // divide the k chosen probabilities by their sum
  // Deactivation, as CSR over rows: experts mask_experts[mask_offsets[r] .. mask_offsets[r+1]) of row
  // r get probability 0 (logit -inf before the softmax). Empty mask_offsets: nothing masked.
  std::vector<int> mask_offsets;
  std::vector<int> mask_experts;
};

// The routing of one MoE layer, held by the backend that computed it (device memory on an
// accelerator). host() copies it to the host on first use only: the engine asks for it when a
// record, an expert patch or an output needs it.
class RoutingResult {
 public:
  RoutingResult(int rows, int k, int num_experts) : rows_(rows), k_(k), num_experts_(num_experts) {}
  virtual ~RoutingResult() = default;
  int rows() const { return rows_; }
  int k() const { return k_; }
  int num_experts() const { return num_experts_; }
  const RoutingTable& host() const {
    if (!host_) {
      host_ = std::make_unique<RoutingTable>();
      fetch(*host_);
    }
    return *host_;
  }

 protected:
  // Fills the host copy (and reports errors the device found: non-finite logits, too few experts).
  virtual void fetch(RoutingTable& table) const = 0;
  mutable std::unique_ptr<RoutingTable> host_;

 private:
  int rows_, k_, num_experts_;
};
using RoutingPtr = std::unique_ptr<RoutingResult>;

// The [rows, cols] matrix a checkpoint tensor becomes on a backend: 1-D tensors (norm weights) are
// one row; anything but 1-D or 2-D is an internal error naming the tensor.
std::pair<int, int> weight_matrix_shape(const TensorView& view);

class Backend {
 public:
  virtual ~Backend() = default;
  virtual std::string name() const = 0;

  // --- memory -------------------------------------------------------------------------------
  virtual TensorPtr zeros(int rows, int cols) = 0;
  virtual TensorPtr upload(const float* host, int rows, int cols) = 0;
  virtual void download(const Tensor& t, float* host) = 0;
  virtual WeightPtr upload_weight(const TensorView& view) = 0;
  // Bytes of weights held on the device (reported to the user).
  virtual std::size_t weight_bytes() const = 0;

  // --- the packed weight store (docs/weights.md) ---------------------------------------------
  // Names the byte layout weight_image produces and map_weight reads (backend, mode, library
  // version, CPU features): a store is used only by a backend that gives the same string. Empty:
  // this backend reads no store and uploads from the checkpoint.
  virtual std::string weight_layout() const { return {}; }
  // The bytes of an uploaded weight as map_weight takes them back (written once, into the store),
  // valid while the weight lives.
  virtual std::span<const std::byte> weight_image(const Weight& weight) const;
  // The weight for the checkpoint tensor `view` from its image (`bytes` bytes at `image`, mapped
  // read-only from the store and alive as long as the weight): used in place where the backend can
  // (host memory), copied where it must (device memory). An image of the wrong size for the view is
  // an InputError naming `origin` (the store) and the tensor.
  virtual WeightPtr map_weight(const TensorView& view, const std::byte* image, std::size_t bytes,
                               const std::string& origin);

  // --- data movement ------------------------------------------------------------------------
  // Rows of `table` selected by ids (embedding lookup).
  virtual TensorPtr embed(const Weight& table, const std::vector<int>& ids) = 0;
  virtual TensorPtr gather_rows(const Tensor& src, const std::vector<int>& rows) = 0;
  // dst[dst_rows[i]] = src[src_rows[i]]
  virtual void copy_rows(const Tensor& src, const std::vector<int>& src_rows, Tensor& dst,
                         const std::vector<int>& dst_rows) = 0;
  // dst[dst_rows[i]] += scale * src[src_rows[i]], in index order.
  virtual void add_rows(const Tensor& src, const std::vector<int>& src_rows, Tensor& dst,
                        const std::vector<int>& dst_rows, float scale) = 0;
  // Rows of the listed tensors, one after the other.
  virtual TensorPtr concat_rows(const std::vector<const Tensor*>& parts) = 0;
  // dst += src (same shape).
  virtual void add(Tensor& dst, const Tensor& src) = 0;

  // --- math ---------------------------------------------------------------------------------
  // x W^T: [n, in] x [out, in]^T -> [n, out].
  virtual TensorPtr linear(const Tensor& x, const Weight& w) = 0;
  // RMSNorm over consecutive groups of `group` columns, each scaled by weight [1, group].
  virtual TensorPtr rms_norm(const Tensor& x, const Weight& weight, int group, float eps) = 0;
  // Rotate-half RoPE on every head of x ([n, heads*head_dim]); row i is at positions[i].
  virtual void rope(Tensor& x, const std::vector<int>& positions, int head_dim, double theta) = 0;
  // Causal grouped-query attention; output [q.rows, num_heads*head_dim].
  virtual TensorPtr attention(const Tensor& q, const std::vector<AttentionSegment>& segments,
                              const AttentionShape& shape) = 0;
  // Weighted SiLU-gated expert outputs, written into rows of `out` (which the caller zeroes).
  virtual void run_experts(const Tensor& x, const std::vector<ExpertTask>& tasks, Tensor& out) = 0;
  // out[i] = sum_{j<k} slots[i*k + j]: the MoE output, summed in slot order so that the result
  // never depends on which device computed which expert.
  virtual TensorPtr sum_slots(const Tensor& slots, int k) = 0;
  // x[i] . table[ids[i*per_row + j]] for every row i and j < per_row, to the host
  // (the two-logit read-out without the full vocabulary).
  virtual std::vector<float> select_logits(const Tensor& x, const Weight& table,
                                           const std::vector<int>& ids, int per_row) = 0;

  // --- statistics -----------------------------------------------------------------------------
  // ||a_i - b_i|| for each pair of rows (a row with a null tensor is a row of zeros; both rows the
  // same width): the difference in float32, its squares summed in double in column order, so the
  // result is the same on every backend.
  virtual std::vector<double> row_distances(const std::vector<RowPair>& pairs) = 0;
  // Population standard deviation of the elements of the listed rows of `table` (a row listed twice
  // counts twice), accumulated in double, row by row in the order listed (Welford), as the backend
  // holds them (the checkpoint's values where the stored type holds them exactly). The default reads
  // the rows in chunks through embed() and download(). At least one row.
  virtual double rows_std(const Weight& table, const std::vector<int>& rows);

  // --- routing ------------------------------------------------------------------------------
  // Softmax over each row of router logits [rows, E] in double precision, deactivation masks, top-k
  // (descending probability, ties to the lower expert index), optional renormalisation, and the
  // grouping of the chosen slots by expert. Non-finite logits and rows with fewer than k experts
  // left after masking are InputErrors naming the layer and row (on an accelerator they surface when
  // the host copy is made).
  virtual RoutingPtr route(const Tensor& logits, const RouteRequest& request) = 0;
  // run_experts over the slots `routing` gives to the experts present in `experts` (indexed by expert;
  // a null gate skips the expert): out[row*k + j] = w[row, j] * E_e(x[row]). The default builds the
  // ExpertTask lists from routing.host(); a backend may override it to stay on the device.
  virtual void run_routed_experts(const Tensor& x, const RoutingResult& routing,
                                  const std::vector<ExpertRef>& experts, Tensor& out);
};

// The reference backend: Eigen, float32, multi-threaded with OpenMP.
std::unique_ptr<Backend> make_cpu_backend();

}  // namespace moetrace
