#pragma once
// The CPU backend's modes. `cpu` (CpuPrecision::F32) is the float32 reference every other backend
// is checked against; `cpu-bf16` keeps bf16 weights as bf16 and multiplies bf16 operands with
// float32 accumulation (AVX512_BF16 through oneDNN where the CPU has it).
#include <memory>

#include "backend/backend.h"

namespace moetrace {

enum class CpuPrecision { F32, BF16 };

struct CpuBackendOptions {
  // BF16 mode stores the matrices as bf16 except the router's [E, H] weight, kept in float32 (as
  // cuda-bf16 does) so that top-k selection sees the same scores as the reference up to the bf16
  // rounding of the hidden state.
  CpuPrecision precision = CpuPrecision::F32;
  // BF16 mode: do not use oneDNN's bf16 products; multiply with the portable fallback (bf16 weights
  // widened to float32 block by block). Chosen automatically when the CPU has no bf16 support in
  // oneDNN; the environment variable MOETRACE_CPU_BF16_FALLBACK=1 forces it (tests use this flag).
  bool force_bf16_fallback = false;
};

std::unique_ptr<Backend> make_cpu_backend(const CpuBackendOptions& options);

}  // namespace moetrace
