#pragma once
// The configuration of `moetrace localize` (docs/localize.md "Config"; docs/config.md lists every
// key). Option strings become enums here, once; unknown sections and keys, values of the wrong
// type and out-of-range numbers are InputErrors naming the config file and the key.
#include <cstdint>
#include <filesystem>
#include <map>
#include <string>
#include <vector>

#include "localize/localize_ask.h"
#include "localize/localize_contrast.h"
#include "localize/localize_match.h"
#include "model/model_config.h"
#include "tokenizer/tokenizer.h"

namespace moetrace {

namespace localize {
// Which experts are deactivated: the global top N ("global") or the top N of every layer ("per_layer").
enum class ExpertSelection : std::uint8_t { Global, PerLayer };
std::string_view expert_selection_name(ExpertSelection s);
// What the percentile bootstrap resamples: whole questions with all their pairs ("question") or pairs.
enum class BootstrapUnit : std::uint8_t { Question, Pair };
std::string_view bootstrap_unit_name(BootstrapUnit u);
}  // namespace localize

struct LocalizeConfig {
  std::string source_text;  // the TOML as given (stored in results for provenance)
  std::filesystem::path source_path;

  // [model]
  std::filesystem::path model_path;
  std::filesystem::path tokenizer_path;  // defaults to model_path
  std::string backend = "cpu";
  std::filesystem::path weight_store;  // [model] weight_store: the packed weight store folder, empty: none
  bool eos_ids_given = false;  // [model] eos_ids present (may be empty: no EOS stop)
  std::vector<int> eos_ids;

  // [data]
  std::filesystem::path questions_path;
  std::vector<std::string> languages;  // empty: every header language, header order
  bool strict = false;
  std::filesystem::path unrelated_path;  // empty: no specificity check

  // [templates]
  std::string default_template = "{question}";
  std::map<std::string, std::string> templates;  // language -> template

  // [ask]
  int max_new_tokens = 16;
  int prompts_per_call = 64;
  bool add_special_tokens = true;
  std::string answer_prefix = " ";
  localize::MatchRule match = localize::MatchRule::ExactOrPrefix;
  localize::BucketRule bucket = localize::BucketRule::Generation;
  double logprob_threshold = -0.6931471805599453;

  // [contrast]
  localize::RoutingStatistic statistic = localize::RoutingStatistic::ProbMean;
  localize::ContrastMethod method = localize::ContrastMethod::PairedSignFlip;
  localize::RankDirection direction = localize::RankDirection::SuccessHigher;
  std::uint32_t sign_flips = 10000;
  int top_n = 20;
  localize::ExpertSelection selection = localize::ExpertSelection::Global;
  std::uint64_t seed = 0;

  // [deactivation]
  int control_draws = 20;
  std::vector<int> curve_n{1, 2, 5, 10, 20, 50, 100};
  std::uint32_t bootstrap = 5000;
  localize::BootstrapUnit bootstrap_unit = localize::BootstrapUnit::Question;

  // [run]
  int chunk_tokens = 1024;
  int progress_every_s = 10;
  int checkpoint_every_s = 30;
};

namespace limits {
inline constexpr std::int64_t kMaxNewTokens = 4096;
inline constexpr std::int64_t kMaxPromptsPerCall = 1 << 16;
inline constexpr std::int64_t kMaxTopN = 1 << 20;
inline constexpr std::int64_t kMaxControlDraws = 10'000;
inline constexpr std::int64_t kMaxCurveN = 1 << 20;
inline constexpr std::int64_t kMaxTokenId = (std::int64_t{1} << 31) - 1;
}  // namespace limits

LocalizeConfig parse_localize_config(const std::string& text, const std::filesystem::path& origin);
// Reads a regular file of at most limits::kMaxConfigBytes, then parse_localize_config.
LocalizeConfig load_localize_config(const std::filesystem::path& path);
// The paths are of the right kind (model and tokenizer exist, question files are regular files);
// errors name the config file, the key and the path.
void check_localize_inputs(const LocalizeConfig& config);

// The config checked against the model and its tokenizer, before any stage runs (docs/config.md
// "Checked against the model"); errors are InputErrors naming the config file and the key:
// [model] eos_ids below the model's vocab_size; [ask] max_new_tokens, and each template with an
// empty question plus max_new_tokens, within max_position_embeddings (when the model has one);
// [contrast] top_n and [deactivation] curve_n within what the model can deactivate
// (localize_effect.h: chosen_cap, deactivation_cap): with selection = "per_layer" a top_n above
// chosen_cap is an error, with "global" a top_n above layers x chosen_cap and curve_n elements above
// layers x deactivation_cap are clipped to it (repeats dropped), logged once.
void fit_localize_config_to_model(LocalizeConfig& config, const ModelConfig& model, const Tokenizer& tokenizer);

// The EOS ids decoding stops at: [model] eos_ids when given, else `model_eos_ids` (the model's
// config.json "eos_token_id", when the model loader provides it). The one place for that fallback.
std::vector<int> effective_eos_ids(const LocalizeConfig& config, const std::vector<int>& model_eos_ids);

}  // namespace moetrace
