#include "protocols/statistics.h"

#include <map>

#include <algorithm>
#include <cmath>

#include "util/counter_rng.h"
#include "util/error.h"

namespace moetrace {

namespace {

double sequential_sum(std::span<const double> v) {
  double s = 0.0;
  for (double x : v) s += x;
  return s;
}

void check_quantile(double q, const char* what) {
  if (!(q >= 0.0 && q <= 1.0)) fail_input("{}: quantile {} is outside [0, 1]", what, q);
}

}  // namespace

void check_values(std::span<const double> values, const char* what) {
  if (values.empty()) fail_input("{}: no values (empty vector)", what);
  if (values.size() > 0xffffffffull) fail_input("{}: {} values, at most 2^32-1 supported", what, values.size());
  for (std::size_t i = 0; i < values.size(); ++i) {
    if (!std::isfinite(values[i])) {
      fail_input("{}: value {} of {} is {} (non-finite values are rejected; drop or impute them "
                 "first and report how many)",
                 what, i, values.size(), values[i]);
    }
  }
}

double mean(std::span<const double> values) {
  check_values(values, "mean");
  return sequential_sum(values) / static_cast<double>(values.size());
}

double fraction_positive(std::span<const double> values) {
  check_values(values, "fraction_positive");
  std::size_t k = 0;
  for (double x : values) k += x > 0.0 ? 1 : 0;
  return static_cast<double>(k) / static_cast<double>(values.size());
}

double percentile_linear(std::span<const double> sorted, double q) {
  if (sorted.empty()) fail_input("percentile_linear: empty vector");
  check_quantile(q, "percentile_linear");
  const std::size_t B = sorted.size();
  const double h = static_cast<double>(B - 1) * q;
  const double jf = std::floor(h);
  const auto j = static_cast<std::size_t>(jf);
  if (j + 1 >= B) return sorted[B - 1];
  const double g = h - jf;
  return sorted[j] + g * (sorted[j + 1] - sorted[j]);
}

std::vector<double> bootstrap_means(std::span<const double> values, std::uint64_t seed,
                                    std::uint32_t resamples) {
  check_values(values, "bootstrap");
  if (resamples == 0) fail_input("bootstrap: number of resamples must be at least 1");
  const std::uint64_t n = values.size();
  const double dn = static_cast<double>(n);
  std::vector<double> means(resamples);
  for (std::uint32_t b = 0; b < resamples; ++b) {
    NoiseStream s(seed, kBootstrapStreamTag, b);
    double sum = 0.0;
    for (std::uint64_t j = 0; j < n; ++j) {
      const std::uint64_t idx = (static_cast<std::uint64_t>(s.next_u32()) * n) >> 32;
      sum += values[idx];
    }
    means[b] = sum / dn;
  }
  return means;
}

Interval bootstrap_ci(std::span<const double> values, std::uint64_t seed, std::uint32_t resamples,
                      double q_low, double q_high) {
  check_quantile(q_low, "bootstrap_ci");
  check_quantile(q_high, "bootstrap_ci");
  std::vector<double> m = bootstrap_means(values, seed, resamples);
  std::sort(m.begin(), m.end());
  return {percentile_linear(m, q_low), percentile_linear(m, q_high)};
}

namespace {

struct Clusters {
  std::vector<double> sum;
  std::vector<double> count;
};

Clusters cluster_totals(std::span<const double> values, std::span<const std::size_t> clusters, const char* what) {
  check_values(values, what);
  if (clusters.size() != values.size())
    fail_input("{}: {} cluster labels for {} values", what, clusters.size(), values.size());
  const std::size_t C = *std::max_element(clusters.begin(), clusters.end()) + 1;
  if (C > values.size()) fail_input("{}: cluster label {} but only {} values (labels must be 0..C-1, each used)", what, C - 1, values.size());
  Clusters c{std::vector<double>(C, 0.0), std::vector<double>(C, 0.0)};
  for (std::size_t i = 0; i < values.size(); ++i) {
    c.sum[clusters[i]] += values[i];
    c.count[clusters[i]] += 1.0;
  }
  for (std::size_t k = 0; k < C; ++k)
    if (c.count[k] == 0) fail_input("{}: cluster {} of 0..{} has no value (labels must be 0..C-1, each used)", what, k, C - 1);
  return c;
}

}  // namespace

std::vector<double> cluster_bootstrap_means(std::span<const double> values, std::span<const std::size_t> clusters,
                                            std::uint64_t seed, std::uint32_t resamples) {
  const Clusters c = cluster_totals(values, clusters, "cluster bootstrap");
  if (resamples == 0) fail_input("cluster bootstrap: number of resamples must be at least 1");
  const std::uint64_t C = c.sum.size();
  std::vector<double> means(resamples);
  for (std::uint32_t b = 0; b < resamples; ++b) {
    NoiseStream s(seed, kBootstrapStreamTag, b);
    double sum = 0.0, count = 0.0;
    for (std::uint64_t j = 0; j < C; ++j) {
      const std::uint64_t k = (static_cast<std::uint64_t>(s.next_u32()) * C) >> 32;
      sum += c.sum[k];
      count += c.count[k];
    }
    means[b] = sum / count;
  }
  return means;
}

Interval cluster_bootstrap_ci(std::span<const double> values, std::span<const std::size_t> clusters, std::uint64_t seed,
                              std::uint32_t resamples, double q_low, double q_high) {
  check_quantile(q_low, "cluster_bootstrap_ci");
  check_quantile(q_high, "cluster_bootstrap_ci");
  std::vector<double> m = cluster_bootstrap_means(values, clusters, seed, resamples);
  std::sort(m.begin(), m.end());
  return {percentile_linear(m, q_low), percentile_linear(m, q_high)};
}

std::vector<double> cluster_sums(std::span<const double> values, std::span<const std::size_t> clusters) {
  return cluster_totals(values, clusters, "cluster sums").sum;
}

SignFlipResult sign_flip_test(std::span<const double> values, std::uint64_t seed, std::uint32_t flips) {
  check_values(values, "sign_flip_test");
  if (flips == 0) fail_input("sign_flip_test: number of flips must be at least 1");
  const std::size_t n = values.size();
  double abs_total = 0.0;
  for (double x : values) abs_total += std::fabs(x);
  const double threshold = std::fabs(sequential_sum(values)) - 1e-12 * abs_total;

  SignFlipResult r;
  if (n < 32 && (std::uint64_t{1} << n) <= flips) {
    const std::uint64_t patterns = std::uint64_t{1} << n;
    for (std::uint64_t k = 0; k < patterns; ++k) {
      double s = 0.0;
      for (std::size_t i = 0; i < n; ++i) s += ((k >> i) & 1) ? -values[i] : values[i];
      r.count += std::fabs(s) >= threshold ? 1 : 0;
    }
    r.exact = true;
    r.denominator = patterns;
    r.p = static_cast<double>(r.count) / static_cast<double>(patterns);
    return r;
  }
  for (std::uint32_t f = 0; f < flips; ++f) {
    NoiseStream stream(seed, kSignFlipStreamTag, f);
    double s = 0.0;
    for (std::size_t i = 0; i < n; ++i) s += (stream.next_u32() >> 31) ? -values[i] : values[i];
    r.count += std::fabs(s) >= threshold ? 1 : 0;
  }
  r.exact = false;
  r.denominator = std::uint64_t{flips} + 1;
  r.p = static_cast<double>(r.count + 1) / static_cast<double>(r.denominator);
  return r;
}

SummaryStats summarize(std::span<const double> values, std::uint64_t seed, const StatsOptions& options) {
  check_values(values, "summarize");
  SummaryStats out;
  out.n = values.size();
  out.mean = mean(values);
  out.frac_positive = fraction_positive(values);
  const Interval ci = bootstrap_ci(values, seed, options.bootstrap_resamples, options.ci_low_quantile,
                                   options.ci_high_quantile);
  out.ci_low = ci.low;
  out.ci_high = ci.high;
  const SignFlipResult sf = sign_flip_test(values, seed, options.sign_flips);
  out.p_sign_flip = sf.p;
  out.p_exact = sf.exact;
  return out;
}

SummaryRecord summary_record(const std::string& name, std::span<const double> values, const SummaryOptions& o,
                             std::span<const std::size_t> clusters) {
  std::vector<double> v;
  std::vector<std::size_t> unit;  // dense cluster indices, in order of first appearance
  std::map<std::size_t, std::size_t> dense;
  for (std::size_t i = 0; i < values.size(); ++i) {
    if (std::isnan(values[i])) continue;
    v.push_back(values[i]);
    if (!clusters.empty()) unit.push_back(dense.try_emplace(clusters[i], dense.size()).first->second);
  }
  SummaryRecord r{name, static_cast<int>(v.size()), NAN, NAN, NAN, NAN, o.empty_p};
  if (v.empty()) return r;
  r.mean = mean(v);
  r.frac_positive = fraction_positive(v);
  const Interval ci = unit.empty() ? bootstrap_ci(v, o.seed, o.bootstrap_resamples)
                                   : cluster_bootstrap_ci(v, unit, o.seed, o.bootstrap_resamples);
  r.ci_low = ci.low;
  r.ci_high = ci.high;
  r.p_value = !o.sign_flip ? 1.0 : sign_flip_test(unit.empty() ? v : cluster_sums(v, unit), o.seed, o.sign_flips).p;
  return r;
}

}  // namespace moetrace
