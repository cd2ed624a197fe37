#pragma once
// Seconds of engine work (`moetrace plan`, docs/distribution.md "Planning a study: rates and the
// GPU cost model"): rates measured on this host by timing the engine on a 2-layer model with the
// real model's widths, kept in a rates file, and a documented cost model for GPUs without one.
//
// A call of `layers` layers and `steps` layer-token steps (engine/work_shape.h) takes
//     layers * seconds_per_layer_pass + steps * seconds_per_step(rows),   rows = steps / layers,
// seconds_per_step interpolated in log(rows) between the measured points of the call's kind
// (prepare: recorded in full; patched: continuations that record nothing), clamped outside them.
#include <filesystem>
#include <string>
#include <vector>

#include "backend/backend.h"
#include "engine/work_shape.h"
#include "model/model_config.h"

namespace moetrace {

// What rates are valid for: the same host, CPU, backend, threads, versions and layer widths.
struct RateKey {
  std::string host;       // gethostname
  std::string cpu_model;  // /proc/cpuinfo "model name"
  std::string backend;    // backend name (cpu, cpu-bf16, cuda-bf16, ...)
  int threads = 1;        // OpenMP threads the rates were measured with
  std::string versions;   // "moetrace X.Y.Z; <backend weight layout: oneDNN version, ISA>"
  std::string shape;      // "hidden,heads,kv_heads,head_dim,experts,top_k,moe_inter"
  bool operator==(const RateKey&) const = default;
};

struct RatePoint {
  bool prepare = false;         // a recorded (clean / noised) call; false: a patched call
  double rows = 0;              // mean token rows per layer of the call
  double seconds_per_step = 0;  // per layer-token step, beyond the per-layer-pass cost
  int samples = 1;              // timed calls behind it (their median)
  double spread = 0;            // (max - min) / median of those calls' times
  bool operator==(const RatePoint&) const = default;
};

struct CalibratedRates {
  RateKey key;
  std::vector<RatePoint> points;      // by kind, rows ascending within a kind
  double seconds_per_layer_pass = 0;  // fixed cost of one layer of one call
  double calibration_seconds = 0;     // what measuring them cost (wall), model build included
  std::string source;                 // "calibrated on HOST ..." or "GPU cost model (uncalibrated): ..."
  std::string measured_at;            // UTC, ISO 8601
  bool operator==(const CalibratedRates&) const = default;
};

struct CalibrationOptions {
  double budget_seconds = 60;                         // for the timed calls (building the model comes on top)
  std::vector<int> rows{8, 32, 128, 512, 2048, 4096};  // token rows per layer of the timed calls
  int prompt_tokens = 16;                             // tokens of each prompt of a prepare call
  int repeats = 3;                                    // timed calls per point at most (median kept)
  int threads = 0;                                    // recorded in the key; 0: OpenMP's maximum
};

// Times Engine::run on a 2-layer model with `real`'s widths (deterministic random weights uploaded
// through `backend`; a 64-token vocabulary: the read-out is two logits of the final position) at
// each row count of `options`: prepare calls (ceil(rows / prompt_tokens) prompts, recorded in full)
// and patched calls (`rows` one-row continuations at the final position restoring the MoE output of
// layer 0). Ascending; a row count whose call (predicted from the smaller ones) does not fit in what
// is left of the budget is skipped; then repeats while the budget lasts; each point keeps the median
// of its calls. Wall time throughout; calibration_seconds includes building the model.
CalibratedRates calibrate_rates(Backend& backend, const ModelConfig& real, const CalibrationOptions& options = {});

// Predicted wall seconds of one call (0 for a call of no layers). Uses the points of the call's kind
// (of the other kind when there are none).
double predict_seconds(const CalibratedRates& rates, const CallShape& call);

// The key of this host, backend and model widths.
RateKey current_rate_key(Backend& backend, const std::string& backend_name, int threads, const ModelConfig& config);
std::string rate_shape(const ModelConfig& config);

// ---- the rates file: {"moetrace_rates": 1, "entries": [ ... ]} -----------------------------------
// $MOETRACE_RATES when set and not empty, else ~/.cache/moetrace/rates.json ($HOME; InputError when
// neither is set).
std::filesystem::path default_rates_path();
// Every entry, every field checked: InputError "<file>: entries[i].<key>: <problem>". A missing file
// is no entries; anything else that is not a valid rates file is an error.
std::vector<CalibratedRates> load_rates(const std::filesystem::path& path);
// Writes `path`.tmp.<pid> and renames it over `path` (folders created); InputError naming the path.
void save_rates(const std::filesystem::path& path, const std::vector<CalibratedRates>& list);
// The entry with exactly this key, or null.
const CalibratedRates* find_rates(const std::vector<CalibratedRates>& list, const RateKey& key);
// Replaces the entry with the same key, or appends.
void replace_rates(std::vector<CalibratedRates>& list, CalibratedRates rates);

// ---- GPUs without a calibration ------------------------------------------------------------------
// Rates from peak numbers (constants in calibration.cpp, documented in docs/distribution.md):
// per layer pass of r rows, max(r * FLOPs / (peak bf16 dense * kGpuFlopEfficiency),
// (bf16 weight bytes of the touched experts and the dense weights of one layer + r * activation
// bytes) / (HBM bandwidth * kGpuBandwidthEfficiency)) plus a fixed launch cost, tabulated at rows
// 1..4096. `gpu`: "h100", "h200" or "a100"; anything else: empty rates and *error lists the known ones.
CalibratedRates gpu_cost_model(const std::string& gpu, const ModelConfig& config, std::string* error,
                               double mean_context = 16);

}  // namespace moetrace
