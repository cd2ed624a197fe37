#pragma once
// The results file of `moetrace localize` (docs/localize.md "Results file"; names in
// localize_layout.h): the only code that knows where the localisation protocol's datasets live.
// Per-pair tables are ResultsFile matrices (float64, a done flag per row), filled by the row
// executors through the names below; everything else is written here from plain values, and is a
// pure function of those tables, so a resumed or distributed run writes the same bytes.
#include <cstdint>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "results/localize_layout.h"
#include "results/results_file.h"

namespace moetrace {

// Names of the summary records (ResultsFile::write_summary): in /localize/effect (all but the
// accuracy ones), /localize/effect_by_language/<lang> (chosen, popular, random),
// /localize/accuracy/<lang> (asked, validation_*), /localize/curve (curve_point).
namespace localize_summary {
inline constexpr const char* kChosen = "chosen";
inline constexpr const char* kPopular = "popular";
inline constexpr const char* kRandom = "random";
inline constexpr const char* kChosenMinusRandom = "chosen_minus_random";
inline constexpr const char* kChosenMinusPopular = "chosen_minus_popular";
inline constexpr const char* kChosenTurnedRight = "chosen_turned_right";
inline constexpr const char* kPopularTurnedRight = "popular_turned_right";
inline constexpr const char* kRandomTurnedRight = "random_turned_right";
inline constexpr const char* kUnrelatedTurnedWrong = "unrelated_turned_wrong";
inline constexpr const char* kAsked = "asked";
inline constexpr const char* kValidationBefore = "validation_before";
inline constexpr const char* kValidationAfter = "validation_after";
inline constexpr const char* kCurvePrefix = "n_";
inline std::string curve_point(std::size_t n) { return kCurvePrefix + std::to_string(n); }
}  // namespace localize_summary

// The run summary stored as attributes of /localize.
struct LocalizeRunInfo {
  std::int64_t layers = 0, experts = 0, top_k = 0;
  std::string statistic, method, direction, selection, bucket, match, bootstrap_unit;
};

struct LocalizeSkips {
  std::vector<std::string> ids;      // "" when the id could not be read
  std::vector<std::int64_t> lines;   // 1-based line in the question file
  std::vector<std::string> reasons;  // the full message
  std::vector<std::pair<std::string, std::int64_t>> counts;  // problem name -> count (all skipped, not only the listed)
};

// One contrast vector per field, [layers x experts] each.
struct LocalizeContrastTable {
  std::vector<double> mean_success, mean_failure, effect, statistic, df, p, q;
  std::int64_t n_success = 0, n_failure = 0, n_questions = 0, n_mixed_questions = 0;
  std::vector<int> top_global;     // flat indices layer * experts + expert, best first
  std::vector<int> top_per_layer;  // [layers x top_n], -1 padded
  std::int64_t top_n = 0;
};

// One asked pair's answer as stored in a row of an outcome table and its generated-token table.
struct StoredOutcome {
  bool success = false;
  int match = 0;              // 0 none, 1 prefix, 2 exact
  double answer_logprob = 0;  // best first-token log-probability of an accepted answer
  int stop_id = -1;           // -1: max_new_tokens ended decoding
  std::vector<int> generated;
};

// How one pair's decoding ended, as a per-pair table stores it (its outcome row).
struct StoredDecode {
  bool done = false;   // the row is computed (else the other fields mean nothing)
  int generated = 0;   // tokens generated, the stop token excluded
  bool stopped = false;  // a stop token ended decoding (else max_new_tokens did)
};

// What a run's per-pair tables record of decoding, for `moetrace plan` (the engine work a pair took
// depends on when its decoding stopped): every outcome table's rows, in row order. A table the
// file lacks is absent (an unfinished run). InputError (exit 2) naming the file and dataset for a
// file that is not a localize results file, or an outcome row with impossible values.
struct LocalizeDecisions {
  std::string path;
  std::string config_text;                 // the config the run stored (/provenance)
  std::vector<StoredDecode> asked;         // /localize/asked/outcome: every pair, question-major
  std::map<std::string, std::vector<StoredDecode>> conditions;  // /localize/conditions/<name>/outcome (unrelated_after too)
  std::vector<StoredDecode> unrelated;     // /localize/unrelated/asked/outcome
  bool has_asked = false, has_unrelated = false;
};
LocalizeDecisions read_localize_decisions(const std::string& path);

class LocalizeResults {
 public:
  explicit LocalizeResults(ResultsFile& file) : file_(file) {}
  ResultsFile& file() { return file_; }

  // The row encoding of the outcome tables: kOutcomeColumns outcome columns, then (the generated
  // table) max_new_tokens token ids, -1 past the generated ones.
  static constexpr int kOutcomeWidth = layout::localize::kOutcomeColumns;
  static std::vector<double> encode_outcome(const StoredOutcome& o, int max_new_tokens);
  // `row` holds kOutcomeWidth + max_new_tokens values, as encode_outcome wrote them.
  static StoredOutcome decode_outcome(const double* row, int max_new_tokens);
  // Whether the outcome row `row` is a success (bucket 1).
  static bool success(const double* row) { return row[layout::localize::kOutcomeBucket] == 1.0; }

  // The row tables of a finished run (estimate_results_bytes): the asked table's outcome, generated
  // and `routing_statistics` routing matrices of layers x experts; per condition its outcome and
  // generated tables over the validation pairs; the unrelated pairs' before and after (when any).
  static std::vector<TableShape> table_shapes(std::uint64_t pairs, std::uint64_t validation_pairs, std::uint64_t conditions,
                                              std::uint64_t unrelated_pairs, int max_new_tokens, int layers, int experts,
                                              int routing_statistics);

  // Condition names (/localize/conditions/<name>).
  static std::string chosen_condition() { return "chosen"; }
  static std::string popular_condition() { return "popular"; }
  static std::string random_condition(std::size_t draw) { return "random_" + std::to_string(draw); }
  static std::string curve_condition(std::size_t n) { return "curve_" + std::to_string(n); }
  static std::string unrelated_condition() { return "unrelated_after"; }

  // Row tables (ResultsFile matrices), by name.
  static std::string asked_outcome();
  static std::string asked_generated();
  static std::string asked_routing(const std::string& statistic);
  static std::string condition_outcome(const std::string& condition);
  static std::string condition_generated(const std::string& condition);
  static std::string unrelated_outcome();
  static std::string unrelated_generated();
  // Summary groups (ResultsFile::write_summary).
  static std::string effect_group();
  static std::string effect_by_language_group(const std::string& language);
  static std::string curve_group();
  static std::string accuracy_group(const std::string& language_or_overall);

  void write_run_info(const LocalizeRunInfo& info);
  void write_questions(const std::vector<std::string>& ids, const std::vector<std::string>& languages,
                       const LocalizeSkips& skips);
  void write_split(const std::vector<int>& split);  // per question: 0 discovery, 1 validation
  void write_contrast(const LocalizeContrastTable& t);
  void write_validation_pairs(const std::vector<int>& rows);
  void write_condition_experts(const std::string& condition, const std::vector<std::pair<int, int>>& experts);
  void write_unrelated_questions(const std::vector<std::string>& ids);
  void write_summary(const std::string& group, const SummaryRecord& record) { file_.write_summary(group, record); }

 private:
  ResultsFile& file_;
};

}  // namespace moetrace
