#pragma once
// Error checks for CUDA runtime and cuBLAS calls. Each failure throws moetrace::InternalError
// through fail_internal, naming the call, the library's own error text and file:line.
#include <string>

#include <cublas_api.h>
#include <cuda_runtime_api.h>

namespace moetrace {
// Declared in util/error.h (not included here so that nvcc never parses fmt): throws InternalError.
[[noreturn]] void fail_internal(const char* file, int line, const std::string& what);
}  // namespace moetrace

namespace moetrace::cuda_detail {

const char* cublas_status_name(cublasStatus_t s);

inline void check_cuda(cudaError_t e, const char* call, const char* file, int line) {
  if (e != cudaSuccess)
    ::moetrace::fail_internal(file, line, std::string("CUDA call failed: ") + call + ": " + cudaGetErrorName(e) +
                                              " (" + cudaGetErrorString(e) + ")");
}

inline void check_cublas(cublasStatus_t s, const char* call, const char* file, int line) {
  if (s != CUBLAS_STATUS_SUCCESS)
    ::moetrace::fail_internal(file, line, std::string("cuBLAS call failed: ") + call + ": " + cublas_status_name(s));
}

}  // namespace moetrace::cuda_detail

#define MOETRACE_CUDA_CHECK(call) ::moetrace::cuda_detail::check_cuda((call), #call, __FILE__, __LINE__)
#define MOETRACE_CUBLAS_CHECK(call) ::moetrace::cuda_detail::check_cublas((call), #call, __FILE__, __LINE__)
// After a kernel launch: launch-configuration errors surface here, execution errors at the next sync.
#define MOETRACE_CUDA_CHECK_LAUNCH() MOETRACE_CUDA_CHECK(cudaGetLastError())

