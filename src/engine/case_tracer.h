#pragma once
// Case-level tracing on top of the engine: one clean run (fully recorded), one noised run per
// noise sample (recorded as a base to continue from), then any number of patched conditions,
// evaluated either on the fast path or by full recomputation.
#include <cstdint>
#include <vector>

#include "engine/forward.h"

namespace moetrace {

enum class PatchMode {
  FastPath,       // continue the noised run from the first patched layer and position
  FullRecompute,  // recompute every condition from the embeddings (the reference)
};

struct TracedCase {
  Prompt prompt;
  StreamOutput clean;                     // RecordLevel::Full
  std::vector<std::vector<float>> noise;  // per sample: [(s1 - s0) * H]
  std::vector<StreamOutput> noised;       // per sample: RecordLevel::Base, with its contrast
  // The noised records are Full at layers >= noised_full_from (-1: Base at every layer).
  int noised_full_from = -1;
};

// What prepare_batch needs of one case.
struct PrepareRequest {
  Prompt prompt;
  std::vector<std::vector<float>> noise;  // per sample: [(s1 - s0) * H]
  RecordLevel noised_level = RecordLevel::Base;
};

// Engine work done through a tracer (a unit of the end-of-run statistics).
struct TracerWork {
  std::uint64_t engine_calls = 0;
  std::uint64_t streams = 0;
  std::uint64_t prepare_steps = 0;    // layer-token steps of clean and noised runs
  std::uint64_t condition_steps = 0;  // layer-token steps of patched runs
};

// One patched run to evaluate: condition `condition` on noise sample `sample` of a case.
struct PatchedRun {
  const TracedCase* traced = nullptr;
  int sample = 0;
  const Condition* condition = nullptr;
};

class CaseTracer {
 public:
  // max_batch_rows bounds the token rows of one engine call (memory vs. matrix efficiency).
  explicit CaseTracer(Engine& engine, int max_batch_rows = 4096);

  // Clean run (with the read-out given) and one noised run per sample. Positions before the first
  // subject token are identical in both runs, so the noised runs continue the clean one there.
  TracedCase prepare(const Prompt& prompt, std::vector<std::vector<float>> noise,
                     Readout clean_readout = Readout::Contrast, const Deactivation* deactivation = nullptr,
                     RecordLevel noised_level = RecordLevel::Base);

  // prepare() for many cases in as few engine calls as max_batch_rows allows: every clean run in
  // one call, then every noised run in one call. Each case's results are exactly those of prepare()
  // (the backend computes every token row independently of the rows it shares a call with).
  std::vector<TracedCase> prepare_batch(std::vector<PrepareRequest> requests);

  // Re-records the noised runs of `cases` in full at layers >= from_layer, continuing their own
  // records at that layer (no clean run, no layer before from_layer is recomputed), in as few engine
  // calls as max_batch_rows allows; the layers before keep their records. The values are exactly
  // those of a noised run prepared with RecordLevel::Full (row independence). Counted as
  // preparation work.
  void record_noised_in_full(const std::vector<TracedCase*>& cases, int from_layer);

  Engine& engine() { return engine_; }
  const TracerWork& work() const { return work_; }

  // Contrast of every run, in order.
  std::vector<float> evaluate(const std::vector<PatchedRun>& runs, PatchMode mode);

  // The stream that evaluates one patched run (exposed for tests and step accounting).
  static StreamSpec stream_for(const PatchedRun& run, PatchMode mode);

  // How run_batched splits streams of `token_rows` rows each (in order) into engine calls of at most
  // max_batch_rows token rows (a longer stream alone in its call): the streams per call. The
  // tracer's rule, and the planner's (moetrace plan).
  static std::vector<std::size_t> split_calls(const std::vector<int>& token_rows, int max_batch_rows);

 private:
  // engine_.run over `streams`, split into calls of at most max_batch_rows token rows.
  // `steps` accumulates the layer-token steps of the calls.
  std::vector<StreamOutput> run_batched(const std::vector<StreamSpec>& streams, std::uint64_t& steps);

  Engine& engine_;
  int max_batch_rows_;
  TracerWork work_;
};

}  // namespace moetrace
