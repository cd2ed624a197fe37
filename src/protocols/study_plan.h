#pragma once
// A study's profile before it runs (`moetrace plan`): the run protocol's exact engine work per stage
// (run_work_plan.h) with the memory its parts take and the results file's size; times come from
// calibrated rates or the GPU cost model (engine/calibration.h), the allocation from
// protocols/allocation.h. docs/distribution.md, "Planning a study".
#include <cstdint>
#include <string>

#include "model/model_config.h"
#include "protocols/run_work_plan.h"
#include "protocols/study_profile.h"

namespace moetrace {

// Bytes per weight value in a backend's layout: 4 for cpu and cuda (float32), 2 for the -bf16 ones.
int weight_value_bytes(const std::string& backend);
// The model's weights in the backend's layout, replicated parts and experts apart.
WeightBytes model_weight_bytes(const ModelConfig& model, const std::string& backend);
// Bytes of the tensors one token row holds while a layer computes (residual, norms, projections,
// attention, router logits, expert slots and intermediates), float32.
std::uint64_t activation_bytes_per_row(const ModelConfig& model);

// The profile of a `moetrace run` config: stages and memory (seconds 0 until priced).
StudyProfile run_study_profile(const RunConfig& config, const ModelConfig& model, const std::string& model_name,
                               const std::string& backend, const RunWorkPlan& work);

}  // namespace moetrace
