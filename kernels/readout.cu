// The two-logit read-out: x[r] . lm_head[id] for the few vocabulary rows a stream needs (true and
// foil token), one warp per dot product, without the full [rows, V] logits; and the distances
// between recorded rows (Backend::row_distances).
#include "kernels/common.cuh"

namespace moetrace::kernels {
namespace {

__global__ void select_logits_kernel(const float* __restrict__ x, const void* __restrict__ table, ElemType type,
                                     const int* __restrict__ ids, float* __restrict__ out, long long items, int per_row,
                                     int cols) {
  const long long item = (static_cast<long long>(blockIdx.x) * blockDim.x + threadIdx.x) / kWarp;
  const int lane = threadIdx.x % kWarp;
  if (item >= items) return;
  const float* xr = x + (item / per_row) * cols;
  const long long base = static_cast<long long>(ids[item]) * cols;
  float s = 0.f;
  for (int c = lane; c < cols; c += kWarp) s += xr[c] * load_as_float(table, type, base + c);
  s = warp_sum(s);
  if (lane == 0) out[item] = s;
}

// One thread per pair, columns in order: the rounding of the host's loop (the products of two floats
// are exact in double, so a fused multiply-add changes nothing; the intrinsics make it explicit).
__global__ void row_distances_kernel(const RowDistancePair* __restrict__ pairs, int n, int cols,
                                     double* __restrict__ out) {
  const int i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i >= n) return;
  const float* a = pairs[i].a;
  const float* b = pairs[i].b;
  double s = 0;
  for (int c = 0; c < cols; ++c) {
    const float d = __fsub_rn(a ? a[c] : 0.0f, b ? b[c] : 0.0f);
    s = __dadd_rn(s, __dmul_rn(static_cast<double>(d), static_cast<double>(d)));
  }
  out[i] = sqrt(s);
}

}  // namespace

void row_distances(const RowDistancePair* pairs, int n, int cols, double* out, cudaStream_t stream) {
  if (n == 0) return;
  constexpr int threads = 64;
  row_distances_kernel<<<(n + threads - 1) / threads, threads, 0, stream>>>(pairs, n, cols, out);
  MOETRACE_CUDA_CHECK_LAUNCH();
}

void select_logits(const float* x, const void* table, ElemType type, const int* ids, float* out, int rows, int per_row,
                   int cols, cudaStream_t stream) {
  const long long items = static_cast<long long>(rows) * per_row;
  if (items == 0) return;
  constexpr int threads = 128;
  select_logits_kernel<<<static_cast<unsigned>((items * kWarp + threads - 1) / threads), threads, 0, stream>>>(
      x, table, type, ids, out, items, per_row, cols);
  MOETRACE_CUDA_CHECK_LAUNCH();
}

}  // namespace moetrace::kernels
