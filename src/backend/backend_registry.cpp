#include "backend/backend_registry.h"

#include <cstdlib>

#include "backend/cpu/cpu_backend.h"
#include "util/error.h"

#ifdef MOETRACE_WITH_CUDA
#include "kernels/cuda_backend.h"
#endif

namespace moetrace {

bool built_with_cuda() {
#ifdef MOETRACE_WITH_CUDA
  return true;
#else
  return false;
#endif
}

std::vector<std::string> backend_names() {
  if (built_with_cuda()) return {"cpu", "cpu-bf16", "cuda", "cuda-bf16"};
  return {"cpu", "cpu-bf16"};
}

std::unique_ptr<Backend> make_backend(const std::string& name) {
  if (name == "cpu") return make_cpu_backend();
  if (name == "cpu-bf16") return make_cpu_backend(CpuBackendOptions{.precision = CpuPrecision::BF16});
  std::string base = name;
  int device = 0;
  if (const auto colon = name.find(':'); colon != std::string::npos) {
    base = name.substr(0, colon);
    const std::string idx = name.substr(colon + 1);
    char* end = nullptr;
    const long v = std::strtol(idx.c_str(), &end, 10);
    if (idx.empty() || *end != '\0' || v < 0 || v > 1024)
      fail_input("backend '{}': the device after ':' must be a non-negative integer", name);
    device = static_cast<int>(v);
  }
  if (base != "cuda" && base != "cuda-bf16")
    fail_input("unknown backend '{}' (expected cpu, cpu-bf16, cuda or cuda-bf16)", name);
#ifdef MOETRACE_WITH_CUDA
  CudaBackendOptions options;
  options.device = device;
  options.precision = base == "cuda-bf16" ? CudaPrecision::BF16 : CudaPrecision::F32;
  return make_cuda_backend(options);
#else
  (void)device;
  throw InputError("this moetrace was built without the CUDA backend (configure with -DMOETRACE_CUDA=ON)");
#endif
}

}  // namespace moetrace
