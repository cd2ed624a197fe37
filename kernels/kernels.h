#pragma once
// Host-callable launchers of the CUDA kernels (one .cu file per op family). Every launcher enqueues
// on the given stream, checks the launch and never synchronises. Matrices are row-major; `cols` is
// also the leading dimension unless a parameter says otherwise.
#include <cstddef>
#include <cstdint>

#include <cuda_runtime_api.h>

namespace moetrace::kernels {

// Element types of weights (activations are always float32).
enum class ElemType : int { F32 = 0, BF16 = 1, F16 = 2 };

// ---- rmsnorm.cu ------------------------------------------------------------------------------
// out[r, g*group + c] = w[c] * x[r, g*group + c] / sqrt(mean_c x^2 + eps)
void rms_norm(const float* x, float* out, const float* weight, int rows, int cols, int group, float eps,
              cudaStream_t stream);

// ---- rope.cu ---------------------------------------------------------------------------------
// Rotate-half RoPE in place on every head of x [rows, cols]; angles in double precision.
void rope(float* x, const int* positions, int rows, int cols, int head_dim, double theta, cudaStream_t stream);

// ---- attention.cu ----------------------------------------------------------------------------
// Keys/values of one segment in at most two row-contiguous pieces (a recorded prefix and the
// batch's own rows): key j is k0 + j*ld for j < k_rows0, else k1 + (j - k_rows0)*ld.
struct AttnSegment {
  const float* k0;
  const float* k1;
  const float* v0;
  const float* v1;
  int k_rows0;
  int v_rows0;
};
// Work item i: query row rows[i].row of segment rows[i].seg at absolute position rows[i].pos.
struct AttnRow {
  int row;
  int seg;
  int pos;
};
void attention(const float* q, float* out, const AttnRow* rows, const AttnSegment* segments, int num_rows,
               int num_heads, int num_kv_heads, int head_dim, int kv_ld, float scale, cudaStream_t stream);

// ---- permute.cu ------------------------------------------------------------------------------
struct CopyPiece {
  const float* src;
  float* dst;
  long long count;  // floats
};
// Independent copies in one launch (pieces must not overlap each other's destinations).
void batched_copy(const CopyPiece* pieces, int num_pieces, cudaStream_t stream);
// dst[i] = src[rows[i]]
void gather_rows(const float* src, const int* rows, float* dst, int n, int cols, cudaStream_t stream);
// dst[dst_rows[i]] = src[src_rows[i]]; `ordered`: later indices win on duplicate destinations.
void copy_rows(const float* src, const int* src_rows, float* dst, const int* dst_rows, int n, int cols,
               bool ordered, cudaStream_t stream);
// dst[dst_rows[i]] += scale * src[src_rows[i]]; `ordered`: sums in index order (duplicates allowed).
void add_rows(const float* src, const int* src_rows, float* dst, const int* dst_rows, int n, int cols, float scale,
              bool ordered, cudaStream_t stream);
// dst += src, n floats.
void add(float* dst, const float* src, std::size_t n, cudaStream_t stream);
// out[i] = sum_{j<k} slots[i*k + j], in slot order.
void sum_slots(const float* slots, float* out, int rows, int k, int cols, cudaStream_t stream);
// out[i] = table[ids[i]] as float32.
void embed(const void* table, ElemType type, const int* ids, float* out, int n, int cols, cudaStream_t stream);
// Element conversion (weights on upload, activations to bf16 before a bf16 product).
void convert(const void* src, ElemType src_type, void* dst, ElemType dst_type, std::size_t n, cudaStream_t stream);

// ---- experts.cu ------------------------------------------------------------------------------
// dst[i] = src[rows[i]] converted to dst_type (F32 or BF16): the tokens of all experts, grouped.
void gather_rows_as(const float* src, const int* rows, void* dst, ElemType dst_type, int n, int cols,
                    cudaStream_t stream);
// h = silu(g) * u elementwise, h as F32 or BF16.
void silu_mul(const float* g, const float* u, void* h, ElemType h_type, std::size_t n, cudaStream_t stream);
// out[out_rows[i]] = weights[i] * y[i]
void scatter_weighted(const float* y, const int* out_rows, const float* weights, float* out, int n, int cols,
                      cudaStream_t stream);

// ---- readout.cu ------------------------------------------------------------------------------
// out[r*per_row + j] = x[r] . table[ids[r*per_row + j]]
void select_logits(const float* x, const void* table, ElemType type, const int* ids, float* out, int rows,
                   int per_row, int cols, cudaStream_t stream);

// One pair of row_distances: device rows of `cols` floats, null for a row of zeros.
struct RowDistancePair {
  const float* a;
  const float* b;
};
// out[i] = ||pairs[i].a - pairs[i].b||: float32 difference, squares summed in double in column order
// (one thread per pair, so the sum is the host's, bit for bit).
void row_distances(const RowDistancePair* pairs, int n, int cols, double* out, cudaStream_t stream);

// ---- routing.cu ------------------------------------------------------------------------------
// Error codes of route_top_k in *status (initialised by the caller to INT_MAX): the smallest
// row * 4 + code over the rows that failed.
constexpr int kRouteNonFinite = 1;      // a non-finite router logit
constexpr int kRouteTooFewExperts = 2;  // fewer than k experts with non-zero probability (deactivation)
// Per row of logits [rows, num_experts]: softmax in double over the unmasked experts (mask as CSR
// over rows; both pointers null for none), top-k (descending probability, ties to the lower index,
// k <= 32), optional renormalisation. experts/weights: [rows * k]; failed rows get expert -1.
void route_top_k(const float* logits, int rows, int num_experts, int k, bool renormalise, const int* mask_offsets,
                 const int* mask_experts, int* experts, float* weights, int* status, cudaStream_t stream);
// Slots (indices into experts[n]) grouped by expert: offsets [num_experts + 1], slots [n] ascending
// within an expert; counts [num_experts] is scratch. Entries outside [0, num_experts) are skipped.
void group_by_expert(const int* experts, int n, int num_experts, int* counts, int* offsets, int* slots,
                     cudaStream_t stream);

}  // namespace moetrace::kernels
