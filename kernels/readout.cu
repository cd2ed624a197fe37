// The two-logit read-out: x[r] . lm_head[id] for the few vocabulary rows a stream needs (true and
// foil token), one warp per dot product, without the full [rows, V] logits.
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

}  // namespace

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
