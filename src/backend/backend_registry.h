#pragma once
// Backends by name, for configs and the command line: "cpu" (the float32 reference), "cpu-bf16"
// (CPU, bf16 weights with float32 accumulation),
// "cuda" (CUDA, float32 weights: the conformance mode) and "cuda-bf16" (CUDA, bf16 weights with
// float32 accumulation). A CUDA name may end in ":<device>" ("cuda:1", "cuda-bf16:0").
#include <memory>
#include <string>
#include <vector>

#include "backend/backend.h"

namespace moetrace {

// InputError naming `what` (e.g. "run.toml: [model] backend") unless `name` is one of the names
// below, a CUDA name optionally with ":<device>", and this build has its backend. Does not look for
// a GPU (make_backend does); a config loader calls it before anything is loaded.
void check_backend_name(const std::string& name, const std::string& what);

// Throws InputError for an unknown name, for a CUDA name in a build without the CUDA backend and
// when no usable GPU is present.
std::unique_ptr<Backend> make_backend(const std::string& name);

// The names this build understands (for help texts).
std::vector<std::string> backend_names();

// True when this build contains the CUDA backend.
bool built_with_cuda();

}  // namespace moetrace
