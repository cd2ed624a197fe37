// Contrast statistics of router-contrast localisation (docs/localize.md, "Contrast statistics"):
// hand-computed values, the paired p equal to the statistics module's sign-flip test, invariance
// to pair order, the ranking and tie rule, q-values, and every input error.
#define BOOST_TEST_MODULE localize_contrast
#include <boost/test/unit_test.hpp>

#include <algorithm>
#include <cmath>
#include <limits>
#include <random>
#include <string>
#include <vector>

#ifdef _OPENMP
#include <omp.h>
#endif

#include "localize/localize_contrast.h"
#include "protocols/statistics.h"
#include "support/input_error.h"
#include "util/error.h"

using namespace moetrace;
using namespace moetrace::localize;
using test::input_error_of;

namespace {

bool close(double a, double b, double tol = 1e-12) { return std::fabs(a - b) <= tol * std::max(1.0, std::fabs(b)); }

void expect_mentions(const std::string& msg, std::initializer_list<std::string> parts) {
  BOOST_TEST_MESSAGE(msg);
  for (const std::string& p : parts)
    BOOST_TEST(msg.find(p) != std::string::npos, "message '" << msg << "' should mention '" << p << "'");
}

// Q questions x the given languages, 2 layers x 4 experts; expert (1, 2) is routed more in success
// pairs by `planted`. Buckets: deterministic pattern with many mixed questions.
ContrastInput synthetic(int questions, const std::vector<std::string>& langs, double planted, std::uint32_t seed) {
  std::mt19937_64 rng(seed);
  std::uniform_real_distribution<double> u(0.0, 0.3);
  ContrastInput in;
  in.layers = 2;
  in.experts = 4;
  for (int q = 0; q < questions; ++q)
    for (std::size_t l = 0; l < langs.size(); ++l) {
      ContrastPair p;
      p.question_id = "q" + std::to_string(q);
      p.language = langs[l];
      p.bucket = ((q + l) % 3 == 0) ? Bucket::Failure : Bucket::Success;
      for (int k = 0; k < 8; ++k) p.values.push_back(u(rng));
      if (p.bucket == Bucket::Success) p.values[1 * 4 + 2] += planted;
      in.pairs.push_back(std::move(p));
    }
  return in;
}

}  // namespace

BOOST_AUTO_TEST_CASE(paired_p_is_the_statistics_sign_flip_test) {
  static_assert(kContrastSignFlipStreamTag == kSignFlipStreamTag);
  for (const std::uint32_t flips : {500u, 4096u}) {  // 2^n > flips (random) and 2^n <= flips (exact)
    const int questions = flips == 500u ? 20 : 12;
    const ContrastInput in = synthetic(questions, {"en", "de", "fr"}, 0.15, 3);
    ContrastOptions o;
    o.seed = 0xfeedbeef12345ull;
    o.sign_flips = flips;
    const ContrastResult r = contrast_experts(in, o);
    BOOST_TEST(r.n_questions == static_cast<std::size_t>(questions));
    BOOST_TEST(r.n_mixed_questions == static_cast<std::size_t>(questions));  // pattern gives 1 failure of 3
    for (std::size_t k = 0; k < 8; ++k) {
      // d_q by hand: questions in id order ("q0" < "q1" < "q10" < ...), languages in code order.
      std::vector<std::string> ids;
      for (int q = 0; q < questions; ++q) ids.push_back("q" + std::to_string(q));
      std::sort(ids.begin(), ids.end());
      std::vector<double> d;
      for (const auto& id : ids) {
        double s = 0, f = 0;
        int ns = 0, nf = 0;
        for (const std::string lang : {"de", "en", "fr"})
          for (const auto& p : in.pairs)
            if (p.question_id == id && p.language == lang) {
              (p.bucket == Bucket::Success ? s : f) += p.values[k];
              ++(p.bucket == Bucket::Success ? ns : nf);
            }
        d.push_back(s / ns - f / nf);
      }
      const SignFlipResult ref = sign_flip_test(d, o.seed, flips);
      BOOST_TEST(r.experts[k].p == ref.p);
      BOOST_TEST(r.experts[k].p_exact == ref.exact);
      BOOST_TEST(close(r.experts[k].effect, mean(d)));
      BOOST_TEST(r.experts[k].statistic == r.experts[k].effect);
    }
    BOOST_TEST(r.top_global.at(0) == 6u);  // layer 1, expert 2
    BOOST_TEST(r.experts[6].p < 0.01);
  }
}

BOOST_AUTO_TEST_CASE(results_do_not_depend_on_pair_order) {
  ContrastInput in = synthetic(15, {"en", "de", "fr", "ja"}, 0.04, 9);
  for (const auto method : {ContrastMethod::PairedSignFlip, ContrastMethod::MannWhitney, ContrastMethod::Welch}) {
    ContrastOptions o;
    o.method = method;
    o.seed = 5;
    o.sign_flips = 700;
    const ContrastResult a = contrast_experts(in, o);
    ContrastInput shuffled = in;
    std::shuffle(shuffled.pairs.begin(), shuffled.pairs.end(), std::mt19937_64(1));
    const ContrastResult b = contrast_experts(shuffled, o);
    for (std::size_t k = 0; k < a.experts.size(); ++k) {
      BOOST_TEST(a.experts[k].effect == b.experts[k].effect);
      BOOST_TEST(a.experts[k].p == b.experts[k].p);
      BOOST_TEST(a.experts[k].q == b.experts[k].q);
      BOOST_TEST(a.experts[k].mean_success == b.experts[k].mean_success);
    }
    BOOST_TEST(a.top_global == b.top_global);
  }
}

#ifdef _OPENMP
BOOST_AUTO_TEST_CASE(results_do_not_depend_on_thread_count) {
  const ContrastInput in = synthetic(14, {"en", "de", "fr"}, 0.05, 21);
  for (const auto method : {ContrastMethod::PairedSignFlip, ContrastMethod::MannWhitney, ContrastMethod::Welch}) {
    ContrastOptions o;
    o.method = method;
    o.sign_flips = 1000;
    const int before = omp_get_max_threads();
    omp_set_num_threads(1);
    const ContrastResult a = contrast_experts(in, o);
    omp_set_num_threads(3);
    const ContrastResult b = contrast_experts(in, o);
    omp_set_num_threads(before);
    for (std::size_t k = 0; k < a.experts.size(); ++k) {
      BOOST_TEST(a.experts[k].p == b.experts[k].p);
      BOOST_TEST(a.experts[k].effect == b.experts[k].effect);
      BOOST_TEST(a.experts[k].statistic == b.experts[k].statistic);
    }
    BOOST_TEST(a.top_global == b.top_global);
  }
}
#endif

BOOST_AUTO_TEST_CASE(mann_whitney_by_hand) {
  // Separated samples: U = 0, sigma^2 = 9/12 * 7, z = -(4.5 - 0.5) / sqrt(5.25).
  TestResult r = mann_whitney({1, 2, 3}, {4, 5, 6});
  BOOST_TEST(r.effect == -0.5);
  BOOST_TEST(close(r.statistic, -4.0 / std::sqrt(5.25)));
  BOOST_TEST(close(r.p, 0.0808555983700523), r.p);  // erfc(4 / sqrt(5.25) / sqrt(2))
  // Ties: x = {1, 2, 2}, y = {2, 3}: midranks 1, 3, 3 | 3, 5; U = 7 - 6 = 1; ties 3 -> 24.
  r = mann_whitney({1, 2, 2}, {2, 3});
  BOOST_TEST(close(r.effect, 1.0 / 6.0 - 0.5));
  const double var = 6.0 / 12.0 * (6.0 - 24.0 / 20.0);
  BOOST_TEST(close(r.statistic, -(2.0 - 0.5) / std::sqrt(var)));
  BOOST_TEST(close(r.p, std::erfc(std::fabs(r.statistic) / std::sqrt(2.0))));
  // All tied: p = 1; within the continuity correction: z = 0, p = 1.
  r = mann_whitney({2, 2}, {2, 2, 2});
  BOOST_TEST(r.p == 1.0);
  BOOST_TEST(r.statistic == 0.0);
  r = mann_whitney({1, 4}, {2, 3});
  BOOST_TEST(r.effect == 0.0);
  BOOST_TEST(r.p == 1.0);
  // Swapping the samples mirrors effect and z, keeps p.
  const TestResult a = mann_whitney({0.1, 0.5, 0.7, 0.2}, {0.3, 0.05, 0.4});
  const TestResult b = mann_whitney({0.3, 0.05, 0.4}, {0.1, 0.5, 0.7, 0.2});
  BOOST_TEST(close(a.effect, -b.effect));
  BOOST_TEST(a.statistic == -b.statistic);
  BOOST_TEST(a.p == b.p);
}

BOOST_AUTO_TEST_CASE(welch_by_hand) {
  // Equal variances and sizes: Welch's t is Student's, df = 2n - 2.
  TestResult r = welch({1, 2, 3}, {4, 5, 6});
  BOOST_TEST(close(r.effect, -3.0));
  BOOST_TEST(close(r.statistic, -3.0 / std::sqrt(2.0 / 3.0)));
  BOOST_TEST(close(r.df, 4.0));
  // df = 4: P(|T| >= t) = 1 - t (t^2 + 6) / (t^2 + 4)^{3/2} ... via the closed form of the CDF.
  const double t = std::fabs(r.statistic);
  const double cdf4 = 0.5 + t * (t * t + 6.0) / (2.0 * std::pow(t * t + 4.0, 1.5));
  BOOST_TEST(close(r.p, 2.0 * (1.0 - cdf4), 1e-10), r.p);
  // Constant samples: equal means p = 1, different means p = 0.
  r = welch({2, 2}, {2, 2, 2});
  BOOST_TEST(r.p == 1.0);
  BOOST_TEST(r.statistic == 0.0);
  r = welch({2, 2}, {3, 3});
  BOOST_TEST(r.p == 0.0);
  BOOST_TEST(r.statistic == -std::numeric_limits<double>::infinity());
}

BOOST_AUTO_TEST_CASE(benjamini_hochberg_by_hand) {
  const std::vector<double> q = benjamini_hochberg({0.01, 0.04, 0.03, 0.2});
  // sorted 0.01, 0.03, 0.04, 0.2: m p / j = 0.04, 0.06, 0.0533, 0.2; running minimum from the end.
  BOOST_TEST(close(q[0], 0.04));
  BOOST_TEST(close(q[1], 0.16 / 3));
  BOOST_TEST(close(q[2], 0.16 / 3));
  BOOST_TEST(close(q[3], 0.2));
  const std::vector<double> ties = benjamini_hochberg({0.5, 0.5, 0.5});
  for (double v : ties) BOOST_TEST(v == 0.5);
  BOOST_TEST(benjamini_hochberg({0.9, 0.95})[0] == 0.95);  // capped by the later running minimum
  BOOST_TEST(benjamini_hochberg({1.0})[0] == 1.0);
  BOOST_TEST(benjamini_hochberg({}).empty());
}

BOOST_AUTO_TEST_CASE(ranking_and_tie_rule) {
  // Experts 0 and 1 of layer 0 carry the same values (same effect and p): the lower index first.
  // Expert 3 is routed more in failure pairs.
  ContrastInput in;
  in.layers = 2;
  in.experts = 4;
  const std::vector<std::pair<double, Bucket>> rows = {{0.9, Bucket::Success}, {0.8, Bucket::Success}, {0.7, Bucket::Success},
                                                       {0.1, Bucket::Failure}, {0.2, Bucket::Failure}, {0.3, Bucket::Failure}};
  for (std::size_t i = 0; i < rows.size(); ++i) {
    const double v = rows[i].first;
    const double w = 1.0 - v;
    in.pairs.push_back({"q" + std::to_string(i), "en", rows[i].second, {v, v, 0.5, w, 0.5 * v, 0.5, 0.5, 0.4 * w}});
  }
  ContrastOptions o;
  o.method = ContrastMethod::MannWhitney;
  o.top_n = 3;
  ContrastResult r = contrast_experts(in, o);
  BOOST_TEST(r.top_global == (std::vector<std::size_t>{0, 1, 4}));  // equal effect 0.5: index, then layer 1
  BOOST_REQUIRE(r.top_per_layer.size() == 2u);
  BOOST_TEST(r.top_per_layer[0] == (std::vector<std::size_t>{0, 1, 2}));
  BOOST_TEST(r.top_per_layer[1] == (std::vector<std::size_t>{4, 5, 6}));  // 5 and 6 tie at effect 0
  o.direction = RankDirection::FailureHigher;
  r = contrast_experts(in, o);
  BOOST_TEST(r.top_global == (std::vector<std::size_t>{3, 7, 2}));
  o.direction = RankDirection::Either;
  o.top_n = 100;  // more than there are: all, per layer all 4
  r = contrast_experts(in, o);
  BOOST_TEST(r.top_global.size() == 8u);
  BOOST_TEST(r.top_global[0] == 0u);
  BOOST_TEST(r.top_per_layer[0].size() == 4u);
  // q-values: BH of the p-values, never below p.
  for (const auto& e : r.experts) BOOST_TEST(e.q >= e.p);
  BOOST_TEST(r.experts[3].layer == 0);
  BOOST_TEST(r.experts[7].layer == 1);
  BOOST_TEST(r.experts[7].expert == 3);
  BOOST_TEST(close(r.experts[0].mean_success, 0.8));
  BOOST_TEST(close(r.experts[0].mean_failure, 0.2));
}

BOOST_AUTO_TEST_CASE(input_errors) {
  const ContrastInput good = synthetic(4, {"en", "de"}, 0.1, 1);
  ContrastOptions o;
  auto error_of = [&](ContrastInput in, ContrastOptions opt) { return input_error_of([&] { contrast_experts(in, opt); }); };
  ContrastInput in = good;
  in.layers = 0;
  expect_mentions(error_of(in, o), {"at least 1", "0 x 4"});
  in = good;
  in.pairs[3].values.pop_back();
  expect_mentions(error_of(in, o), {"pair 3 (question \"q1\", language \"de\")", "7 values", "2 x 4 = 8"});
  in = good;
  in.pairs[2].values[5] = std::nan("");
  expect_mentions(error_of(in, o), {"pair 2", "non-finite", "layer 1 expert 1"});
  in = good;
  in.pairs[2].values[0] = std::numeric_limits<double>::infinity();
  expect_mentions(error_of(in, o), {"pair 2", "non-finite"});
  in = good;
  in.pairs[5] = in.pairs[4];
  expect_mentions(error_of(in, o), {"pair 4 (question \"q2\", language \"en\")", "pair 5", "same (question, language)"});
  in = good;
  in.pairs[1].question_id.clear();
  expect_mentions(error_of(in, o), {"pair 1", "empty question id"});
  in = good;
  for (auto& p : in.pairs) p.bucket = Bucket::Success;
  expect_mentions(error_of(in, o), {"paired_sign_flip", "no question has pairs in both buckets", "8 success and 0 failure"});
  ContrastOptions mw = o;
  mw.method = ContrastMethod::MannWhitney;
  expect_mentions(error_of(in, mw), {"mann_whitney", "a bucket is empty"});
  in = good;
  for (std::size_t i = 1; i < in.pairs.size(); ++i) in.pairs[i].bucket = Bucket::Success;
  in.pairs[0].bucket = Bucket::Failure;
  ContrastOptions we = o;
  we.method = ContrastMethod::Welch;
  expect_mentions(error_of(in, we), {"welch", "at least 2 pairs", "7 success and 1 failure"});
  BOOST_TEST(contrast_experts(in, mw).n_failure == 1u);  // Mann-Whitney accepts one
  ContrastOptions bad = o;
  bad.sign_flips = 0;
  expect_mentions(error_of(good, bad), {"sign_flips"});
  bad = o;
  bad.top_n = 0;
  expect_mentions(error_of(good, bad), {"top_n"});
}

BOOST_AUTO_TEST_CASE(option_words) {
  BOOST_TEST(static_cast<int>(parse_contrast_method("mann_whitney", "k")) == static_cast<int>(ContrastMethod::MannWhitney));
  BOOST_TEST(static_cast<int>(parse_contrast_method("welch", "k")) == static_cast<int>(ContrastMethod::Welch));
  BOOST_TEST(static_cast<int>(parse_contrast_method("paired_sign_flip", "k")) == static_cast<int>(ContrastMethod::PairedSignFlip));
  BOOST_TEST(static_cast<int>(parse_rank_direction("either", "k")) == static_cast<int>(RankDirection::Either));
  for (auto m : {ContrastMethod::PairedSignFlip, ContrastMethod::MannWhitney, ContrastMethod::Welch})
    BOOST_TEST(static_cast<int>(parse_contrast_method(contrast_method_name(m), "k")) == static_cast<int>(m));
  for (auto d : {RankDirection::SuccessHigher, RankDirection::FailureHigher, RankDirection::Either})
    BOOST_TEST(static_cast<int>(parse_rank_direction(rank_direction_name(d), "k")) == static_cast<int>(d));
  expect_mentions(input_error_of([] { parse_contrast_method("t-test", "[localize] contrast"); }),
                  {"[localize] contrast", "unknown contrast method \"t-test\""});
  expect_mentions(input_error_of([] { parse_rank_direction("up", "[localize] rank"); }), {"[localize] rank", "\"up\""});
}
