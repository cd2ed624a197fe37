// The routing op (Backend::route) on the device: per row a double-precision softmax over the
// unmasked experts, top-k by (descending probability, ascending expert index), optional
// renormalisation; then the chosen slots grouped by expert (counting sort, slots ascending within an
// expert). The arithmetic follows src/backend/cpu/cpu_routing.cpp step for step (same summation
// order), so selections agree with the CPU reference and weights to float rounding of the device's
// double exp.
#include <climits>

#include "kernels/common.cuh"

namespace moetrace::kernels {
namespace {

__device__ __forceinline__ bool is_masked(int e, const int* mask_offsets, const int* mask_experts, int row) {
  if (!mask_offsets) return false;
  for (int i = mask_offsets[row]; i < mask_offsets[row + 1]; ++i)
    if (mask_experts[i] == e) return true;
  return false;
}

// One thread per row. Probabilities are recomputed on the fly (k + 2 passes over the row) instead
// of held per thread: E can be in the hundreds.
__global__ void route_top_k_kernel(const float* __restrict__ logits, int rows, int E, int k, bool renormalise,
                                   const int* __restrict__ mask_offsets, const int* __restrict__ mask_experts,
                                   int* __restrict__ experts, float* __restrict__ weights, int* __restrict__ status) {
  const int row = blockIdx.x * blockDim.x + threadIdx.x;
  if (row >= rows) return;
  const float* l = logits + static_cast<long long>(row) * E;
  int* ex = experts + static_cast<long long>(row) * k;
  float* w = weights + static_cast<long long>(row) * k;
  for (int j = 0; j < k; ++j) ex[j] = -1, w[j] = 0.f;
  double mx = -INFINITY;
  for (int e = 0; e < E; ++e) {
    if (!isfinite(l[e])) {
      atomicMin(status, row * 4 + kRouteNonFinite);
      return;
    }
    if (!is_masked(e, mask_offsets, mask_experts, row)) mx = fmax(mx, static_cast<double>(l[e]));
  }
  if (!isfinite(mx)) {
    atomicMin(status, row * 4 + kRouteTooFewExperts);
    return;
  }
  double sum = 0;
  for (int e = 0; e < E; ++e)
    sum += is_masked(e, mask_offsets, mask_experts, row) ? 0.0 : exp(static_cast<double>(l[e]) - mx);
  // Selection j: the largest (p, -e) strictly below selection j - 1 in that order.
  double prev_p = INFINITY, top = 0;
  int prev_e = -1;
  double chosen_p[32];
  for (int j = 0; j < k; ++j) {
    double best_p = -1;
    int best_e = -1;
    for (int e = 0; e < E; ++e) {
      const double p = is_masked(e, mask_offsets, mask_experts, row) ? 0.0 : exp(static_cast<double>(l[e]) - mx) / sum;
      const bool below_prev = p < prev_p || (p == prev_p && e > prev_e);
      if (below_prev && (p > best_p)) best_p = p, best_e = e;  // ascending e: ties keep the lower index
    }
    if (!(best_p > 0)) {
      atomicMin(status, row * 4 + kRouteTooFewExperts);
      for (int i = 0; i < k; ++i) ex[i] = -1;
      return;
    }
    chosen_p[j] = best_p;
    ex[j] = best_e;
    prev_p = best_p, prev_e = best_e;
  }
  for (int j = 0; j < k; ++j) top += chosen_p[j];
  for (int j = 0; j < k; ++j) w[j] = static_cast<float>(renormalise ? chosen_p[j] / top : chosen_p[j]);
}

constexpr int kGroupThreads = 256;

// Block e counts the slots routed to expert e.
__global__ void count_kernel(const int* __restrict__ experts, int n, int* __restrict__ counts) {
  const int e = blockIdx.x;
  int total = 0;
  for (int base = 0; base < n; base += kGroupThreads) {
    const int i = base + threadIdx.x;
    total += __syncthreads_count(i < n && experts[i] == e);
  }
  if (threadIdx.x == 0) counts[e] = total;
}

// offsets[0] = 0, offsets[e + 1] = offsets[e] + counts[e] (E is small: one thread).
__global__ void scan_kernel(const int* __restrict__ counts, int E, int* __restrict__ offsets) {
  if (blockIdx.x != 0 || threadIdx.x != 0) return;
  offsets[0] = 0;
  for (int e = 0; e < E; ++e) offsets[e + 1] = offsets[e] + counts[e];
}

// Block e writes the slots of expert e in ascending order (a stable block-wide compaction).
__global__ void fill_kernel(const int* __restrict__ experts, int n, const int* __restrict__ offsets,
                            int* __restrict__ slots) {
  __shared__ int warp_totals[kGroupThreads / kWarp];
  __shared__ int warp_base[kGroupThreads / kWarp];
  __shared__ int running;
  const int e = blockIdx.x, lane = threadIdx.x % kWarp, warp = threadIdx.x / kWarp;
  if (threadIdx.x == 0) running = offsets[e];
  __syncthreads();
  for (int base = 0; base < n; base += kGroupThreads) {
    const int i = base + threadIdx.x;
    const bool mine = i < n && experts[i] == e;
    const unsigned ballot = __ballot_sync(0xffffffffu, mine);
    if (lane == 0) warp_totals[warp] = __popc(ballot);
    __syncthreads();
    if (threadIdx.x == 0) {
      int acc = running;
      for (int w = 0; w < kGroupThreads / kWarp; ++w) {
        warp_base[w] = acc;
        acc += warp_totals[w];
      }
      running = acc;
    }
    __syncthreads();
    if (mine) slots[warp_base[warp] + __popc(ballot & ((1u << lane) - 1u))] = i;
    __syncthreads();
  }
}

}  // namespace

void route_top_k(const float* logits, int rows, int num_experts, int k, bool renormalise, const int* mask_offsets,
                 const int* mask_experts, int* experts, float* weights, int* status, cudaStream_t stream) {
  if (rows == 0) return;
  constexpr int threads = 128;
  route_top_k_kernel<<<blocks_for(rows, threads, 1LL << 30), threads, 0, stream>>>(
      logits, rows, num_experts, k, renormalise, mask_offsets, mask_experts, experts, weights, status);
  MOETRACE_CUDA_CHECK_LAUNCH();
}

void group_by_expert(const int* experts, int n, int num_experts, int* counts, int* offsets, int* slots,
                     cudaStream_t stream) {
  count_kernel<<<num_experts, kGroupThreads, 0, stream>>>(experts, n, counts);
  MOETRACE_CUDA_CHECK_LAUNCH();
  scan_kernel<<<1, 1, 0, stream>>>(counts, num_experts, offsets);
  MOETRACE_CUDA_CHECK_LAUNCH();
  if (n == 0) return;
  fill_kernel<<<num_experts, kGroupThreads, 0, stream>>>(experts, n, offsets, slots);
  MOETRACE_CUDA_CHECK_LAUNCH();
}

}  // namespace moetrace::kernels
