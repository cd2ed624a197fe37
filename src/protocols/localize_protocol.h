#pragma once
// The router-contrast localisation protocol without its command (docs/localize.md "The protocol
// core"): ask every (question, language) pair, split the questions into discovery and validation
// halves, contrast the routing of the discovery pairs between the success and failure buckets,
// deactivate the top N experts and re-ask the validation pairs, against random layer-matched and
// popular-expert control sets. run_localization is the staged pipeline (localize_pipeline.h) on an
// in-memory results file and a local row executor: the command `moetrace localize` and this
// function run the same code.
#include <cstdint>
#include <string>
#include <vector>

#include "localize/localize_ask.h"
#include "localize/localize_contrast.h"
#include "localize/localize_effect.h"
#include "protocols/localize_config.h"  // ExpertSelection, BootstrapUnit
#include "protocols/statistics.h"

namespace moetrace::localize {

struct LocalizeOptions {
  AskOptions ask;  // its deactivation must be null: the protocol sets it per condition
  RoutingStatistic statistic = RoutingStatistic::ProbMean;
  ContrastOptions contrast;  // contrast.top_n experts are deactivated (global ranking)
  std::uint64_t seed = 0;    // split, control draws and bootstrap (separate streams)
  std::uint32_t control_draws = 20;  // random layer-matched control sets (>= 1)
  std::uint32_t bootstrap_resamples = kDefaultBootstrapResamples;
  // The deactivated set: the global top N, or the top N of every layer (contrast.top_n each).
  ExpertSelection selection = ExpertSelection::Global;
  // What the percentile bootstrap resamples: questions (all their pairs together) or pairs.
  BootstrapUnit bootstrap_unit = BootstrapUnit::Question;
  // Effect against N: the validation pairs re-asked with the global top N deactivated, for each N
  // (ascending, distinct, >= 1; N above the number of (layer, expert) pairs is clipped). Empty: none.
  std::vector<std::size_t> curve_n;
  // Specificity: unrelated questions (may be null), asked with and without the chosen experts.
  const QuestionSet* unrelated = nullptr;
};

struct CurvePoint {
  std::size_t n = 0;  // experts deactivated
  FlipSummary flips;
};

// The effect of one deactivated set on the validation pairs.
struct DeactivationEffect {
  ExpertList experts;
  FlipSummary flips;
  std::vector<double> turned_wrong;  // per previously correct validation pair (in `validation_pairs` order): 1 or 0
};

struct LocalizationResult {
  QuestionSplit split;               // question indices
  std::vector<AskedPair> asked;      // every pair, no deactivation (questions, then languages)
  ContrastResult contrast;           // discovery pairs only
  ExpertList chosen;                  // the global top N, best first (per_layer: layer by layer, best first)
  std::vector<std::size_t> validation_pairs;  // indices into `asked`
  DeactivationEffect effect;         // chosen experts deactivated
  DeactivationEffect popular;        // the N most often selected experts (discovery pairs)
  std::vector<DeactivationEffect> random;  // control_draws layer-matched random sets
  // Share of previously correct validation pairs that turn wrong: chosen, and chosen minus the
  // mean over random draws (per pair, then averaged), with percentile-bootstrap intervals
  // (resampling questions or pairs, LocalizeOptions::bootstrap_unit).
  double share_turned_wrong = 0, random_share_turned_wrong = 0, popular_share_turned_wrong = 0;
  Interval share_ci, difference_vs_random_ci;
  std::vector<CurvePoint> curve;  // per LocalizeOptions::curve_n
  // Specificity: every pair of the unrelated questions, before (no deactivation) and after (chosen
  // experts deactivated); empty without unrelated questions.
  FlipSummary unrelated;
  // A shard run (LocalizePipeline::set_shard): the first step that needs other shards' rows, where
  // it stopped (the rest of the result is then empty); empty otherwise.
  std::string stopped_before;
};

// InputError for bad options and everything the pieces reject (too few pairs for the contrast,
// a layer with more chosen experts than others for the random control, ...).
LocalizationResult run_localization(Engine& engine, const Tokenizer& tokenizer, const QuestionSet& questions,
                                    const LocalizeOptions& options);

}  // namespace moetrace::localize
