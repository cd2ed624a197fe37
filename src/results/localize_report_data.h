#pragma once
// Everything `moetrace report` shows for a results file of `moetrace localize` (layout:
// docs/localize.md "Results file", names in results/localize_layout.h), read in one place: only
// src/results knows the layout; the text report and the JSON / CSV exports render this struct.
// A stage that is absent (an unfinished run) is left empty; a dataset missing from a stage that is
// there, or one whose shape or values contradict the rest of the file, is an InputError (exit 2)
// naming the file and the dataset.
#include <cmath>
#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "results/report_provenance.h"
#include "results/results_file.h"

namespace moetrace {

// True when the file at `path` holds the group /localize (a `moetrace localize` file).
bool is_localize_file(const std::string& path);

struct LocalizeExpert {
  int layer = 0, expert = 0;
  bool operator==(const LocalizeExpert&) const = default;
};

// Bucket sizes of one language over all asked pairs (from /localize/asked/outcome).
struct LocalizeBuckets {
  std::string language;
  std::int64_t pairs = 0, success = 0, failure = 0;  // pairs: rows asked (done)
  double accuracy() const { return pairs > 0 ? static_cast<double>(success) / static_cast<double>(pairs) : NAN; }
};

// One (layer, expert) of the contrast with its statistics (discovery pairs).
struct LocalizeContrastRow {
  int rank = 0;  // 1-based: within the global ranking, or within its layer (per_layer)
  LocalizeExpert at;
  double mean_success = NAN, mean_failure = NAN, effect = NAN, statistic = NAN, df = NAN, p = NAN, q = NAN;
  bool chosen = false;  // in the deactivated (chosen) set
};

struct LocalizeCondition {
  std::string name;                     // chosen, popular, random_<d>, curve_<N>, unrelated_after
  std::vector<LocalizeExpert> experts;  // the deactivated set
  std::int64_t rows_done = 0, rows = 0;  // re-asked rows of its outcome matrix (0 when absent)
};

// Summaries of one language (or "overall"): accuracy records and, per language, turned-wrong shares.
struct LocalizeLanguageSummary {
  std::string language;  // or "overall"
  SummaryRecord asked, validation_before, validation_after;             // /localize/accuracy/<lang>
  SummaryRecord chosen, popular, random;                                // /localize/effect_by_language/<lang>
  bool has_effect = false;
};

struct LocalizeCurvePoint {
  std::int64_t n = 0;  // experts deactivated (global top n)
  SummaryRecord share;  // turned-wrong share
};

struct LocalizeReportData {
  std::string path;
  ReportProvenance provenance;
  // /localize attributes
  std::int64_t layers = 0, experts = 0, top_k = 0;
  std::string statistic, method, direction, selection, bucket, match, bootstrap_unit;
  // questions and pairs
  std::vector<std::string> languages, question_ids;
  std::vector<int> question_split;  // 0 discovery, 1 validation
  std::map<std::string, int> skipped;  // reason -> count
  bool has_asked = false;
  std::vector<LocalizeBuckets> buckets;  // per language, then "overall" last
  // contrast (discovery pairs)
  bool has_contrast = false;
  std::int64_t n_success = 0, n_failure = 0, contrast_questions = 0, mixed_questions = 0;
  std::vector<double> mean_success, mean_failure, effect, statistic_value, df, p, q;  // [layers*experts]
  std::vector<int> top_global;     // flat indices, best first
  std::vector<int> top_per_layer;  // [layers*top_n] flat indices, row l within layer l, -1 padded
  std::int64_t top_n = 0;          // top_per_layer.size() / layers
  std::vector<LocalizeContrastRow> top_experts;  // the chosen set's rows, in ranking order
  // deactivation
  std::vector<int> validation_pairs;
  std::vector<LocalizeCondition> conditions;  // chosen, popular, random_<d> (by d), curve_<N> (by N), unrelated_after
  std::vector<SummaryRecord> effect_records;  // /localize/effect, file order
  std::vector<LocalizeLanguageSummary> by_language;  // languages in order, then "overall"
  std::vector<LocalizeCurvePoint> curve;             // ascending n
  // specificity
  std::int64_t unrelated_questions = 0, unrelated_pairs = 0, unrelated_correct_before = 0;

  const SummaryRecord* effect_record(const std::string& name) const;
  const LocalizeCondition* condition(const std::string& name) const;
  std::size_t random_draws() const;
};

LocalizeReportData read_localize_report_data(const std::string& path);

}  // namespace moetrace
