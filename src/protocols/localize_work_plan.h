#pragma once
// The engine work of a `moetrace localize` run, predicted without loading weights (`moetrace plan`,
// docs/localize.md "Engine work"): from the config, the model's config.json, the tokenizer and the
// question files, through the pipeline's own rules (localize_pipeline.h: pairs, chunk costs, split,
// conditions; row_executor.h: chunks; engine/greedy_decoder.h: decode groups and calls).
//
// What only the model decides is when a pair's decoding stops (a newline or EOS token before
// max_new_tokens): without a results file every pair is assumed to decode max_new_tokens tokens,
// an upper bound, and the stage is marked estimate. A results file of the same config and questions
// (read_localize_decisions) supplies every computed row's decoding, and the prediction is exact.
#include <vector>

#include "localize/localize_data.h"
#include "model/model_config.h"
#include "protocols/localize_config.h"
#include "protocols/study_profile.h"
#include "results/localize_results.h"
#include "tokenizer/tokenizer.h"

namespace moetrace {

// Stages in the pipeline's order, named as the command's engine-work line names them: "asking"
// (every pair, its routing recorded: CallShape::prepare), "conditions" (the validation pairs under
// each deactivated set; conditions = the sets), and "unrelated questions" (before and after the
// chosen set; conditions = 1) when the config has them. cases: pairs of the stage's table; chunks:
// executor chunks summed over its tables; work: every engine call of one EP group running the whole
// study (several groups share it: their sum is this). flops and seconds are left 0.
// `config` must have passed fit_localize_config_to_model and `questions` / `unrelated` (may be null)
// screen_localize_questions, as `moetrace localize` does (protocols/localize_inputs.h).
// `from_results` (may be null): decodings of a run of the same config; a table it lacks, or a row
// not done there, falls back to the assumption. InputError naming the results file and dataset when
// its tables do not fit the config (row counts, more tokens than max_new_tokens).
std::vector<StageProfile> plan_localize_work(const LocalizeConfig& config, const ModelConfig& model, const Tokenizer& tokenizer,
                                             const localize::QuestionSet& questions, const localize::QuestionSet* unrelated,
                                             const LocalizeDecisions* from_results);

// The row tables the run's results file will hold (estimate_results_bytes), from its planned stages.
std::vector<TableShape> localize_result_tables(const LocalizeConfig& config, const ModelConfig& model,
                                               const std::vector<StageProfile>& stages);

}  // namespace moetrace
