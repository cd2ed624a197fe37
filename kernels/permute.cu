// Data movement: batched copies (lazy concatenation and views materialise through one launch),
// row gathers and scatters, residual adds, the slot sum of the MoE output, embedding lookups and
// element conversions. Row kernels use one block per row and stride over the columns.
#include "kernels/common.cuh"

namespace moetrace::kernels {
namespace {

constexpr int kRowThreads = 256;

__global__ void batched_copy_kernel(const CopyPiece* __restrict__ pieces) {
  const CopyPiece p = pieces[blockIdx.x];
  const bool vec = ((reinterpret_cast<unsigned long long>(p.src) | reinterpret_cast<unsigned long long>(p.dst)) & 15) == 0;
  if (vec) {
    const long long n4 = p.count / 4;
    const float4* s = reinterpret_cast<const float4*>(p.src);
    float4* d = reinterpret_cast<float4*>(p.dst);
    for (long long i = threadIdx.x; i < n4; i += blockDim.x) d[i] = s[i];
    for (long long i = n4 * 4 + threadIdx.x; i < p.count; i += blockDim.x) p.dst[i] = p.src[i];
  } else {
    for (long long i = threadIdx.x; i < p.count; i += blockDim.x) p.dst[i] = p.src[i];
  }
}

__global__ void gather_rows_kernel(const float* __restrict__ src, const int* __restrict__ rows, float* __restrict__ dst,
                                   int cols) {
  const float* s = src + static_cast<long long>(rows[blockIdx.x]) * cols;
  float* d = dst + static_cast<long long>(blockIdx.x) * cols;
  for (int c = threadIdx.x; c < cols; c += blockDim.x) d[c] = s[c];
}

__global__ void copy_rows_kernel(const float* __restrict__ src, const int* __restrict__ src_rows, float* __restrict__ dst,
                                 const int* __restrict__ dst_rows, int cols) {
  const float* s = src + static_cast<long long>(src_rows[blockIdx.x]) * cols;
  float* d = dst + static_cast<long long>(dst_rows[blockIdx.x]) * cols;
  for (int c = threadIdx.x; c < cols; c += blockDim.x) d[c] = s[c];
}

__global__ void add_rows_kernel(const float* __restrict__ src, const int* __restrict__ src_rows, float* __restrict__ dst,
                                const int* __restrict__ dst_rows, int cols, float scale) {
  const float* s = src + static_cast<long long>(src_rows[blockIdx.x]) * cols;
  float* d = dst + static_cast<long long>(dst_rows[blockIdx.x]) * cols;
  for (int c = threadIdx.x; c < cols; c += blockDim.x) d[c] += scale * s[c];
}

// Ordered variants: one thread per column walks the index list in order (duplicates allowed).
__global__ void copy_rows_ordered_kernel(const float* __restrict__ src, const int* __restrict__ src_rows,
                                         float* __restrict__ dst, const int* __restrict__ dst_rows, int n, int cols) {
  const int c = blockIdx.x * blockDim.x + threadIdx.x;
  if (c >= cols) return;
  for (int i = 0; i < n; ++i)
    dst[static_cast<long long>(dst_rows[i]) * cols + c] = src[static_cast<long long>(src_rows[i]) * cols + c];
}

__global__ void add_rows_ordered_kernel(const float* __restrict__ src, const int* __restrict__ src_rows,
                                        float* __restrict__ dst, const int* __restrict__ dst_rows, int n, int cols,
                                        float scale) {
  const int c = blockIdx.x * blockDim.x + threadIdx.x;
  if (c >= cols) return;
  for (int i = 0; i < n; ++i)
    dst[static_cast<long long>(dst_rows[i]) * cols + c] += scale * src[static_cast<long long>(src_rows[i]) * cols + c];
}

__global__ void add_kernel(float* __restrict__ dst, const float* __restrict__ src, long long n) {
  const long long stride = static_cast<long long>(gridDim.x) * blockDim.x;
  for (long long i = static_cast<long long>(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += stride) dst[i] += src[i];
}

__global__ void sum_slots_kernel(const float* __restrict__ slots, float* __restrict__ out, int k, int cols) {
  const long long r = blockIdx.x;
  for (int c = threadIdx.x; c < cols; c += blockDim.x) {
    float s = 0.f;  // slot order, as the reference: ((0 + s0) + s1) + ...
    for (int j = 0; j < k; ++j) s += slots[(r * k + j) * cols + c];
    out[r * cols + c] = s;
  }
}

__global__ void embed_kernel(const void* __restrict__ table, ElemType type, const int* __restrict__ ids,
                             float* __restrict__ out, int cols) {
  const long long base = static_cast<long long>(ids[blockIdx.x]) * cols;
  float* o = out + static_cast<long long>(blockIdx.x) * cols;
  for (int c = threadIdx.x; c < cols; c += blockDim.x) o[c] = load_as_float(table, type, base + c);
}

__global__ void convert_kernel(const void* __restrict__ src, ElemType st, void* __restrict__ dst, ElemType dt,
                               long long n) {
  const long long stride = static_cast<long long>(gridDim.x) * blockDim.x;
  for (long long i = static_cast<long long>(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += stride)
    store_from_float(dst, dt, i, load_as_float(src, st, i));
}

}  // namespace

void batched_copy(const CopyPiece* pieces, int num_pieces, cudaStream_t stream) {
  if (num_pieces == 0) return;
  batched_copy_kernel<<<num_pieces, kRowThreads, 0, stream>>>(pieces);
  MOETRACE_CUDA_CHECK_LAUNCH();
}

void gather_rows(const float* src, const int* rows, float* dst, int n, int cols, cudaStream_t stream) {
  if (n == 0 || cols == 0) return;
  gather_rows_kernel<<<n, kRowThreads, 0, stream>>>(src, rows, dst, cols);
  MOETRACE_CUDA_CHECK_LAUNCH();
}

void copy_rows(const float* src, const int* src_rows, float* dst, const int* dst_rows, int n, int cols, bool ordered,
               cudaStream_t stream) {
  if (n == 0 || cols == 0) return;
  if (ordered) copy_rows_ordered_kernel<<<(cols + 127) / 128, 128, 0, stream>>>(src, src_rows, dst, dst_rows, n, cols);
  else copy_rows_kernel<<<n, kRowThreads, 0, stream>>>(src, src_rows, dst, dst_rows, cols);
  MOETRACE_CUDA_CHECK_LAUNCH();
}

void add_rows(const float* src, const int* src_rows, float* dst, const int* dst_rows, int n, int cols, float scale,
              bool ordered, cudaStream_t stream) {
  if (n == 0 || cols == 0) return;
  if (ordered)
    add_rows_ordered_kernel<<<(cols + 127) / 128, 128, 0, stream>>>(src, src_rows, dst, dst_rows, n, cols, scale);
  else add_rows_kernel<<<n, kRowThreads, 0, stream>>>(src, src_rows, dst, dst_rows, cols, scale);
  MOETRACE_CUDA_CHECK_LAUNCH();
}

void add(float* dst, const float* src, std::size_t n, cudaStream_t stream) {
  if (n == 0) return;
  add_kernel<<<blocks_for(static_cast<long long>(n), 256, 132 * 16), 256, 0, stream>>>(dst, src, static_cast<long long>(n));
  MOETRACE_CUDA_CHECK_LAUNCH();
}

void sum_slots(const float* slots, float* out, int rows, int k, int cols, cudaStream_t stream) {
  if (rows == 0 || cols == 0) return;
  sum_slots_kernel<<<rows, kRowThreads, 0, stream>>>(slots, out, k, cols);
  MOETRACE_CUDA_CHECK_LAUNCH();
}

void embed(const void* table, ElemType type, const int* ids, float* out, int n, int cols, cudaStream_t stream) {
  if (n == 0 || cols == 0) return;
  embed_kernel<<<n, kRowThreads, 0, stream>>>(table, type, ids, out, cols);
  MOETRACE_CUDA_CHECK_LAUNCH();
}

void convert(const void* src, ElemType src_type, void* dst, ElemType dst_type, std::size_t n, cudaStream_t stream) {
  if (n == 0) return;
  convert_kernel<<<blocks_for(static_cast<long long>(n), 256, 132 * 32), 256, 0, stream>>>(src, src_type, dst, dst_type,
                                                                                          static_cast<long long>(n));
  MOETRACE_CUDA_CHECK_LAUNCH();
}

}  // namespace moetrace::kernels
