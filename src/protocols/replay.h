#pragma once
// `moetrace replay`: recompute every dataset of a conformance fixture from its inputs.
#include "engine/case_tracer.h"
#include "results/fixture_io.h"

namespace moetrace {

struct ReplayOptions {
  PatchMode mode = PatchMode::FastPath;
  bool traces = true;  // also the facts/<n>/trace/* and deactivate/* datasets
};

FactOutputs replay_fact(Engine& engine, const FixtureFact& fact, const ReplayOptions& options);

// The restoration conditions of the fixture's trace datasets, in dataset order.
struct TraceLayout {
  std::string name;                 // e.g. "trace/heat_moe"
  std::vector<std::size_t> shape;   // without the leading sample dimension
  std::vector<Condition> conditions;  // one per element, row-major over `shape`
};
std::vector<TraceLayout> fixture_trace_layout(const ModelConfig& config, const Prompt& prompt);

}  // namespace moetrace
