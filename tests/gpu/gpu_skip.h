#pragma once
// GPU tests exit 77 (ctest: skipped, see tests/gpu/CMakeLists.txt) when no usable GPU is present,
// so that a CUDA build on a machine without one neither fails nor claims a pass.
#include <cstdlib>
#include <iostream>

#include "kernels/cuda_backend.h"

struct RequireGpu {
  RequireGpu() {
    if (moetrace::cuda_device_count() == 0) {
      std::cout << "no usable CUDA device: GPU test skipped (exit 77)" << std::endl;
      std::exit(77);
    }
  }
};
