#include "backend/backend_registry.h"

#include <cstdlib>
#include <utility>

#include "backend/cpu/cpu_backend.h"
#include "util/error.h"
#include "util/input_file.h"  // shorten

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

namespace {

// The part before ":<device>" and the device (0 when absent); InputError naming `what`.
std::pair<std::string, int> split_device(const std::string& name, const std::string& what) {
  const auto colon = name.find(':');
  if (colon == std::string::npos) return {name, 0};
  const std::string idx = name.substr(colon + 1);
  char* end = nullptr;
  const long v = std::strtol(idx.c_str(), &end, 10);
  if (idx.empty() || *end != '\0' || v < 0 || v > 1024)
    fail_input("{} = \"{}\": the device after ':' must be an integer in [0, 1024]", what, shorten(name));
  return {name.substr(0, colon), static_cast<int>(v)};
}

}  // namespace

void check_backend_name(const std::string& name, const std::string& what) {
  if (name == "cpu" || name == "cpu-bf16") return;
  const std::string base = split_device(name, what).first;
  if (base != "cuda" && base != "cuda-bf16")
    fail_input("{} = \"{}\": unknown backend (expected cpu, cpu-bf16, cuda or cuda-bf16; cuda names may end in :N)", what,
               shorten(name));
  if (!built_with_cuda())
    fail_input("{} = \"{}\": this moetrace was built without the CUDA backend (configure with -DMOETRACE_CUDA=ON; "
               "cpu and cpu-bf16 are available)", what, shorten(name));
}

std::unique_ptr<Backend> make_backend(const std::string& name) {
  check_backend_name(name, "backend");
  if (name == "cpu") return make_cpu_backend();
  if (name == "cpu-bf16") return make_cpu_backend(CpuBackendOptions{.precision = CpuPrecision::BF16});
  const auto [base, device] = split_device(name, "backend");
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
