#pragma once
// The MoE forward with interventions, written once against the Backend interface.
//
// A call runs a batch of *streams*. A stream is one sequence computed from layer `start_layer`
// and position `start_pos` to the end of the model:
//  - a full run starts at (0, 0) from the token embeddings (plus noise at the subject positions);
//  - a continuation starts later and takes everything before its start from a recorded `base`
//    run: the residual entering `start_layer` and the K/V cache of positions < start_pos. This is
//    the fast path: a patch at layer l and positions >= p changes nothing before them, so only
//    positions >= p are recomputed, from layer l on.
// Streams of different prompts, conditions and start points share every matrix product.
//
// A call compiles its streams once into a BatchPlan (engine/plan.h: row layout, deactivation masks,
// patches as flat row transfers) and then runs each layer as named phases: assemble, attention,
// route (Backend::route), experts (Backend::run_routed_experts, then the ExpertExchange of
// backend/expert_exchange.h), patch, record; then the read-out (docs/engine.md).
#include <cmath>
#include <cstdint>
#include <memory>
#include <vector>

#include "backend/expert_exchange.h"
#include "engine/device_model.h"
#include "engine/intervention.h"
#include "engine/run_record.h"

namespace moetrace {

struct Prompt {
  std::vector<int> ids;
  int subject_begin = 0;  // subject token span [subject_begin, subject_end)
  int subject_end = 0;
  int true_id = -1;  // contrast = logit[true_id] - logit[foil_id] at the final position
  int foil_id = -1;
  int num_tokens() const { return static_cast<int>(ids.size()); }
};

enum class Readout {
  Contrast,    // only logit[true] - logit[foil] at the final position (two rows of the LM head)
  LastLogits,  // plus the full logits at the final position
  AllLogits,   // plus the full logits at every position (needs start_pos == 0)
};

struct StreamSpec {
  const Prompt* prompt = nullptr;
  int start_layer = 0;
  int start_pos = 0;
  const RunRecord* base = nullptr;    // needed when starting after (0, 0)
  const RunRecord* clean = nullptr;   // source of restored values (RecordLevel::Full)
  const std::vector<float>* noise = nullptr;  // [(subject_end - subject_begin) * H], start_layer 0
  const Condition* condition = nullptr;
  const Deactivation* deactivation = nullptr;
  RecordLevel record = RecordLevel::None;
  Readout readout = Readout::Contrast;
};

struct StreamOutput {
  float contrast = std::nanf("");
  std::vector<float> logits;  // LastLogits: [V]; AllLogits: [T, V]
  std::unique_ptr<RunRecord> record;
};

class Engine {
 public:
  Engine(const DeviceModel& model, Backend& backend, ExpertExchange* exchange = nullptr);

  std::vector<StreamOutput> run(const std::vector<StreamSpec>& streams);

  // Layer-token steps computed so far: one step is one token through one layer.
  std::uint64_t layer_token_steps() const { return steps_; }
  // Engine calls so far: run() calls with at least one stream.
  std::uint64_t engine_calls() const { return calls_; }
  void reset_steps() { steps_ = 0; calls_ = 0; }

  const DeviceModel& model() const { return model_; }
  Backend& backend() { return backend_; }

 private:
  const DeviceModel& model_;
  Backend& backend_;
  ExpertExchange* exchange_;
  std::uint64_t steps_ = 0;
  std::uint64_t calls_ = 0;
};

}  // namespace moetrace
