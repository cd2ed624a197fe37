#include "localize/localize_contrast.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>
#include <utility>

#include <boost/math/distributions/students_t.hpp>

#include "util/checked.h"
#include "util/counter_rng.h"
#include "util/error.h"
#include "util/message.h"

namespace moetrace::localize {
namespace {

// Flip patterns evaluated together (a [n x kFlipBlock] sign table; bounded memory for any F).
constexpr std::size_t kFlipBlock = 256;

std::string pair_label(const ContrastInput& in, std::size_t i) {
  return fmt::format("pair {} (question \"{}\", language \"{}\")", i, truncate_for_message(in.pairs[i].question_id, 60),
                     truncate_for_message(in.pairs[i].language, 20));
}

// Checks the input; returns the pair indices in canonical (question_id, language) order.
std::vector<std::size_t> validate_and_order(const ContrastInput& in, const ContrastOptions& o, std::size_t width) {
  if (o.sign_flips == 0) fail_input("contrast: sign_flips must be at least 1");
  if (o.top_n == 0) fail_input("contrast: top_n must be at least 1");
  for (std::size_t i = 0; i < in.pairs.size(); ++i) {
    const ContrastPair& p = in.pairs[i];
    if (p.question_id.empty() || p.language.empty())
      fail_input("contrast: pair {} has an empty question id or language", i);
    if (p.values.size() != width)
      fail_input("contrast: {} has {} values, expected layers x experts = {} x {} = {}", pair_label(in, i), p.values.size(),
                 in.layers, in.experts, width);
    for (std::size_t k = 0; k < width; ++k)
      if (!std::isfinite(p.values[k]))
        fail_input("contrast: {} has a non-finite value ({}) at layer {} expert {}", pair_label(in, i), p.values[k],
                   k / static_cast<std::size_t>(in.experts), k % static_cast<std::size_t>(in.experts));
  }
  std::vector<std::size_t> order(in.pairs.size());
  std::iota(order.begin(), order.end(), std::size_t{0});
  auto key = [&](std::size_t i) { return std::tie(in.pairs[i].question_id, in.pairs[i].language); };
  std::sort(order.begin(), order.end(), [&](std::size_t a, std::size_t b) { return key(a) < key(b) || (key(a) == key(b) && a < b); });
  for (std::size_t j = 1; j < order.size(); ++j)
    if (key(order[j - 1]) == key(order[j]))
      fail_input("contrast: {} and pair {} are the same (question, language)", pair_label(in, order[j - 1]), order[j]);
  return order;
}

double sequential_mean(const std::vector<double>& v) {
  double s = 0.0;
  for (double x : v) s += x;
  return s / static_cast<double>(v.size());
}

// Sign-flip p-values of the columns of d ([n questions][width], row-major), all columns sharing
// the same flips (docs/statistics.md).
void paired_sign_flip(const std::vector<double>& d, std::size_t n, std::size_t width, const ContrastOptions& o,
                      std::vector<ExpertContrast>& out) {
  std::vector<double> threshold(width);
  for (std::size_t k = 0; k < width; ++k) {
    double s = 0.0, abs_total = 0.0;
    for (std::size_t i = 0; i < n; ++i) {
      s += d[i * width + k];
      abs_total += std::fabs(d[i * width + k]);
    }
    out[k].effect = out[k].statistic = s / static_cast<double>(n);
    threshold[k] = std::fabs(s) - 1e-12 * abs_total;
  }
  const bool exact = n < 32 && (std::uint64_t{1} << n) <= o.sign_flips;
  const std::uint64_t patterns = exact ? (std::uint64_t{1} << n) : o.sign_flips;
  std::vector<std::uint64_t> count(width, 0);
  std::vector<double> sign(n * kFlipBlock);  // [question][pattern within the block]
  for (std::uint64_t first = 0; first < patterns; first += kFlipBlock) {
    const std::size_t block = static_cast<std::size_t>(std::min<std::uint64_t>(kFlipBlock, patterns - first));
    for (std::size_t b = 0; b < block; ++b) {
      const std::uint64_t f = first + b;
      if (exact) {
        for (std::size_t i = 0; i < n; ++i) sign[i * kFlipBlock + b] = ((f >> i) & 1) ? -1.0 : 1.0;
      } else {
        NoiseStream stream(o.seed, kContrastSignFlipStreamTag, static_cast<std::uint32_t>(f));
        for (std::size_t i = 0; i < n; ++i) sign[i * kFlipBlock + b] = (stream.next_u32() >> 31) ? -1.0 : 1.0;
      }
    }
#pragma omp parallel for schedule(static)
    for (std::size_t k = 0; k < width; ++k) {
      // Each pattern's sum runs over questions in order, as in sign_flip_test (+-1 * x is exact).
      double acc[kFlipBlock] = {};
      for (std::size_t i = 0; i < n; ++i) {
        const double x = d[i * width + k];
        const double* s = &sign[i * kFlipBlock];
        for (std::size_t b = 0; b < block; ++b) acc[b] += s[b] * x;
      }
      std::uint64_t c = 0;
      for (std::size_t b = 0; b < block; ++b) c += std::fabs(acc[b]) >= threshold[k] ? 1 : 0;
      count[k] += c;
    }
  }
  for (std::size_t k = 0; k < width; ++k) {
    out[k].p_exact = exact;
    out[k].p = exact ? static_cast<double>(count[k]) / static_cast<double>(patterns)
                     : static_cast<double>(count[k] + 1) / static_cast<double>(patterns + 1);
  }
}

double score_of(const ExpertContrast& e, RankDirection d) {
  switch (d) {
    case RankDirection::SuccessHigher: return e.effect;
    case RankDirection::FailureHigher: return -e.effect;
    case RankDirection::Either: return std::fabs(e.effect);
  }
  return e.effect;
}

// The first `n` of `indices` by the ranking rule, best first.
std::vector<std::size_t> top(std::vector<std::size_t> indices, const std::vector<ExpertContrast>& e, RankDirection d,
                             std::size_t n) {
  auto better = [&](std::size_t a, std::size_t b) {
    const double sa = score_of(e[a], d), sb = score_of(e[b], d);
    if (sa != sb) return sa > sb;
    if (e[a].p != e[b].p) return e[a].p < e[b].p;
    return a < b;
  };
  n = std::min(n, indices.size());
  std::partial_sort(indices.begin(), indices.begin() + static_cast<std::ptrdiff_t>(n), indices.end(), better);
  indices.resize(n);
  return indices;
}

}  // namespace

ContrastMethod parse_contrast_method(std::string_view text, std::string_view what) {
  if (text == "paired_sign_flip") return ContrastMethod::PairedSignFlip;
  if (text == "mann_whitney") return ContrastMethod::MannWhitney;
  if (text == "welch") return ContrastMethod::Welch;
  fail_input("{}: unknown contrast method \"{}\" (expected \"paired_sign_flip\", \"mann_whitney\" or \"welch\")", what,
             truncate_for_message(text));
}

RankDirection parse_rank_direction(std::string_view text, std::string_view what) {
  if (text == "success_higher") return RankDirection::SuccessHigher;
  if (text == "failure_higher") return RankDirection::FailureHigher;
  if (text == "either") return RankDirection::Either;
  fail_input("{}: unknown rank direction \"{}\" (expected \"success_higher\", \"failure_higher\" or \"either\")", what,
             truncate_for_message(text));
}

std::string_view contrast_method_name(ContrastMethod m) {
  switch (m) {
    case ContrastMethod::PairedSignFlip: return "paired_sign_flip";
    case ContrastMethod::MannWhitney: return "mann_whitney";
    case ContrastMethod::Welch: return "welch";
  }
  return "?";
}

std::string_view rank_direction_name(RankDirection d) {
  switch (d) {
    case RankDirection::SuccessHigher: return "success_higher";
    case RankDirection::FailureHigher: return "failure_higher";
    case RankDirection::Either: return "either";
  }
  return "?";
}

std::vector<double> benjamini_hochberg(const std::vector<double>& p) {
  const std::size_t m = p.size();
  std::vector<std::size_t> order(m);
  std::iota(order.begin(), order.end(), std::size_t{0});
  std::stable_sort(order.begin(), order.end(), [&](std::size_t a, std::size_t b) { return p[a] < p[b]; });
  std::vector<double> q(m);
  double running = 1.0;
  for (std::size_t j = m; j-- > 0;) {
    const double v = static_cast<double>(m) * p[order[j]] / static_cast<double>(j + 1);
    running = std::min(running, v);
    q[order[j]] = running;
  }
  return q;
}

TestResult mann_whitney(const std::vector<double>& x, const std::vector<double>& y) {
  const std::size_t nx = x.size(), ny = y.size(), n = nx + ny;
  MOETRACE_ASSERT(nx >= 1 && ny >= 1, "mann_whitney: empty sample");
  std::vector<std::pair<double, bool>> pooled;  // (value, from x)
  pooled.reserve(n);
  for (double v : x) pooled.emplace_back(v, true);
  for (double v : y) pooled.emplace_back(v, false);
  std::sort(pooled.begin(), pooled.end(), [](const auto& a, const auto& b) { return a.first < b.first; });
  double rank_sum_x = 0.0, tie_term = 0.0;
  for (std::size_t i = 0; i < n;) {
    std::size_t j = i;
    while (j < n && pooled[j].first == pooled[i].first) ++j;
    const double midrank = 0.5 * static_cast<double>(i + 1 + j);  // ranks i+1 .. j
    for (std::size_t k = i; k < j; ++k)
      if (pooled[k].second) rank_sum_x += midrank;
    const double t = static_cast<double>(j - i);
    tie_term += t * t * t - t;
    i = j;
  }
  const double dnx = static_cast<double>(nx), dny = static_cast<double>(ny), dn = static_cast<double>(n);
  const double u = rank_sum_x - dnx * (dnx + 1.0) / 2.0;
  TestResult r;
  r.effect = u / (dnx * dny) - 0.5;
  const double var = n > 1 ? dnx * dny / 12.0 * ((dn + 1.0) - tie_term / (dn * (dn - 1.0))) : 0.0;
  if (!(var > 0.0)) return r;  // z = 0, p = 1
  const double dev = u - dnx * dny / 2.0;
  const double z = std::copysign(std::max(0.0, std::fabs(dev) - 0.5), dev) / std::sqrt(var);
  r.statistic = z;
  r.p = std::min(1.0, std::erfc(std::fabs(z) / std::sqrt(2.0)));
  return r;
}

TestResult welch(const std::vector<double>& x, const std::vector<double>& y) {
  MOETRACE_ASSERT(x.size() >= 2 && y.size() >= 2, "welch: fewer than 2 values in a sample");
  auto var = [](const std::vector<double>& v, double m) {
    double s = 0.0;
    for (double a : v) s += (a - m) * (a - m);
    return s / static_cast<double>(v.size() - 1);
  };
  const double mx = sequential_mean(x), my = sequential_mean(y);
  const double ax = var(x, mx) / static_cast<double>(x.size()), ay = var(y, my) / static_cast<double>(y.size());
  TestResult r;
  r.effect = mx - my;
  const double se2 = ax + ay;
  if (!(se2 > 0.0)) {
    r.statistic = r.effect == 0.0 ? 0.0 : std::copysign(std::numeric_limits<double>::infinity(), r.effect);
    r.p = r.effect == 0.0 ? 1.0 : 0.0;
    return r;
  }
  r.statistic = r.effect / std::sqrt(se2);
  r.df = se2 * se2 / (ax * ax / static_cast<double>(x.size() - 1) + ay * ay / static_cast<double>(y.size() - 1));
  const boost::math::students_t dist(r.df);
  r.p = std::min(1.0, 2.0 * boost::math::cdf(dist, -std::fabs(r.statistic)));
  return r;
}

namespace {

using PairIndices = std::vector<std::size_t>;

// The pairs by bucket, in canonical order, and the mixed questions: (success pairs, failure pairs), in id order.
struct Buckets {
  PairIndices success, failure;
  std::vector<std::pair<PairIndices, PairIndices>> mixed;
  std::size_t n_questions = 0;
};

Buckets group_by_question(const ContrastInput& in, const std::vector<std::size_t>& order) {
  Buckets b;
  for (std::size_t j = 0; j < order.size();) {
    std::size_t end = j;
    std::pair<PairIndices, PairIndices> q;
    while (end < order.size() && in.pairs[order[end]].question_id == in.pairs[order[j]].question_id) {
      const std::size_t i = order[end++];
      (in.pairs[i].bucket == Bucket::Success ? q.first : q.second).push_back(i);
      (in.pairs[i].bucket == Bucket::Success ? b.success : b.failure).push_back(i);
    }
    ++b.n_questions;
    if (!q.first.empty() && !q.second.empty()) b.mixed.push_back(std::move(q));
    j = end;
  }
  return b;
}

void require_enough_pairs(ContrastMethod method, const Buckets& b) {
  const auto counts = fmt::format("{} success and {} failure pairs, {} of {} questions with both", b.success.size(),
                                  b.failure.size(), b.mixed.size(), b.n_questions);
  switch (method) {
    case ContrastMethod::PairedSignFlip:
      if (b.mixed.empty()) fail_input("contrast (paired_sign_flip): no question has pairs in both buckets ({})", counts);
      break;
    case ContrastMethod::MannWhitney:
      if (b.success.empty() || b.failure.empty()) fail_input("contrast (mann_whitney): a bucket is empty ({})", counts);
      break;
    case ContrastMethod::Welch:
      if (b.success.size() < 2 || b.failure.size() < 2)
        fail_input("contrast (welch): each bucket needs at least 2 pairs ({})", counts);
      break;
  }
}

double bucket_mean(const ContrastInput& in, const PairIndices& idx, std::size_t k) {
  double s = 0.0;
  for (std::size_t i : idx) s += in.pairs[i].values[k];
  return s / static_cast<double>(idx.size());
}

void fill_bucket_means(const ContrastInput& in, const Buckets& b, std::size_t experts, std::vector<ExpertContrast>& out) {
  for (std::size_t k = 0; k < out.size(); ++k) {
    ExpertContrast& e = out[k];
    e.layer = static_cast<std::int32_t>(k / experts);
    e.expert = static_cast<std::int32_t>(k % experts);
    e.mean_success = b.success.empty() ? 0.0 : bucket_mean(in, b.success, k);
    e.mean_failure = b.failure.empty() ? 0.0 : bucket_mean(in, b.failure, k);
  }
}

void test_paired(const ContrastInput& in, const Buckets& b, const ContrastOptions& o, std::vector<ExpertContrast>& out) {
  const std::size_t n = b.mixed.size(), width = out.size();
  std::vector<double> d(mul_or_fail(n, width, "contrast: questions x layers x experts"));
  for (std::size_t q = 0; q < n; ++q)
    for (std::size_t k = 0; k < width; ++k)
      d[q * width + k] = bucket_mean(in, b.mixed[q].first, k) - bucket_mean(in, b.mixed[q].second, k);
  paired_sign_flip(d, n, width, o, out);
}

void test_independent(const ContrastInput& in, const Buckets& b, ContrastMethod method, std::vector<ExpertContrast>& out) {
  const std::size_t width = out.size();
#pragma omp parallel for schedule(static)
  for (std::size_t k = 0; k < width; ++k) {
    std::vector<double> x, y;
    x.reserve(b.success.size());
    y.reserve(b.failure.size());
    for (std::size_t i : b.success) x.push_back(in.pairs[i].values[k]);
    for (std::size_t i : b.failure) y.push_back(in.pairs[i].values[k]);
    const TestResult t = method == ContrastMethod::MannWhitney ? mann_whitney(x, y) : welch(x, y);
    ExpertContrast& e = out[k];
    e.effect = t.effect;
    e.statistic = t.statistic;
    e.df = t.df;
    e.p = t.p;
  }
}

void fill_q_values(std::vector<ExpertContrast>& experts) {
  std::vector<double> p(experts.size());
  for (std::size_t k = 0; k < experts.size(); ++k) p[k] = experts[k].p;
  const std::vector<double> q = benjamini_hochberg(p);
  for (std::size_t k = 0; k < experts.size(); ++k) experts[k].q = q[k];
}

void rank_top(std::size_t L, std::size_t E, const ContrastOptions& o, ContrastResult& res) {
  std::vector<std::size_t> all(res.experts.size());
  std::iota(all.begin(), all.end(), std::size_t{0});
  res.top_global = top(all, res.experts, o.direction, o.top_n);
  for (std::size_t l = 0; l < L; ++l) {
    std::vector<std::size_t> layer(E);
    std::iota(layer.begin(), layer.end(), l * E);
    res.top_per_layer.push_back(top(std::move(layer), res.experts, o.direction, o.top_n));
  }
}

}  // namespace

ContrastResult contrast_experts(const ContrastInput& in, const ContrastOptions& o) {
  if (in.layers < 1 || in.experts < 1) fail_input("contrast: layers and experts must be at least 1, got {} x {}", in.layers, in.experts);
  const std::size_t L = static_cast<std::size_t>(in.layers), E = static_cast<std::size_t>(in.experts);
  const std::size_t width = mul_or_fail(L, E, "contrast: layers x experts");
  const std::vector<std::size_t> order = validate_and_order(in, o, width);

  const Buckets buckets = group_by_question(in, order);
  ContrastResult res;
  res.method = o.method;
  res.n_questions = buckets.n_questions;
  res.n_success = buckets.success.size();
  res.n_failure = buckets.failure.size();
  res.n_mixed_questions = buckets.mixed.size();
  require_enough_pairs(o.method, buckets);

  res.experts.resize(width);
  fill_bucket_means(in, buckets, E, res.experts);
  if (o.method == ContrastMethod::PairedSignFlip)
    test_paired(in, buckets, o, res.experts);
  else
    test_independent(in, buckets, o.method, res.experts);
  fill_q_values(res.experts);
  rank_top(L, E, o, res);
  return res;
}

}  // namespace moetrace::localize
