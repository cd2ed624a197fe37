#pragma once
// `moetrace replay`: recompute every dataset of a conformance fixture from its inputs.
#include "engine/case_tracer.h"
#include "results/fixture_io.h"

namespace moetrace {

struct ReplayOptions {
  PatchMode mode = PatchMode::FastPath;
  bool traces = true;  // also the facts/<n>/trace/* and deactivate/* datasets
};

// The facts of the fixture file `path` (a regular file, read by results/fixture_io.h), checked against
// the model before the engine runs (exit 2 naming the file and the fact): token ids inside the
// vocabulary, deactivated experts that exist and leave at least top_k experts in every layer, finite
// noise.
std::vector<FixtureFact> read_replay_inputs(const std::string& path, const ModelConfig& config);

FactOutputs replay_fact(Engine& engine, const FixtureFact& fact, const ReplayOptions& options);

// Outputs that are not finite are never written as results: an InputError naming the model, the
// fixture and the first non-finite dataset of the fact (`<group>/<name>`, element and value), or
// its clean contrast. Finite weights can still overflow float32 (e.g. an lm_head of values near
// the largest bf16), which the loader's NaN/Inf scan of the weights cannot see.
void require_finite_outputs(const FactOutputs& out, const std::string& model, const std::string& fixture);

// The restoration conditions of the fixture's trace datasets, in dataset order.
struct TraceLayout {
  std::string name;                 // e.g. "trace/heat_moe"
  std::vector<std::size_t> shape;   // without the leading sample dimension
  std::vector<Condition> conditions;  // one per element, row-major over `shape`
};
std::vector<TraceLayout> fixture_trace_layout(const ModelConfig& config, const Prompt& prompt);

}  // namespace moetrace
