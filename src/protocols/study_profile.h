#pragma once
// What `moetrace plan` knows of a study before it runs (docs/distribution.md, "Planning a study"):
// its exact engine work per stage, the memory its parts take, and the seconds one rank needs for
// each stage. The allocation (protocols/allocation.h) turns it into nodes, ranks, --ep, threads,
// shards and a Slurm --time for a given cluster.
#include <cstdint>
#include <string>
#include <vector>

#include "engine/work_shape.h"

namespace moetrace {

struct StageProfile {
  std::string name;             // "case scan", "layer sweep", ...
  std::int64_t cases = 0;       // rows of the stage's table (cases, pairs)
  std::int64_t conditions = 0;  // patched runs (0 for a stage of preparations only)
  std::int64_t chunks = 0;      // executor chunks (the unit handed to an EP group)
  WorkTally work;               // engine calls and layer-token steps, exactly as one rank runs them
  double flops = 0;             // matrix-product FLOPs of the stage's layer-token steps
  double seconds = 0;           // one EP group of 1 rank at the calibrated threads (0: no rates)
  bool estimate = false;        // counts rest on an assumption (keep rate, selected layer), not on data
  std::string note;             // what the assumption is
};

// Bytes of the model's weights in the backend's layout.
struct WeightBytes {
  std::uint64_t replicated = 0;  // embeddings, attention, norms, routers, read-out: every rank
  std::uint64_t experts = 0;     // all experts of all layers: split over the R ranks of an EP group
};

struct StudyProfile {
  std::string protocol;   // "run" or "localize"
  std::string model;      // model folder name
  std::string backend;    // backend name (cpu, cpu-bf16, cuda, ...)
  int layers = 0, experts = 0, top_k = 0, hidden = 0;
  std::vector<StageProfile> stages;
  WeightBytes weights;
  std::uint64_t activation_bytes = 0;    // one rank: the largest engine call's tensors and a chunk's records
  std::uint64_t prepared_cache_bytes = 0;  // one rank: the prepared-case cache as the run fills it (its budget at most)
  std::uint64_t results_bytes = 0;       // the results file on disk (writer rank only)
  double exchange_bytes_per_step = 0;    // EP: bytes one rank sends per layer-token step at R = 2 (scale (R-1)/R*2)
  double startup_seconds = 0;            // per job: weights loaded or mapped, provenance hashes (not engine work)
  double moe_fraction = 0;               // share of a layer-token step's FLOPs in the experts (divides by R)
  int calibrated_threads = 0;            // threads the rates were measured with (0: none)
  std::string rates_source;              // "calibrated on HOST ...", "results file ...", "GPU cost model (uncalibrated)"

  std::uint64_t total_steps() const {
    std::uint64_t s = 0;
    for (const StageProfile& st : stages) s += st.work.steps();
    return s;
  }
  double total_seconds() const {
    double s = 0;
    for (const StageProfile& st : stages) s += st.seconds;
    return s;
  }
};

}  // namespace moetrace
