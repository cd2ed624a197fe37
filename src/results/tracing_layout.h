#pragma once
// Names in the results file of `moetrace run` (docs/results.md). Only src/results reads and writes
// them: the writer (TracingResults, the tracing pipeline's sink) and the readers (report, merge)
// share these constants.
namespace moetrace::layout {
inline constexpr const char* kCases = "/cases";
inline constexpr const char* kSkipped = "/cases/skipped";
inline constexpr const char* kScan = "/case_scan";  // per noise multiplier: [records in scan order, 2]
inline constexpr const char* kLayerSweep = "/layer_sweep";
inline constexpr const char* kExperts = "/experts";
inline constexpr const char* kControls = "/experts/controls";
inline constexpr const char* kCoalitions = "/coalitions";
inline constexpr const char* kValidation = "/validation";
inline constexpr const char* kDiscovery = "/discovery";
inline constexpr const char* kRobustness = "/robustness";
inline constexpr const char* kHeatmap = "/heatmap";
inline constexpr const char* kDiscoveryMean = "/layer_sweep/discovery_mean";
inline constexpr const char* kTiedLayers = "/layer_sweep/tied_layers";
inline constexpr const char* kCandidates = "/experts/candidates";
inline constexpr const char* kHeatmapCaseIndex = "/heatmap/case_index";
inline constexpr const char* kHeatmapTokenText = "/heatmap/token_text";

// Attribute names.
namespace attr {
inline constexpr const char* kRecordsSeen = "records_seen";  // /cases
inline constexpr const char* kNoiseSigma = "noise_sigma";    // /cases
inline constexpr const char* kSite = "site";                 // /layer_sweep/rescue
inline constexpr const char* kWindow = "window";             // /layer_sweep/rescue
inline constexpr const char* kSelectedLayer = "selected_layer";
inline constexpr const char* kSelectedExpert = "selected_expert";
inline constexpr const char* kTieTolerance = "tie_tolerance";
inline constexpr const char* kDiscoveryGap = "discovery_gap";
inline constexpr const char* kCurveFlat = "curve_flat";
inline constexpr const char* kCurveZero = "curve_zero";
inline constexpr const char* kNoRescue = "no_rescue";
inline constexpr const char* kWarnings = "warnings";  // one a line
inline constexpr const char* kCandidateThreshold = "candidate_threshold";
inline constexpr const char* kBestExpert = "best_expert";
inline constexpr const char* kCandidates = "candidates";
inline constexpr const char* kCleanActive = "clean_active";
inline constexpr const char* kCases = "cases";
inline constexpr const char* kSelectedExpertCleanActive = "selected_expert_clean_active";
inline constexpr const char* kColumns = "columns";  // comma-separated column names of a table
inline constexpr const char* kLayer = "layer";
inline constexpr const char* kLayers = "layers";
inline constexpr const char* kTokens = "tokens";
inline constexpr const char* kMultiplier = "multiplier";
inline constexpr const char* kSplitSeed = "split_seed";
inline constexpr const char* kThreshold = "threshold";
inline constexpr const char* kSpecificityMean = "specificity_mean";
inline constexpr const char* kSpecificityCiLow = "specificity_ci_low";
inline constexpr const char* kSpecificityCiHigh = "specificity_ci_high";
}  // namespace attr
}  // namespace moetrace::layout
