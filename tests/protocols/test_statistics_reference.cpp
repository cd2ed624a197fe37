// Compares the C++ counter RNG and statistics with the independent Python/numpy implementation
// in tools/reference/stats_reference.py. That script writes its inputs and expected outputs to a
// JSON file at test time (ctest fixture statistics_reference_python); the path is the first
// argument after `--`. Tolerance 1e-12 (relative above 1); integers and flags must match exactly.
#define BOOST_TEST_MODULE statistics_reference
#include <boost/test/unit_test.hpp>

#include <cmath>
#include <fstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "protocols/statistics.h"
#include "util/counter_rng.h"

using namespace moetrace;
using json = nlohmann::json;

namespace {

json load_reference() {
  const auto& suite = boost::unit_test::framework::master_test_suite();
  BOOST_REQUIRE_MESSAGE(suite.argc >= 2, "usage: test_statistics_reference -- <stats_reference.json>");
  std::ifstream in(suite.argv[suite.argc - 1]);
  BOOST_REQUIRE_MESSAGE(in.good(), std::string("cannot open ") + suite.argv[suite.argc - 1]);
  return json::parse(in);
}

bool close(double a, double b) { return std::fabs(a - b) <= 1e-12 * std::max(1.0, std::fabs(b)); }

}  // namespace

BOOST_AUTO_TEST_CASE(statistics_match_reference) {
  const json ref = load_reference();
  BOOST_REQUIRE(ref.at("cases").size() >= 5u);
  for (const json& c : ref.at("cases")) {
    BOOST_TEST_CONTEXT("case " << c.at("name").get<std::string>()) {
      const auto values = c.at("values").get<std::vector<double>>();
      const std::uint64_t seed = std::stoull(c.at("seed").get<std::string>());
      StatsOptions o;
      o.bootstrap_resamples = c.at("resamples").get<std::uint32_t>();
      o.sign_flips = c.at("flips").get<std::uint32_t>();
      const SummaryStats s = summarize(values, seed, o);
      const json& e = c.at("expected");
      BOOST_TEST(s.n == e.at("n").get<std::size_t>());
      BOOST_TEST(s.p_exact == e.at("p_exact").get<bool>());
      BOOST_TEST(close(s.mean, e.at("mean").get<double>()), s.mean << " vs " << e.at("mean"));
      BOOST_TEST(close(s.ci_low, e.at("ci_low").get<double>()), s.ci_low << " vs " << e.at("ci_low"));
      BOOST_TEST(close(s.ci_high, e.at("ci_high").get<double>()), s.ci_high << " vs " << e.at("ci_high"));
      BOOST_TEST(close(s.frac_positive, e.at("frac_positive").get<double>()));
      BOOST_TEST(close(s.p_sign_flip, e.at("p_sign_flip").get<double>()),
                 s.p_sign_flip << " vs " << e.at("p_sign_flip"));
    }
  }
}

BOOST_AUTO_TEST_CASE(counter_rng_matches_reference) {
  const json ref = load_reference();
  BOOST_REQUIRE(ref.at("rng").size() >= 3u);
  for (const json& r : ref.at("rng")) {
    const std::uint64_t seed = std::stoull(r.at("seed").get<std::string>());
    const std::uint64_t case_id = std::stoull(r.at("case_id").get<std::string>());
    const auto sample = r.at("sample").get<std::uint32_t>();
    BOOST_TEST_CONTEXT("seed " << seed << " case " << case_id << " sample " << sample) {
      NoiseStream words(seed, case_id, sample);
      for (const json& w : r.at("u32")) BOOST_TEST(words.next_u32() == w.get<std::uint32_t>());
      NoiseStream uni(seed, case_id, sample);
      for (const json& u : r.at("uniform")) BOOST_TEST(uni.next_uniform() == u.get<double>());
      NoiseStream nor(seed, case_id, sample);
      for (const json& z : r.at("normal")) BOOST_TEST(close(nor.next_normal(), z.get<double>()));
    }
  }
}
