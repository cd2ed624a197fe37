#pragma once
// The configuration of `moetrace run`: one TOML file, every key documented in docs/config.md.
// Unknown keys and values of the wrong type are errors naming the key, so a typo never silently
// falls back to a default.
#include <cstdint>
#include <filesystem>
#include <limits>
#include <string>
#include <vector>

#include "engine/intervention.h"          // Site
#include "tokenizer/protocol_tokens.h"  // ObjectRule

namespace moetrace {

enum class FilterKind { Strict, Relaxed };
enum class SigmaRule { EmbeddingStd, SubjectStd };
enum class SweepPositions { Final, LastSubject, Subject };
enum class ExpertMode { SelectedLayer, AllLayers };
// The expert sets of [coalitions] sets: "clean_topk" (the clean run's routed experts) or "union"
// (clean-routed and own-routed). The name is what the results file and reports show.
enum class CoalitionSet { CleanTopk, Union };
const char* coalition_name(CoalitionSet s);
const char* site_name(Site s);

struct RunConfig {
  std::string source_text;  // the TOML as given (stored in results for provenance)
  std::filesystem::path source_path;

  // [model]
  std::filesystem::path model_path;
  std::filesystem::path tokenizer_path;  // defaults to model_path
  std::string backend = "cpu";
  std::filesystem::path weight_store;  // [model] weight_store: the packed weight store folder, empty: none

  // [data]
  std::filesystem::path counterfact_path;
  std::filesystem::path case_ids_path;  // optional: explicit discovery/validation case ids
  std::string case_ids_key;             // e.g. "Qwen3" in the paper's file
  ObjectRule object_rule = ObjectRule::BareThenSpace;
  bool add_bos = false;

  // [cases]
  int num_cases = 256;  // usable cases to collect; 0 keeps every usable case (full-dataset mode)
  std::uint64_t shuffle_seed = 0;
  std::uint64_t split_seed = 0;
  FilterKind filter = FilterKind::Strict;
  int max_records = 0;  // 0: all records

  // [noise]
  SigmaRule sigma_rule = SigmaRule::EmbeddingStd;
  double noise_multiplier = 3.0;
  int noise_samples = 1;
  std::uint64_t noise_seed = 0;

  // [layer_sweep]
  Site sweep_site = Site::Moe;  // hidden | attn | moe
  SweepPositions sweep_positions = SweepPositions::Final;
  int sweep_window = 1;
  double tie_tolerance = 1e-6;  // layers within this x max|mean| of the best are tied: the earliest wins


  // [experts]
  ExpertMode expert_mode = ExpertMode::SelectedLayer;
  double candidate_threshold = 0.5;  // fraction of discovery cases in which a candidate is clean-active
  int sampled_controls = 3;
  std::uint64_t control_seed = 0;
  bool trace_without_rescue = false;  // trace experts even when the selected layer rescues nothing

  // [coalitions]
  std::vector<CoalitionSet> coalitions{CoalitionSet::CleanTopk, CoalitionSet::Union};

  // [statistics]
  int bootstrap_resamples = 5000;
  int sign_flips = 10000;
  std::uint64_t stats_seed = 0;

  // [robustness]
  std::vector<double> robust_noise_multipliers;
  bool robust_relaxed_filter = false;
  std::vector<std::uint64_t> robust_split_seeds;
  std::vector<double> robust_candidate_thresholds;

  // [heatmap]
  int heatmap_cases = 0;  // ROME-style token x layer heatmaps for the first n validation cases

  // [run]
  int batch_rows = 4096;
  // Cases per unit of work are chosen by token rows: a chunk holds cases until their prompts add
  // up to chunk_tokens (at least one case). Results never depend on it (docs/engine.md).
  int chunk_tokens = 1024;
  // Prepared clean/noised runs kept between stages (MiB of records); 0 prepares every stage anew.
  int prepared_cache_mib = 2048;
  int progress_every_s = 10;
  int checkpoint_every_s = 30;  // results snapshot interval (a killed run loses at most this)
};

// The largest values a config may ask for (docs/config.md lists them): an input never sizes an
// allocation or a loop beyond these.
namespace limits {
inline constexpr std::int64_t kMaxCases = 10'000'000;
inline constexpr std::int64_t kMaxSeed = std::numeric_limits<std::int64_t>::max();
inline constexpr double kMaxNoiseMultiplier = 1e6;
inline constexpr std::int64_t kMaxNoiseSamples = 1000;
inline constexpr std::int64_t kMaxSweepWindow = 1024;
inline constexpr double kMaxTieTolerance = 0.1;  // [layer_sweep] tie_tolerance: fraction of the curve's scale
inline constexpr std::int64_t kMaxSampledControls = 1024;
inline constexpr std::int64_t kMaxBootstrap = 1'000'000;
inline constexpr std::int64_t kMaxSignFlips = 10'000'000;
inline constexpr std::int64_t kMaxHeatmapCases = 10'000;
inline constexpr std::int64_t kMaxBatchRows = 1 << 20;
inline constexpr std::int64_t kMaxChunkTokens = 1 << 24;
inline constexpr std::int64_t kMaxPreparedCacheMib = 1 << 24;  // 16 TiB
inline constexpr std::int64_t kMaxIntervalS = 7 * 86400;
inline constexpr std::uint64_t kMaxConfigBytes = 1 << 20;
inline constexpr std::int64_t kMaxPromptTokens = 2048;  // longer prompts are skipped with that reason
}  // namespace limits

// Parses a config file; relative paths are resolved against the config file's folder. Only a
// regular file of at most limits::kMaxConfigBytes is read.
RunConfig load_run_config(const std::filesystem::path& path);

// Checks that the paths a config names are of the right kind before anything is loaded: the model
// and tokenizer paths exist, the CounterFact and case-id files are regular files. Errors name the
// config file, the key and the path.
void check_run_inputs(const RunConfig& config);
RunConfig parse_run_config(const std::string& text, const std::filesystem::path& origin);

}  // namespace moetrace
