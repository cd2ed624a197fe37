// Compares the contrast statistics with the independent Python implementation in
// tools/reference/localize_contrast_reference.py, which writes its inputs and expected outputs at
// test time (ctest fixture localize_contrast_reference_python); the path is the last argument after
// `--`. Tolerance 1e-12 (relative above 1; Welch p-values 1e-9 relative, the reference's incomplete
// beta function differs from Boost.Math's in the last digits); counts, flags and rankings exactly.
#define BOOST_TEST_MODULE localize_contrast_reference
#include <boost/test/unit_test.hpp>

#include <cmath>
#include <fstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "localize/localize_contrast.h"

using namespace moetrace::localize;
using json = nlohmann::json;

namespace {

json load_reference() {
  const auto& suite = boost::unit_test::framework::master_test_suite();
  BOOST_REQUIRE_MESSAGE(suite.argc >= 2, "usage: test_localize_contrast_reference -- <contrast_reference.json>");
  std::ifstream in(suite.argv[suite.argc - 1]);
  BOOST_REQUIRE_MESSAGE(in.good(), std::string("cannot open ") + suite.argv[suite.argc - 1]);
  return json::parse(in);
}

bool close(double a, double b, double tol) {
  if (std::isinf(a) || std::isinf(b)) return a == b;
  return std::fabs(a - b) <= tol * std::max(1.0, std::fabs(b));
}
bool close_rel(double a, double b, double tol) { return std::fabs(a - b) <= tol * std::fabs(b) || a == b; }

// The reference writes infinity as a JSON float only if Python's json allowed it; Welch's infinite
// t is not among its cases, so plain numbers suffice.
double num(const json& v) { return v.get<double>(); }

}  // namespace

BOOST_AUTO_TEST_CASE(contrast_matches_reference) {
  const json ref = load_reference();
  BOOST_REQUIRE(ref.at("cases").size() >= 7u);
  bool saw_exact = false, saw_random = false;
  for (const json& c : ref.at("cases")) {
    BOOST_TEST_CONTEXT("case " << c.at("name").get<std::string>()) {
      ContrastInput in;
      in.layers = c.at("layers").get<int>();
      in.experts = c.at("experts").get<int>();
      for (const json& p : c.at("pairs"))
        in.pairs.push_back({p.at("question").get<std::string>(), p.at("language").get<std::string>(),
                            p.at("success").get<bool>() ? Bucket::Success : Bucket::Failure,
                            p.at("values").get<std::vector<double>>()});
      ContrastOptions o;
      o.method = parse_contrast_method(c.at("method").get<std::string>(), "reference");
      o.direction = parse_rank_direction(c.at("direction").get<std::string>(), "reference");
      o.seed = c.at("seed").get<std::uint64_t>();
      o.sign_flips = c.at("flips").get<std::uint32_t>();
      o.top_n = c.at("top_n").get<std::size_t>();
      const ContrastResult r = contrast_experts(in, o);
      const json& e = c.at("expected");
      BOOST_TEST(r.n_success == e.at("n_success").get<std::size_t>());
      BOOST_TEST(r.n_failure == e.at("n_failure").get<std::size_t>());
      BOOST_TEST(r.n_questions == e.at("n_questions").get<std::size_t>());
      BOOST_TEST(r.n_mixed_questions == e.at("n_mixed_questions").get<std::size_t>());
      const json& ex = e.at("experts");
      BOOST_REQUIRE(ex.size() == r.experts.size());
      const double p_tol = o.method == ContrastMethod::Welch ? 1e-9 : 1e-12;
      for (std::size_t k = 0; k < r.experts.size(); ++k) {
        BOOST_TEST_CONTEXT("expert " << k) {
          const ExpertContrast& a = r.experts[k];
          const json& b = ex[k];
          BOOST_TEST(close(a.mean_success, num(b.at("mean_success")), 1e-12));
          BOOST_TEST(close(a.mean_failure, num(b.at("mean_failure")), 1e-12));
          BOOST_TEST(close(a.effect, num(b.at("effect")), 1e-12), a.effect << " vs " << b.at("effect"));
          BOOST_TEST(close(a.statistic, num(b.at("statistic")), 1e-12), a.statistic << " vs " << b.at("statistic"));
          BOOST_TEST(close(a.df, num(b.at("df")), 1e-12));
          BOOST_TEST(close_rel(a.p, num(b.at("p")), p_tol), a.p << " vs " << b.at("p"));
          BOOST_TEST(close_rel(a.q, num(b.at("q")), p_tol), a.q << " vs " << b.at("q"));
          BOOST_TEST(a.p_exact == b.at("p_exact").get<bool>());
          if (o.method == ContrastMethod::PairedSignFlip) (a.p_exact ? saw_exact : saw_random) = true;
        }
      }
      BOOST_TEST(r.top_global == e.at("top_global").get<std::vector<std::size_t>>());
      BOOST_TEST(r.top_per_layer == e.at("top_per_layer").get<std::vector<std::vector<std::size_t>>>());
    }
  }
  BOOST_TEST(saw_exact);
  BOOST_TEST(saw_random);
}
