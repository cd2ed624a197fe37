// Held-out statistics: closed-form facts (hand-counted sign-flip enumerations, percentile rule,
// constant vectors, all-zero values), symmetries, the documented RNG mapping, and input checks.
// The comparison with an independent numpy implementation is test_statistics_reference.
#define BOOST_TEST_MODULE statistics
#include <boost/test/unit_test.hpp>

#include <algorithm>
#include <cmath>
#include <limits>
#include <string>
#include <vector>

#include "protocols/statistics.h"
#include "util/counter_rng.h"
#include "util/error.h"

using namespace moetrace;
using V = std::vector<double>;

namespace {
bool close(double a, double b, double tol = 1e-12) { return std::fabs(a - b) <= tol * std::max(1.0, std::fabs(b)); }
}  // namespace

BOOST_AUTO_TEST_CASE(mean_and_fraction_positive) {
  BOOST_TEST(mean(V{1.0, 2.0, 3.0, 6.0}) == 3.0);
  BOOST_TEST(fraction_positive(V{1.0, 0.0, -2.0, 3.0}) == 0.5);  // 0 is not positive
  BOOST_TEST(fraction_positive(V{0.0, 0.0}) == 0.0);
  BOOST_TEST(fraction_positive(V{-0.0, 1e-300}) == 0.5);
}

BOOST_AUTO_TEST_CASE(percentile_rule_is_type7_linear) {
  const V a{10, 20, 30, 40, 50};
  BOOST_TEST(percentile_linear(a, 0.0) == 10.0);
  BOOST_TEST(percentile_linear(a, 1.0) == 50.0);
  BOOST_TEST(percentile_linear(a, 0.5) == 30.0);
  BOOST_TEST(close(percentile_linear(a, 0.025), 11.0));  // h = 0.1
  BOOST_TEST(close(percentile_linear(a, 0.975), 49.0));  // h = 3.9
  BOOST_TEST(percentile_linear(V{1, 2, 3, 4}, 0.5) == 2.5);
  BOOST_TEST(percentile_linear(V{7.5}, 0.3) == 7.5);
  BOOST_CHECK_THROW(percentile_linear(a, 1.5), InputError);
  BOOST_CHECK_THROW(percentile_linear(V{}, 0.5), InputError);
}

BOOST_AUTO_TEST_CASE(bootstrap_follows_documented_stream_mapping) {
  const V x{0.5, -1.25, 3.0, 2.0, 0.75, -0.5, 1.0};
  const std::uint64_t seed = 0x1234567890abcdefull;
  const V m = bootstrap_means(x, seed, 50);
  BOOST_REQUIRE(m.size() == 50u);
  for (std::uint32_t b = 0; b < 50; ++b) {
    NoiseStream s(seed, kBootstrapStreamTag, b);
    double sum = 0;
    for (std::size_t j = 0; j < x.size(); ++j) sum += x[(std::uint64_t{s.next_u32()} * x.size()) >> 32];
    BOOST_TEST(m[b] == sum / x.size());
  }
  BOOST_TEST(kBootstrapStreamTag == 0x626f6f7473747270ull);  // "bootstrp"
  BOOST_TEST(kSignFlipStreamTag == 0x7369676e666c6970ull);   // "signflip"
}

BOOST_AUTO_TEST_CASE(bootstrap_of_constant_is_degenerate) {
  const Interval ci = bootstrap_ci(V(17, -3.25), 5);  // dyadic: every resample mean is exact
  BOOST_TEST(ci.low == -3.25);
  BOOST_TEST(ci.high == -3.25);
  const Interval ci01 = bootstrap_ci(V(10, 0.1), 5);
  BOOST_TEST(close(ci01.low, 0.1, 1e-15));
  BOOST_TEST(close(ci01.high, 0.1, 1e-15));
  const Interval one = bootstrap_ci(V{2.5}, 9);
  BOOST_TEST(one.low == 2.5);
  BOOST_TEST(one.high == 2.5);
}

BOOST_AUTO_TEST_CASE(bootstrap_properties) {
  V x;
  NoiseStream g(1, 1, 1);
  for (int i = 0; i < 60; ++i) x.push_back(0.3 + g.next_normal());
  const Interval ci = bootstrap_ci(x, 42);
  const double mx = mean(x);
  BOOST_TEST(ci.low < mx);
  BOOST_TEST(ci.high > mx);
  // Width near 2 * 1.96 * sd / sqrt(n) (sd ~ 1): loose sanity bounds.
  BOOST_TEST(ci.high - ci.low > 0.3);
  BOOST_TEST(ci.high - ci.low < 0.8);
  // Reproducible; seed matters.
  const Interval again = bootstrap_ci(x, 42);
  BOOST_TEST(again.low == ci.low);
  BOOST_TEST(again.high == ci.high);
  BOOST_TEST(bootstrap_ci(x, 43).low != ci.low);
  // Symmetry: negating the values mirrors the interval (same resample indices).
  V neg(x);
  for (auto& v : neg) v = -v;
  const Interval cn = bootstrap_ci(neg, 42);
  BOOST_TEST(close(cn.low, -ci.high));
  BOOST_TEST(close(cn.high, -ci.low));
  // Shift equivariance.
  V shifted(x);
  for (auto& v : shifted) v += 10.0;
  const Interval cs = bootstrap_ci(shifted, 42);
  BOOST_TEST(close(cs.low, ci.low + 10.0));
  BOOST_TEST(close(cs.high, ci.high + 10.0));
  // The interval is the percentiles of the sorted resample means.
  V m = bootstrap_means(x, 42);
  BOOST_TEST(m.size() == static_cast<std::size_t>(kDefaultBootstrapResamples));
  std::sort(m.begin(), m.end());
  BOOST_TEST(ci.low == percentile_linear(m, 0.025));
  BOOST_TEST(ci.high == percentile_linear(m, 0.975));
}

BOOST_AUTO_TEST_CASE(sign_flip_exact_hand_counted) {
  // S = 9. |S'| = |S - 2 T| >= 9 where T = sum of flipped values: T <= 0 or T >= 9.
  // T <= 0: {}, {-1}, {-1, 0.5}; T >= 9: their complements. 6 of 32 patterns.
  SignFlipResult r = sign_flip_test(V{3.0, -1.0, 2.5, 0.5, 4.0}, 1);
  BOOST_TEST(r.exact);
  BOOST_TEST(r.count == 6u);
  BOOST_TEST(r.denominator == 32u);
  BOOST_TEST(r.p == 6.0 / 32.0);
  // All the same sign: only the identity and the all-flipped pattern reach |S|.
  r = sign_flip_test(V{1.0, 2.0, 3.0}, 1);
  BOOST_TEST(r.p == 2.0 / 8.0);
  BOOST_TEST(sign_flip_test(V{1.0, 2.0, 3.0, 4.0}, 1).p == 2.0 / 16.0);
  // Three +-1 terms always sum to an odd number, so |S'| >= |S| = 1 always: p = 1.
  BOOST_TEST(sign_flip_test(V{1.0, 1.0, -1.0}, 1).p == 1.0);
  // S = 0: every pattern counts.
  BOOST_TEST(sign_flip_test(V{1.0, -1.0}, 1).p == 1.0);
  // Exact mode uses no randomness.
  BOOST_TEST(sign_flip_test(V{3.0, -1.0, 2.5, 0.5, 4.0}, 999).p == 6.0 / 32.0);
  // Ties within rounding count: 0.1 + 0.2 - 0.3 is not exactly 0 in double.
  BOOST_TEST(sign_flip_test(V{0.1, 0.2, -0.3}, 1).p == 1.0);
}

BOOST_AUTO_TEST_CASE(sign_flip_mode_switch) {
  V x(13);
  for (int i = 0; i < 13; ++i) x[i] = 0.1 * (i - 4);
  BOOST_TEST(sign_flip_test(x, 1, 8192).exact);  // 2^13 <= 8192
  const SignFlipResult r = sign_flip_test(x, 1, 8191);
  BOOST_TEST(!r.exact);
  BOOST_TEST(r.denominator == 8192u);
  // Random mode estimates the exact p: within 5 binomial standard errors.
  const double pe = sign_flip_test(x, 1, 8192).p;
  BOOST_TEST(std::fabs(r.p - pe) < 5.0 * std::sqrt(pe * (1 - pe) / 8191.0) + 1.0 / 8192.0);
  // Documented random-mode formula against a direct recomputation.
  double sum_x = 0, sum_abs = 0;
  for (double v : x) sum_x += v, sum_abs += std::fabs(v);
  const double thr = std::fabs(sum_x) - 1e-12 * sum_abs;
  std::uint64_t count = 0;
  for (std::uint32_t f = 0; f < 8191; ++f) {
    NoiseStream s(1, kSignFlipStreamTag, f);
    double sum = 0;
    for (double v : x) sum += (s.next_u32() >> 31) ? -v : v;
    count += std::fabs(sum) >= thr ? 1 : 0;
  }
  BOOST_TEST(r.count == count);
  BOOST_TEST(r.p == (1.0 + count) / 8192.0);
}

BOOST_AUTO_TEST_CASE(sign_flip_closed_forms_random_mode) {
  // All zero: every flip ties, p = (1 + F) / (F + 1) = 1 (and 1 in exact mode).
  BOOST_TEST(sign_flip_test(V(20, 0.0), 3).p == 1.0);
  BOOST_TEST(sign_flip_test(V(5, 0.0), 3).p == 1.0);
  // 100 positive values: a flip reaches |S| only if all signs agree (prob 2^-99): p = 1/(F+1).
  V pos(100);
  for (int i = 0; i < 100; ++i) pos[i] = 1.0 + 0.01 * i;
  BOOST_TEST(sign_flip_test(pos, 3).p == 1.0 / 10001.0);
  // Symmetry: negating or scaling by 2 (exact) leaves p unchanged, in both modes.
  V x{0.4, -0.2, 0.9, 0.1, -0.3, 0.5, 0.05, -0.6, 0.7, 0.2, 0.3, -0.1, 0.25, 0.6, -0.45, 0.35};
  V neg(x), dbl(x);
  for (auto& v : neg) v = -v;
  for (auto& v : dbl) v *= 2.0;
  for (std::uint32_t F : {10000u, 100000u}) {  // 2^16 = 65536: random, then exact
    const double p = sign_flip_test(x, 11, F).p;
    BOOST_TEST(sign_flip_test(neg, 11, F).p == p);
    BOOST_TEST(sign_flip_test(dbl, 11, F).p == p);
  }
  BOOST_TEST(sign_flip_test(x, 11, 100000).exact);
}

BOOST_AUTO_TEST_CASE(summarize_combines_parts) {
  V x;
  NoiseStream g(2, 2, 2);
  for (int i = 0; i < 30; ++i) x.push_back(0.2 + g.next_normal());
  StatsOptions o;
  o.bootstrap_resamples = 1000;
  o.sign_flips = 2000;
  const SummaryStats s = summarize(x, 77, o);
  BOOST_TEST(s.n == 30u);
  BOOST_TEST(s.mean == mean(x));
  BOOST_TEST(s.frac_positive == fraction_positive(x));
  const Interval ci = bootstrap_ci(x, 77, 1000);
  BOOST_TEST(s.ci_low == ci.low);
  BOOST_TEST(s.ci_high == ci.high);
  BOOST_TEST(s.p_sign_flip == sign_flip_test(x, 77, 2000).p);
  BOOST_TEST(!s.p_exact);
  const SummaryStats d = summarize(x, 77);  // defaults: 5000 resamples, 10000 flips
  BOOST_TEST(d.ci_low == bootstrap_ci(x, 77, 5000).low);
  BOOST_TEST(d.p_sign_flip == sign_flip_test(x, 77, 10000).p);
}

BOOST_AUTO_TEST_CASE(non_finite_and_empty_inputs_are_rejected) {
  const double nan = std::numeric_limits<double>::quiet_NaN();
  const double inf = std::numeric_limits<double>::infinity();
  try {
    summarize(V{1.0, 2.0, nan, 3.0}, 1);
    BOOST_FAIL("NaN accepted");
  } catch (const InputError& e) {
    const std::string msg = e.what();
    BOOST_TEST(msg.find("value 2 of 4") != std::string::npos, msg);
    BOOST_TEST(msg.find("nan") != std::string::npos, msg);
  }
  BOOST_CHECK_THROW(mean(V{inf}), InputError);
  BOOST_CHECK_THROW(fraction_positive(V{nan}), InputError);
  BOOST_CHECK_THROW(bootstrap_ci(V{1.0, -inf}, 1), InputError);
  BOOST_CHECK_THROW(sign_flip_test(V{nan, 1.0}, 1), InputError);
  BOOST_CHECK_THROW(summarize(V{}, 1), InputError);
  BOOST_CHECK_THROW(mean(V{}), InputError);
  BOOST_CHECK_THROW(bootstrap_ci(V{1.0}, 1, 0), InputError);
  BOOST_CHECK_THROW(sign_flip_test(V{1.0}, 1, 0), InputError);
  BOOST_CHECK_THROW(bootstrap_ci(V{1.0}, 1, 10, -0.1, 0.9), InputError);
}

// Clustered bootstrap: singleton clusters reproduce the plain bootstrap bit for bit; a resample's
// mean is the pooled mean of the drawn clusters (checked by redrawing with the documented RNG
// mapping); identical clusters give a degenerate interval; bad labels are rejected.
BOOST_AUTO_TEST_CASE(cluster_bootstrap_definition) {
  const V x{0.5, -1.0, 2.0, 3.5, 0.0, 1.25, -2.5};
  std::vector<std::size_t> single(x.size());
  for (std::size_t i = 0; i < x.size(); ++i) single[i] = i;
  BOOST_TEST(cluster_bootstrap_means(x, single, 17, 300) == bootstrap_means(x, 17, 300));
  const Interval a = cluster_bootstrap_ci(x, single, 17, 300), b = bootstrap_ci(x, 17, 300);
  BOOST_TEST(a.low == b.low);
  BOOST_TEST(a.high == b.high);

  const std::vector<std::size_t> cl{2, 0, 2, 1, 0, 2, 1};  // sizes 2, 2, 3
  const V sums = cluster_sums(x, cl);
  BOOST_REQUIRE_EQUAL(sums.size(), 3u);
  BOOST_TEST(sums[0] == -1.0 + 0.0);
  BOOST_TEST(sums[1] == 3.5 + -2.5);
  BOOST_TEST(sums[2] == 0.5 + 2.0 + 1.25);
  const V counts{2, 2, 3};
  const V m = cluster_bootstrap_means(x, cl, 9, 50);
  for (std::uint32_t r = 0; r < 50; ++r) {
    NoiseStream s(9, kBootstrapStreamTag, r);
    double sum = 0, n = 0;
    for (int j = 0; j < 3; ++j) {
      const std::uint64_t k = (static_cast<std::uint64_t>(s.next_u32()) * 3) >> 32;
      sum += sums[k];
      n += counts[k];
    }
    BOOST_TEST(m[r] == sum / n);
  }
  // Two clusters with the same mean: every resample has that mean.
  const Interval same = cluster_bootstrap_ci(V{1, 0, 1, 0}, std::vector<std::size_t>{0, 0, 1, 1}, 3, 100);
  BOOST_TEST(same.low == 0.5);
  BOOST_TEST(same.high == 0.5);

  BOOST_CHECK_THROW(cluster_bootstrap_means(x, std::vector<std::size_t>{0, 1}, 1, 10), InputError);  // size
  BOOST_CHECK_THROW(cluster_bootstrap_means(V{1, 2}, std::vector<std::size_t>{0, 2}, 1, 10), InputError);  // gap
  BOOST_CHECK_THROW(cluster_bootstrap_means(V{}, std::vector<std::size_t>{}, 1, 10), InputError);
  BOOST_CHECK_THROW(cluster_bootstrap_means(V{1, NAN}, std::vector<std::size_t>{0, 1}, 1, 10), InputError);
  BOOST_CHECK_THROW(cluster_bootstrap_means(V{1, 2}, std::vector<std::size_t>{0, 1}, 1, 0), InputError);
}
