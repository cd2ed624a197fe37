#pragma once
// Held-out statistics of per-case values: mean, fraction positive, a percentile-bootstrap
// interval for the mean and a two-sided sign-flip test of mean != 0. Randomness comes from the
// counter RNG (util/counter_rng.h), so results are a pure function of (values, seed, options).
// Exact definitions (also in docs/statistics.md; tools/reference/stats_reference.py
// re-implements them independently):
//
// Sums are sequential in index order, in double; mean = sum / n.
//
// Bootstrap (B resamples): resample b (0 <= b < B) reads the stream
//   NoiseStream(seed, kBootstrapStreamTag, sample = b); its j-th word W_j (j = 0..n-1) picks
//   index idx_j = (W_j * n) >> 32 (64-bit product; multiply-shift, bias in the index probabilities
//   below n / 2^32). mean_b = (sum_j x[idx_j]) / n.
// Percentile rule (numpy's default "linear", Hyndman & Fan type 7): with a = the B resample means
//   sorted ascending, h = (B - 1) * q, j = floor(h), g = h - j:
//   P(q) = a[j] + g * (a[j+1] - a[j])   (P(q) = a[B-1] when j = B - 1).
//   The interval is [P(0.025), P(0.975)] by default.
//
// Sign-flip test (F flips): S = sum_i x_i. Tie tolerance tau = 1e-12 * sum_i |x_i| (absorbs
//   rounding in the sums). A flip counts when |S'| >= |S| - tau (the same as |mean'| >= |mean|
//   since both divide by n).
//   Random mode: flip f (0 <= f < F) reads NoiseStream(seed, kSignFlipStreamTag, sample = f);
//     s_i = -1 if bit 31 of its word W_i is set, else +1; S'_f = sum_i s_i x_i.
//     p = (1 + #{f : |S'_f| >= |S| - tau}) / (F + 1).
//   Exact mode, used automatically when 2^n <= F (so n <= 13 at the default F = 10000): all 2^n
//     patterns k = 0 .. 2^n - 1, s_i = -1 if bit i of k is set; p = #{k : |S'_k| >= |S| - tau} / 2^n.
//     No randomness; the identity and the all-flipped pattern always count, so p >= 2 / 2^n.
//
// Inputs: empty vectors and non-finite values (NaN, +-inf) are rejected with InputError naming
// the first offending index; callers drop or impute missing cases first and report how many.
#include <cstddef>
#include <cmath>
#include <cstdint>
#include <span>
#include <vector>

#include "results/results_file.h"

namespace moetrace {

// Case-id slot of the RNG streams used here (the key is the caller's seed). ASCII "bootstrp" and
// "signflip"; real case ids never reach these values.
inline constexpr std::uint64_t kBootstrapStreamTag = 0x626f6f7473747270ull;
inline constexpr std::uint64_t kSignFlipStreamTag = 0x7369676e666c6970ull;

inline constexpr std::uint32_t kDefaultBootstrapResamples = 5000;
inline constexpr std::uint32_t kDefaultSignFlips = 10000;

struct StatsOptions {
  std::uint32_t bootstrap_resamples = kDefaultBootstrapResamples;  // B >= 1
  std::uint32_t sign_flips = kDefaultSignFlips;                    // F >= 1
  double ci_low_quantile = 0.025;                                  // in [0, 1]
  double ci_high_quantile = 0.975;                                 // in [0, 1]
};

struct SummaryStats {
  std::size_t n = 0;
  double mean = 0.0;
  double ci_low = 0.0;         // bootstrap percentile interval of the mean
  double ci_high = 0.0;
  double frac_positive = 0.0;  // #{x > 0} / n
  double p_sign_flip = 1.0;    // two-sided, mean != 0
  bool p_exact = false;        // true when the sign-flip p came from full enumeration
};

struct Interval {
  double low = 0.0;
  double high = 0.0;
};

struct SignFlipResult {
  double p = 1.0;
  bool exact = false;
  std::uint64_t count = 0;        // flips (or patterns) with |S'| >= |S| - tau
  std::uint64_t denominator = 0;  // F + 1 (random mode) or 2^n (exact mode)
};

// Throws InputError if `values` is empty or holds a non-finite value; `what` names the caller.
void check_values(std::span<const double> values, const char* what);

double mean(std::span<const double> values);
double fraction_positive(std::span<const double> values);  // strictly > 0

// The rule above on an ascending-sorted, non-empty vector; q in [0, 1].
double percentile_linear(std::span<const double> sorted, double q);

// The B resample means, in resample order (unsorted).
std::vector<double> bootstrap_means(std::span<const double> values, std::uint64_t seed,
                                    std::uint32_t resamples = kDefaultBootstrapResamples);
Interval bootstrap_ci(std::span<const double> values, std::uint64_t seed,
                      std::uint32_t resamples = kDefaultBootstrapResamples, double q_low = 0.025,
                      double q_high = 0.975);

SignFlipResult sign_flip_test(std::span<const double> values, std::uint64_t seed,
                              std::uint32_t flips = kDefaultSignFlips);

// Clustered (block) bootstrap, for values that come in dependent groups (the pairs of one question
// in router-contrast localisation): clusters[i] in [0, C) names value i's cluster, every cluster
// of [0, C) holds at least one value. Resample b reads NoiseStream(seed, kBootstrapStreamTag,
// sample = b); its j-th word W_j (j = 0..C-1) picks cluster k_j = (W_j * C) >> 32;
// mean_b = (sum_j S[k_j]) / (sum_j n[k_j]), S[k] and n[k] the sum (index order) and count of
// cluster k. With every value its own cluster (clusters = 0, 1, ..., n-1) this is exactly
// bootstrap_means. The interval uses the percentile rule above.
std::vector<double> cluster_bootstrap_means(std::span<const double> values, std::span<const std::size_t> clusters,
                                            std::uint64_t seed, std::uint32_t resamples = kDefaultBootstrapResamples);
Interval cluster_bootstrap_ci(std::span<const double> values, std::span<const std::size_t> clusters, std::uint64_t seed,
                              std::uint32_t resamples = kDefaultBootstrapResamples, double q_low = 0.025,
                              double q_high = 0.975);
// The per-cluster sums S[k] (index order within a cluster), k = 0..C-1: e.g. for a sign-flip test
// over clusters. Same checks as above.
std::vector<double> cluster_sums(std::span<const double> values, std::span<const std::size_t> clusters);

// Everything above; one seed serves both (their streams differ by tag).
SummaryStats summarize(std::span<const double> values, std::uint64_t seed,
                       const StatsOptions& options = {});

// How a stored summary record (mean, interval, fraction positive, p) is computed: the one rule of
// both protocols' summaries.
struct SummaryOptions {
  std::uint64_t seed = 0;
  std::uint32_t bootstrap_resamples = kDefaultBootstrapResamples;
  std::uint32_t sign_flips = kDefaultSignFlips;
  bool sign_flip = true;  // false: p = 1 (a share, not a difference tested against zero)
  double empty_p = NAN;   // the p of a record of no values (mean and interval NaN, n = 0)
};
// The record of `values`, NaNs left out. With `clusters` (one per value, e.g. question indices) the
// interval is a cluster bootstrap and the sign flips flip whole clusters' sums; without, every value
// is its own unit (then the record equals `summarize`'s).
SummaryRecord summary_record(const std::string& name, std::span<const double> values, const SummaryOptions& options,
                             std::span<const std::size_t> clusters = {});

}  // namespace moetrace
