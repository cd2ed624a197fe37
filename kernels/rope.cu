// Rotate-half RoPE. One thread per (row, frequency i): the angle, its cosine and sine are computed
// once in double precision (as the CPU reference does; float32 angles lose ~1e-3 at positions in
// the thousands) and applied to every head of the row.
#include "kernels/common.cuh"

namespace moetrace::kernels {
namespace {

__global__ void rope_kernel(float* __restrict__ x, const int* __restrict__ positions, long long items, int cols,
                            int head_dim, double theta) {
  const long long t = static_cast<long long>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (t >= items) return;
  const int half = head_dim / 2;
  const long long row = t / half;
  const int i = static_cast<int>(t % half);
  const double inv_freq = pow(theta, -2.0 * i / head_dim);
  const double angle = positions[row] * inv_freq;
  double s, c;
  sincos(angle, &s, &c);
  const float cf = static_cast<float>(c), sf = static_cast<float>(s);
  const int heads = cols / head_dim;
  float* base = x + row * cols;
  for (int h = 0; h < heads; ++h) {
    float* v = base + h * head_dim;
    const float a = v[i], b = v[i + half];
    v[i] = a * cf - b * sf;
    v[i + half] = b * cf + a * sf;
  }
}

}  // namespace

void rope(float* x, const int* positions, int rows, int cols, int head_dim, double theta, cudaStream_t stream) {
  if (rows == 0 || cols == 0) return;
  const long long items = static_cast<long long>(rows) * (head_dim / 2);
  constexpr int threads = 128;
  rope_kernel<<<static_cast<unsigned>((items + threads - 1) / threads), threads, 0, stream>>>(x, positions, items, cols,
                                                                                              head_dim, theta);
  MOETRACE_CUDA_CHECK_LAUNCH();
}

}  // namespace moetrace::kernels
