#include "kernels/nccl_expert_exchange.h"

#include <cuda_runtime_api.h>
#include <nccl.h>

#include "kernels/cuda_backend.h"
#include "kernels/cuda_check.h"
#include "util/error.h"

namespace moetrace {

NcclExpertExchange::NcclExpertExchange(ncclComm_t comm) : comm_(comm) {
  MOETRACE_ASSERT(comm_ != nullptr, "NcclExpertExchange needs a communicator");
}

void NcclExpertExchange::combine(Backend& backend, const RoutingResult& /*routing*/, Tensor& slots) {
  const std::size_t n = static_cast<std::size_t>(slots.rows()) * slots.cols();
  ++calls_;
  if (n == 0) return;
  float* d = cuda::mutable_device_data(backend, slots);
  auto stream = static_cast<cudaStream_t>(cuda::stream_of(backend));
  MOETRACE_NCCL_CHECK(ncclAllReduce(d, d, n, ncclFloat32, ncclSum, comm_, stream));
  bytes_ += n * sizeof(float);
}

}  // namespace moetrace
