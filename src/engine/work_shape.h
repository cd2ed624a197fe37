#pragma once
// Engine work as the cost model sees it (`moetrace plan`, docs/distribution.md "Planning a study"):
// every engine call by the layers it runs and its layer-token steps (one token row through one layer).
// The planner predicts these exactly from the protocol; calibrated rates turn them into seconds.
#include <cstdint>
#include <vector>

namespace moetrace {

// One engine call (Engine::run over a batch of streams).
struct CallShape {
  int layers = 0;            // layers with at least one token row (a call starting at layer l runs L - l)
  std::uint64_t steps = 0;   // layer-token steps: token rows summed over those layers
  bool prepare = false;      // a clean or noised run recorded for later conditions (records more tensors)
  double rows() const { return layers > 0 ? static_cast<double>(steps) / layers : 0.0; }  // mean rows per layer
};

// The engine work of a stage or a whole run, as CaseTracer counts it (TracerWork).
struct WorkTally {
  std::uint64_t engine_calls = 0;
  std::uint64_t prepare_steps = 0;    // clean and noised runs
  std::uint64_t condition_steps = 0;  // patched runs
  std::vector<CallShape> calls;       // every call, in order

  void add(const CallShape& c) {
    ++engine_calls;
    (c.prepare ? prepare_steps : condition_steps) += c.steps;
    calls.push_back(c);
  }
  void add(const WorkTally& w) {
    engine_calls += w.engine_calls;
    prepare_steps += w.prepare_steps;
    condition_steps += w.condition_steps;
    calls.insert(calls.end(), w.calls.begin(), w.calls.end());
  }
  std::uint64_t steps() const { return prepare_steps + condition_steps; }
};

}  // namespace moetrace
