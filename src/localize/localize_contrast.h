#pragma once
// Contrast statistics of router-contrast localisation (docs/localize.md, "Contrast statistics"):
// for every (layer, expert), a statistic between the routing values of the (question, language)
// pairs the model answered correctly (success bucket) and the others (failure bucket), a p-value,
// Benjamini-Hochberg q-values over all (layer, expert) pairs, and the top N ranked globally and
// per layer. A pure function of its input and options: the input's pair order, thread counts and
// ranks do not enter (pairs are put in a canonical order first).
//
// Definitions (exact; tools/reference/localize_contrast_reference.py re-implements them):
//
// Canonical order: pairs sorted by (question_id, language), byte-wise. Every sum below runs
//   sequentially in that order, in double.
// mean_success / mean_failure: the mean value over the bucket's pairs.
//
// PairedSignFlip (default). A question is "mixed" when it has pairs in both buckets; mixed
//   questions in id order give d_q = mean over q's success pairs - mean over q's failure pairs.
//   effect = statistic = (sum_q d_q) / n. p: the sign-flip test of docs/statistics.md on the d_q
//   (identical to sign_flip_test(d, seed, sign_flips) of src/protocols/statistics.h: random flips
//   from NoiseStream(seed, 0x7369676e666c6970 "signflip", f), or all 2^n patterns when n < 32 and
//   2^n <= sign_flips). Needs at least one mixed question.
// MannWhitney. x = success values, y = failure values; midranks of the pooled values (exact
//   double ties); U = R_x - n_x (n_x + 1) / 2; effect = U / (n_x n_y) - 0.5 (the AUC minus 1/2).
//   Normal approximation with tie correction and continuity correction:
//   sigma^2 = n_x n_y / 12 * ((N + 1) - sum_t (t^3 - t) / (N (N - 1))), N = n_x + n_y;
//   statistic z = sign(U - n_x n_y / 2) * max(0, |U - n_x n_y / 2| - 0.5) / sigma;
//   p = erfc(|z| / sqrt 2), capped at 1; z = 0 and p = 1 when sigma^2 <= 0. Needs n_x, n_y >= 1.
// Welch. effect = mean_success - mean_failure; sample variances v with n - 1;
//   se^2 = v_x / n_x + v_y / n_y; t = effect / se;
//   df = se^4 / ((v_x / n_x)^2 / (n_x - 1) + (v_y / n_y)^2 / (n_y - 1));
//   p = 2 * StudentT(df).cdf(-|t|) (Boost.Math). When se^2 = 0: t = 0, p = 1 if the means are
//   equal, else t = +-inf, p = 0 (df = 0 in both cases). Needs n_x, n_y >= 2.
// q-values (Benjamini-Hochberg) over all L x E p-values: sorted ascending (ties by index),
//   q_(i) = min(1, min_{j >= i} m p_(j) / j).
// Ranking: score = effect (SuccessHigher), -effect (FailureHigher) or |effect| (Either); higher
//   score first, ties by smaller p, then lower layer, then lower expert. Top N globally (of all
//   L x E) and per layer (of its E), fewer when there are fewer.
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace moetrace::localize {

enum class Bucket : std::uint8_t { Success, Failure };

// One asked (question, language) pair: its bucket and one value per (layer, expert), typically
// the router's softmax probability aggregated over the pair's positions. Any finite value works.
struct ContrastPair {
  std::string question_id;
  std::string language;
  Bucket bucket = Bucket::Failure;
  std::vector<double> values;  // [layers x experts], row-major: values[layer * experts + expert]
};

struct ContrastInput {
  std::int32_t layers = 0;
  std::int32_t experts = 0;
  std::vector<ContrastPair> pairs;
};

enum class ContrastMethod : std::uint8_t { PairedSignFlip, MannWhitney, Welch };
enum class RankDirection : std::uint8_t { SuccessHigher, FailureHigher, Either };

// Config words: "paired_sign_flip", "mann_whitney", "welch"; "success_higher", "failure_higher",
// "either". InputError naming `what` for anything else.
ContrastMethod parse_contrast_method(std::string_view text, std::string_view what);
RankDirection parse_rank_direction(std::string_view text, std::string_view what);
std::string_view contrast_method_name(ContrastMethod m);
std::string_view rank_direction_name(RankDirection d);

inline constexpr std::uint32_t kDefaultContrastSignFlips = 10000;
inline constexpr std::size_t kDefaultTopN = 20;
// The sign-flip streams' case-id slot: the same tag as src/protocols/statistics.h's test.
inline constexpr std::uint64_t kContrastSignFlipStreamTag = 0x7369676e666c6970ull;

struct ContrastOptions {
  ContrastMethod method = ContrastMethod::PairedSignFlip;
  std::uint64_t seed = 0;
  std::uint32_t sign_flips = kDefaultContrastSignFlips;  // >= 1
  RankDirection direction = RankDirection::SuccessHigher;
  std::size_t top_n = kDefaultTopN;  // >= 1
};

struct ExpertContrast {
  std::int32_t layer = 0;
  std::int32_t expert = 0;
  double mean_success = 0.0;
  double mean_failure = 0.0;
  double effect = 0.0;     // see the definitions above
  double statistic = 0.0;  // paired: the mean difference; Mann-Whitney: z; Welch: t
  double df = 0.0;         // Welch only
  double p = 1.0;
  double q = 1.0;
  bool p_exact = false;  // paired: all 2^n sign patterns enumerated
};

struct ContrastResult {
  ContrastMethod method = ContrastMethod::PairedSignFlip;
  std::size_t n_success = 0;           // pairs
  std::size_t n_failure = 0;
  std::size_t n_questions = 0;         // distinct question ids
  std::size_t n_mixed_questions = 0;   // with pairs in both buckets
  std::vector<ExpertContrast> experts;  // all L x E, layer-major (index layer * E + expert)
  std::vector<std::size_t> top_global;  // indices into experts, best first
  std::vector<std::vector<std::size_t>> top_per_layer;  // [layer] -> indices, best first
};

// InputError (naming the pair index, question and language) for: layers or experts < 1, a value
// count other than layers x experts, a non-finite value, an empty question id or language, a
// (question, language) pair given twice, sign_flips or top_n of 0, and too few pairs for the
// method (see above).
ContrastResult contrast_experts(const ContrastInput& input, const ContrastOptions& options);

// Benjamini-Hochberg q-values (definition above); p-values in [0, 1].
std::vector<double> benjamini_hochberg(const std::vector<double>& p);

// The two-sample pieces, on plain vectors (summed in the given order).
struct TestResult {
  double effect = 0.0, statistic = 0.0, df = 0.0, p = 1.0;
};
TestResult mann_whitney(const std::vector<double>& x, const std::vector<double>& y);
TestResult welch(const std::vector<double>& x, const std::vector<double>& y);

}  // namespace moetrace::localize
