// The conformance fixtures replayed on the CUDA backend: float32 mode must match the float64
// goldens within 1e-4 * max|golden| on every dataset (as the CPU backend does, including the fast
// path against full recomputation); bf16 mode's error is measured and printed (docs/cuda.md).
// Label `gpu`; exits 77 without a GPU.
#define BOOST_TEST_MODULE cuda_fixture_replay
#include <boost/test/unit_test.hpp>

#include <filesystem>
#include <iostream>

#include "backend/backend_registry.h"
#include "engine/device_model.h"
#include "gpu_skip.h"
#include "kernels/cuda_backend.h"
#include "model/model_weights.h"
#include "protocols/replay.h"
#include "support/fixture_replay.h"
#include "support/test_paths.h"

namespace fs = std::filesystem;
using namespace moetrace;

BOOST_TEST_GLOBAL_FIXTURE(RequireGpu);

namespace {

constexpr double kTolerance = 1e-4;
const std::vector<std::string> kModels = {"mixtral-tiny", "qwen3moe-tiny", "olmoe-tiny"};

}  // namespace

BOOST_AUTO_TEST_CASE(float32_mode_matches_the_goldens_on_the_fast_path_and_full_recompute) {
  const fs::path tmp = test::fresh_temp_dir("cuda-replay");
  for (const std::string& m : kModels) {
    const fs::path golden = test::fixtures_dir() / (m + ".golden.h5");
    const fs::path fast = tmp / (m + ".fast.h5"), full = tmp / (m + ".full.h5");
    test::replay_fixture("cuda", test::fixtures_dir() / m, golden, fast, PatchMode::FastPath, true);
    test::replay_fixture("cuda", test::fixtures_dir() / m, golden, full, PatchMode::FullRecompute, true);
    test::expect_clean(test::compare_with_golden(golden.string(), fast.string(), {"clean/", "trace/", "deactivate/logits_last"},
                                           kTolerance),
                 m + " cuda f32 (fast path)");
    test::expect_clean(test::compare_with_golden(golden.string(), full.string(), {"trace/"}, kTolerance),
                 m + " cuda f32 (full recompute)");
  }
  fs::remove_all(tmp);
}

BOOST_AUTO_TEST_CASE(bf16_mode_error_is_measured) {
  const fs::path tmp = test::fresh_temp_dir("cuda-bf16-replay");
  std::cout << "\nbf16 mode (bf16 weights and product operands, float32 accumulation and router) against the "
               "float64 goldens:\n";
  for (const std::string& m : kModels) {
    const fs::path golden = test::fixtures_dir() / (m + ".golden.h5");
    const fs::path out = tmp / (m + ".bf16.h5");
    test::replay_fixture("cuda-bf16", test::fixtures_dir() / m, golden, out, PatchMode::FastPath, true);
    for (const std::string prefix : {"clean/", "trace/", "deactivate/"}) {
      // An infinite tolerance: nothing fails, the report gives the worst relative error.
      const auto r = test::compare_with_golden(golden.string(), out.string(), {prefix}, 1e30);
      std::cout << "  " << m << " " << prefix << ": " << r.datasets_checked
                << " datasets, worst max|diff|/max|golden| = " << r.worst_ratio << " (" << r.worst_dataset << ")\n";
      BOOST_TEST(r.datasets_checked > 0);
      // Not a conformance bound: a sanity bound that catches a broken bf16 path (wrong layout,
      // unconverted weights), far above bf16 rounding (~4e-3 relative per operand).
      BOOST_TEST(r.worst_ratio < 0.5, m << " " << prefix << " bf16 error " << r.worst_ratio);
    }
  }
  std::cout << std::flush;
  fs::remove_all(tmp);
}
