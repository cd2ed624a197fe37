#pragma once
// The clean and noised runs of cases, prepared in chunks (one batched engine call for the clean runs
// and one for the noised runs) and kept between stages within a memory budget, so that a case is
// prepared once per noise setting rather than once per stage (docs/engine.md, "Engine work per
// case"). Cases that do not fit the budget are prepared again when a later stage needs them; which
// ones are kept never changes a result (a prepared case is a deterministic function of the case).
#include <cstdint>
#include <map>
#include <memory>
#include <utility>
#include <vector>

#include "engine/case_tracer.h"
#include "model/model_config.h"
#include "protocols/run_config.h"

namespace moetrace {

struct UsableCase;

// Noise of one (case, sample): sigma * z, z from the counter-based generator keyed by
// (seed, case_id, sample); [(s1 - s0) * hidden] floats.
std::vector<float> subject_noise(std::uint64_t seed, std::int64_t case_id, int sample, int num_subject_tokens,
                                 int hidden, double sigma);

struct PreparedStats {
  std::uint64_t prepared = 0;  // case preparations computed (clean + noised runs of one case)
  std::uint64_t reused = 0;    // preparations served from the kept ones
  std::uint64_t extended = 0;  // kept ones whose noised runs were re-recorded in full from a layer on
};

class PreparedCases {
 public:
  PreparedCases(const RunConfig& config, CaseTracer& tracer, double sigma_base, std::size_t budget_bytes);

  // The prepared runs of `cases` under noise multiplier `multiplier`, with noised runs recorded at
  // least at `level` (in the order of `cases`); for RecordLevel::Full, at the layers >= full_from.
  // A kept case whose noised runs lack that is extended (CaseTracer::record_noised_in_full: the
  // noised runs from layer full_from on, no clean run), not prepared again.
  std::vector<std::shared_ptr<const TracedCase>> get(const std::vector<const UsableCase*>& cases, double multiplier,
                                                     RecordLevel level, int full_from = 0);
  const PreparedStats& stats() const { return stats_; }

 private:
  using Key = std::pair<std::int64_t, double>;  // case id, noise multiplier
  struct Entry {
    std::shared_ptr<TracedCase> traced;  // extended in place (only ever with bit-identical values added)
    std::size_t bytes;
  };
  void keep(const Key& key, std::shared_ptr<TracedCase> traced);

  const RunConfig& config_;
  CaseTracer& tracer_;
  double sigma_base_;
  std::size_t budget_, used_ = 0;
  std::map<Key, Entry> kept_;
  PreparedStats stats_;
};

// Bytes of host or device memory a prepared case holds.
std::size_t traced_case_bytes(const TracedCase& tc);
// The same, from the case's shape alone (the planner's prepared-case cache, moetrace plan): `tokens`
// prompt tokens, `subject_tokens` noised ones, `samples` noised runs recorded in full from layer
// `noised_full_from` on (-1: Base at every layer).
std::size_t traced_case_bytes(const ModelConfig& mc, int tokens, int subject_tokens, int samples, int noised_full_from);

}  // namespace moetrace
