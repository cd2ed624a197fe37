// The element-wise parts of grouped expert computation; the products themselves are grouped
// cuBLAS GEMMs (cuda_backend.cpp). Tokens of all experts are gathered into one contiguous matrix in
// expert order (converted to bf16 in bf16 mode), gate and up products are followed by SiLU(g) * u,
// the down product by the weighted scatter into the caller's slot rows.
#include "kernels/common.cuh"

namespace moetrace::kernels {
namespace {

__global__ void gather_rows_as_kernel(const float* __restrict__ src, const int* __restrict__ rows, void* __restrict__ dst,
                                      ElemType dt, int cols) {
  const float* s = src + static_cast<long long>(rows[blockIdx.x]) * cols;
  const long long base = static_cast<long long>(blockIdx.x) * cols;
  if (dt == ElemType::BF16) {
    __nv_bfloat16* d = static_cast<__nv_bfloat16*>(dst) + base;
    if (cols % 2 == 0) {
      for (int c = threadIdx.x; c < cols / 2; c += blockDim.x)
        reinterpret_cast<__nv_bfloat162*>(d)[c] = __floats2bfloat162_rn(s[2 * c], s[2 * c + 1]);
    } else {
      for (int c = threadIdx.x; c < cols; c += blockDim.x) d[c] = __float2bfloat16_rn(s[c]);
    }
  } else {
    float* d = static_cast<float*>(dst) + base;
    for (int c = threadIdx.x; c < cols; c += blockDim.x) d[c] = s[c];
  }
}

__global__ void silu_mul_kernel(const float* __restrict__ g, const float* __restrict__ u, void* __restrict__ h,
                                ElemType ht, long long n) {
  const long long stride = static_cast<long long>(gridDim.x) * blockDim.x;
  for (long long i = static_cast<long long>(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += stride) {
    const float a = g[i];
    const float v = a / (1.0f + expf(-a)) * u[i];
    if (ht == ElemType::BF16) static_cast<__nv_bfloat16*>(h)[i] = __float2bfloat16_rn(v);
    else static_cast<float*>(h)[i] = v;
  }
}

__global__ void scatter_weighted_kernel(const float* __restrict__ y, const int* __restrict__ out_rows,
                                        const float* __restrict__ w, float* __restrict__ out, int cols) {
  const float* s = y + static_cast<long long>(blockIdx.x) * cols;
  float* d = out + static_cast<long long>(out_rows[blockIdx.x]) * cols;
  const float wt = w[blockIdx.x];
  for (int c = threadIdx.x; c < cols; c += blockDim.x) d[c] = wt * s[c];
}

}  // namespace

void gather_rows_as(const float* src, const int* rows, void* dst, ElemType dst_type, int n, int cols,
                    cudaStream_t stream) {
  if (n == 0 || cols == 0) return;
  gather_rows_as_kernel<<<n, 256, 0, stream>>>(src, rows, dst, dst_type, cols);
  MOETRACE_CUDA_CHECK_LAUNCH();
}

void silu_mul(const float* g, const float* u, void* h, ElemType h_type, std::size_t n, cudaStream_t stream) {
  if (n == 0) return;
  silu_mul_kernel<<<blocks_for(static_cast<long long>(n), 256, 132 * 16), 256, 0, stream>>>(g, u, h, h_type,
                                                                                           static_cast<long long>(n));
  MOETRACE_CUDA_CHECK_LAUNCH();
}

void scatter_weighted(const float* y, const int* out_rows, const float* weights, float* out, int n, int cols,
                      cudaStream_t stream) {
  if (n == 0 || cols == 0) return;
  scatter_weighted_kernel<<<n, 256, 0, stream>>>(y, out_rows, weights, out, cols);
  MOETRACE_CUDA_CHECK_LAUNCH();
}

}  // namespace moetrace::kernels
