#pragma once
// The CUDA backend: moetrace::Backend on one NVIDIA GPU (kernels/, docs/cuda.md).
//
// Activations are float32 row-major device matrices; weights are float32 (Precision::F32, the
// conformance mode that replays the fixtures within 1e-4) or bf16 (Precision::BF16: matrix
// products take bf16 operands with float32 accumulation; norms, RoPE, attention softmax, the
// residual stream and the read-out stay float32). Everything is enqueued on one CUDA stream; the
// host waits only where the Backend API hands data back (download, select_logits).
#include <cstddef>
#include <memory>
#include <string>

#include "backend/backend.h"

namespace moetrace {

enum class CudaPrecision { F32, BF16 };

struct CudaBackendOptions {
  int device = 0;
  // BF16 mode stores the matrices as bf16 except the router's [E, H] weight, kept in float32 so that
  // top-k selection is as close to the checkpoint's routing as possible (E*H*4 bytes per layer).
  CudaPrecision precision = CudaPrecision::F32;
};

// Throws InputError when no usable CUDA device is present (message names the CUDA error).
std::unique_ptr<Backend> make_cuda_backend(const CudaBackendOptions& options = {});

// Number of CUDA devices the runtime sees; 0 (never an exception) when there is no driver or GPU.
int cuda_device_count();

namespace cuda {

// Peak device memory the backend's activation pool has held (bytes).
std::size_t pool_peak_bytes(Backend& backend);

}  // namespace cuda
}  // namespace moetrace
