#pragma once
// The operations the MoE forward needs, on one device. The engine is written once against this
// interface; the CPU backend (Eigen, float32) is the reference and the CUDA backend (kernels/)
// implements the same operations. Every backend is checked against the same fixtures.
//
// Tensors are dense row-major float32 matrices [rows, cols] owned by the backend (host memory for
// the CPU backend, device memory for CUDA). Rows are tokens; a batch concatenates the tokens of
// several independent sequences ("streams"), so per-row operations never mix streams and only
// attention needs to know where streams begin and end.
#include <cstdint>
#include <memory>
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
};

// The reference backend: Eigen, float32, multi-threaded with OpenMP.
std::unique_ptr<Backend> make_cpu_backend();

}  // namespace moetrace
