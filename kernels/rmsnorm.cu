// RMSNorm over groups of columns: one warp per (row, group). The mean of squares is accumulated in
// float32 per lane and reduced as a tree (relative error ~1e-7 for the widths used here).
#include "kernels/common.cuh"

namespace moetrace::kernels {
namespace {

__global__ void rms_norm_kernel(const float* __restrict__ x, float* __restrict__ out,
                                const float* __restrict__ w, long long units, int cols, int group, float eps) {
  const long long unit = (static_cast<long long>(blockIdx.x) * blockDim.x + threadIdx.x) / kWarp;
  const int lane = threadIdx.x % kWarp;
  if (unit >= units) return;
  const int groups = cols / group;
  const long long row = unit / groups;
  const int g = static_cast<int>(unit % groups);
  const float* in = x + row * cols + static_cast<long long>(g) * group;
  float* o = out + row * cols + static_cast<long long>(g) * group;
  float ss = 0.f;
  const bool vec = (group % 4 == 0) && ((reinterpret_cast<unsigned long long>(in) & 15) == 0) &&
                   ((reinterpret_cast<unsigned long long>(o) & 15) == 0);
  if (vec) {
    const float4* in4 = reinterpret_cast<const float4*>(in);
    for (int c = lane; c < group / 4; c += kWarp) {
      const float4 v = in4[c];
      ss += v.x * v.x + v.y * v.y + v.z * v.z + v.w * v.w;
    }
  } else {
    for (int c = lane; c < group; c += kWarp) ss += in[c] * in[c];
  }
  ss = warp_sum(ss);
  const float inv = static_cast<float>(1.0 / sqrt(static_cast<double>(ss) / group + eps));
  if (vec) {
    const float4* in4 = reinterpret_cast<const float4*>(in);
    const float4* w4 = reinterpret_cast<const float4*>(w);
    float4* o4 = reinterpret_cast<float4*>(o);
    const bool wvec = (reinterpret_cast<unsigned long long>(w) & 15) == 0;
    for (int c = lane; c < group / 4; c += kWarp) {
      const float4 v = in4[c];
      float4 ww;
      if (wvec) ww = w4[c];
      else ww = make_float4(w[4 * c], w[4 * c + 1], w[4 * c + 2], w[4 * c + 3]);
      o4[c] = make_float4(ww.x * (v.x * inv), ww.y * (v.y * inv), ww.z * (v.z * inv), ww.w * (v.w * inv));
    }
  } else {
    for (int c = lane; c < group; c += kWarp) o[c] = w[c] * (in[c] * inv);
  }
}

}  // namespace

void rms_norm(const float* x, float* out, const float* weight, int rows, int cols, int group, float eps,
              cudaStream_t stream) {
  if (rows == 0 || cols == 0) return;
  const long long units = static_cast<long long>(rows) * (cols / group);
  constexpr int threads = 256;
  const long long blocks = (units * kWarp + threads - 1) / threads;
  rms_norm_kernel<<<static_cast<unsigned>(blocks), threads, 0, stream>>>(x, out, weight, units, cols, group, eps);
  MOETRACE_CUDA_CHECK_LAUNCH();
}

}  // namespace moetrace::kernels
