// Causal grouped-query attention for prompts and for single tokens against a K/V cache.
//
// One warp per (query row, head). Lane l holds dimensions l, l+32, ... of the query and of the
// output accumulator (head_dim <= 32 * kMaxChunks); keys are visited in order with an online
// softmax (running max and denominator), so any context length works without scratch memory.
// The fast path's contexts are short (a prompt of tens of tokens), where this is bound by reading
// K and V once per head; heads of one GQA group re-read the same K/V rows from L2.
#include <math_constants.h>

#include "kernels/common.cuh"

namespace moetrace::kernels {
namespace {

constexpr int kMaxChunks = 8;  // head_dim <= 256

template <int CHUNKS>
__global__ void attention_kernel(const float* __restrict__ q, float* __restrict__ out, const AttnRow* __restrict__ rows,
                                 const AttnSegment* __restrict__ segs, long long units, int num_heads, int group,
                                 int head_dim, int kv_ld, float scale) {
  const long long unit = (static_cast<long long>(blockIdx.x) * blockDim.x + threadIdx.x) / kWarp;
  const int lane = threadIdx.x % kWarp;
  if (unit >= units) return;
  const int h = static_cast<int>(unit % num_heads), kvh = h / group;
  const AttnRow row = rows[unit / num_heads];
  const long long r = row.row;
  const AttnSegment seg = segs[row.seg];
  const int q_ld = num_heads * head_dim;
  const float* qv = q + r * q_ld + static_cast<long long>(h) * head_dim;

  float qr[CHUNKS], acc[CHUNKS];
#pragma unroll
  for (int c = 0; c < CHUNKS; ++c) {
    const int d = lane + c * kWarp;
    qr[c] = d < head_dim ? qv[d] : 0.f;
    acc[c] = 0.f;
  }
  float m = -CUDART_INF_F, l = 0.f;
  for (int j = 0; j <= row.pos; ++j) {
    const float* kp = (j < seg.k_rows0 ? seg.k0 + static_cast<long long>(j) * kv_ld
                                       : seg.k1 + static_cast<long long>(j - seg.k_rows0) * kv_ld) +
                      kvh * head_dim;
    const float* vp = (j < seg.v_rows0 ? seg.v0 + static_cast<long long>(j) * kv_ld
                                       : seg.v1 + static_cast<long long>(j - seg.v_rows0) * kv_ld) +
                      kvh * head_dim;
    float s = 0.f;
#pragma unroll
    for (int c = 0; c < CHUNKS; ++c) {
      const int d = lane + c * kWarp;
      if (d < head_dim) s += qr[c] * kp[d];
    }
    s = warp_sum(s) * scale;
    const float m_new = fmaxf(m, s);
    const float corr = expf(m - m_new);  // 0 on the first key (m = -inf)
    const float p = expf(s - m_new);
    l = l * corr + p;
#pragma unroll
    for (int c = 0; c < CHUNKS; ++c) {
      const int d = lane + c * kWarp;
      acc[c] = acc[c] * corr + (d < head_dim ? p * vp[d] : 0.f);
    }
    m = m_new;
  }
  float* o = out + r * q_ld + static_cast<long long>(h) * head_dim;
  const float inv = 1.f / l;
#pragma unroll
  for (int c = 0; c < CHUNKS; ++c) {
    const int d = lane + c * kWarp;
    if (d < head_dim) o[d] = acc[c] * inv;
  }
}

}  // namespace

void attention(const float* q, float* out, const AttnRow* rows, const AttnSegment* segments, int num_rows,
               int num_heads, int num_kv_heads, int head_dim, int kv_ld, float scale, cudaStream_t stream) {
  if (num_rows == 0) return;
  if (head_dim > 32 * kMaxChunks)
    ::moetrace::fail_internal(__FILE__, __LINE__, "attention: head_dim above 256 is not supported");
  const long long units = static_cast<long long>(num_rows) * num_heads;
  constexpr int threads = 128;
  const unsigned blocks = static_cast<unsigned>((units * kWarp + threads - 1) / threads);
  const int group = num_heads / num_kv_heads;
  const int chunks = (head_dim + kWarp - 1) / kWarp;
#define MOETRACE_ATTN(C)                                                                                       \
  attention_kernel<C><<<blocks, threads, 0, stream>>>(q, out, rows, segments, units, num_heads, group, head_dim, \
                                                      kv_ld, scale)
  if (chunks <= 1) MOETRACE_ATTN(1);
  else if (chunks <= 2) MOETRACE_ATTN(2);
  else if (chunks <= 4) MOETRACE_ATTN(4);
  else MOETRACE_ATTN(8);
#undef MOETRACE_ATTN
  MOETRACE_CUDA_CHECK_LAUNCH();
}

}  // namespace moetrace::kernels
