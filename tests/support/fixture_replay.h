#pragma once
// Replaying a conformance fixture on a named backend, and checking a comparison report: shared by
// the CPU conformance test and the GPU tests so that every backend is held to the same check.
#include <cstdint>
#include <filesystem>
#include <string>

#include <boost/test/unit_test.hpp>

#include "engine/case_tracer.h"
#include "support/golden_compare.h"

namespace moetrace::test {

// Replays every fact of `fixture` with the model in `model_dir` on backend `backend_name`
// ("cpu", "cuda", ...) into `out`; returns the engine's layer-token steps.
std::uint64_t replay_fixture(const std::string& backend_name, const std::filesystem::path& model_dir,
                             const std::filesystem::path& fixture, const std::filesystem::path& out, PatchMode mode,
                             bool traces);

// Reports a comparison and fails the current test for every failing dataset.
inline void expect_clean(const CompareReport& r, const std::string& what) {
  BOOST_TEST_MESSAGE(what << ": " << r.datasets_checked << " datasets, worst max|diff|/max|golden| = " << r.worst_ratio
                          << " (" << r.worst_dataset << ")");
  BOOST_TEST(r.datasets_checked > 0);
  for (const std::string& f : r.failures) BOOST_ERROR(what << ": " << f);
}

}  // namespace moetrace::test
