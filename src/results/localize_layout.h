#pragma once
// Names in the results file of `moetrace localize` (docs/localize.md "Results file"). Only
// src/results reads and writes them; the writer (the localize pipeline's sink) and the readers
// (report, merge) share these constants.
namespace moetrace::layout::localize {
inline constexpr const char* kRoot = "/localize";
inline constexpr const char* kQuestionIds = "/localize/questions/id";
inline constexpr const char* kQuestionSplit = "/localize/questions/split";  // 0 discovery, 1 validation
inline constexpr const char* kLanguages = "/localize/languages";
inline constexpr const char* kSkipped = "/localize/skipped";
inline constexpr const char* kAsked = "/localize/asked";              // outcome, generated, routing/<stat>
inline constexpr const char* kContrast = "/localize/contrast";        // <field> vectors, top_global, top_per_layer
inline constexpr const char* kConditions = "/localize/conditions";    // <name>/{experts,outcome,generated}
inline constexpr const char* kValidationPairs = "/localize/validation_pairs";
inline constexpr const char* kUnrelated = "/localize/unrelated";      // questions/id, asked/{outcome,generated}
inline constexpr const char* kEffect = "/localize/effect";            // summary records
inline constexpr const char* kEffectByLanguage = "/localize/effect_by_language";  // <lang>/{chosen,popular,random}
inline constexpr const char* kCurve = "/localize/curve";              // n_<N>
inline constexpr const char* kAccuracy = "/localize/accuracy";        // <lang>|overall/{asked,validation_before,validation_after}

// Columns of every outcome matrix ([pairs, kOutcomeColumns]).
inline constexpr int kOutcomeBucket = 0;     // 1 success, 0 failure
inline constexpr int kOutcomeMatch = 1;      // 0 none, 1 prefix, 2 exact
inline constexpr int kOutcomeLogprob = 2;    // best first-token log-probability of an accepted answer
inline constexpr int kOutcomeStopId = 3;     // -1: max_new_tokens ended decoding
inline constexpr int kOutcomeGenerated = 4;  // generated token count
inline constexpr int kOutcomeColumns = 5;
}  // namespace moetrace::layout::localize
