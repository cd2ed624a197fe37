// The `cpu-bf16` backend against the float64 goldens of ../shared/fixtures: every fixture model is
// replayed on the fast path (clean/, trace/, deactivate/) with bf16 weights and product operands
// (float32 accumulation, router and norms), natively (AVX512_BF16 through oneDNN where the CPU has
// it) and on the forced portable fallback. The worst max|diff| / max|golden| per group is printed
// (docs/benchmarks.md records it) and must stay within kBf16Tolerance.
#define BOOST_TEST_MODULE cpu_bf16_replay
#include <boost/test/unit_test.hpp>

#include <cstdlib>
#include <filesystem>
#include <iostream>

#include "support/fixture_replay.h"
#include "support/test_paths.h"

namespace fs = std::filesystem;
using namespace moetrace;

namespace {

// Not a precision bound but a sanity bound, as for cuda-bf16 (docs/cuda.md): bf16 rounds each
// product operand to 8 significant bits (~4e-3 relative), which gives ~5e-3 on logits, but a
// routing near-tie that bf16 flips changes a row's experts, and then that row's MoE output differs
// at O(1) relative (measured worst 0.31, Mixtral routed_coalition_subject; docs/benchmarks.md). A
// broken bf16 path (wrong layout, unconverted weights) exceeds 0.5 everywhere.
constexpr double kBf16Tolerance = 0.5;
const std::vector<std::string> kModels = {"mixtral-tiny", "qwen3moe-tiny", "olmoe-tiny"};

}  // namespace

BOOST_AUTO_TEST_CASE(bf16_error_against_the_goldens_native_and_fallback) {
  const fs::path tmp = test::fresh_temp_dir("cpu-bf16-replay");
  std::cout << "\ncpu-bf16 against the float64 goldens (worst max|diff|/max|golden| per group):\n";
  for (const std::string& m : kModels) {
    const fs::path golden = test::fixtures_dir() / (m + ".golden.h5");
    const fs::path native = tmp / (m + ".native.h5"), fallback = tmp / (m + ".fallback.h5");
    ::unsetenv("MOETRACE_CPU_BF16_FALLBACK");
    test::replay_fixture("cpu-bf16", test::fixtures_dir() / m, golden, native, PatchMode::FastPath, true);
    ::setenv("MOETRACE_CPU_BF16_FALLBACK", "1", 1);
    test::replay_fixture("cpu-bf16", test::fixtures_dir() / m, golden, fallback, PatchMode::FastPath, true);
    ::unsetenv("MOETRACE_CPU_BF16_FALLBACK");
    for (const std::string prefix : {"clean/", "trace/", "deactivate/"}) {
      for (const auto& [label, file] : {std::pair{"native", native}, std::pair{"fallback", fallback}}) {
        // An infinite tolerance for floats: the report gives the worst ratio; integer datasets
        // (topk_idx) may differ at routing near-ties and are counted, not failed.
        const auto r = test::compare_with_golden(golden.string(), file.string(), {prefix}, 1e30);
        std::cout << "  " << m << " " << prefix << " " << label << ": " << r.datasets_checked
                  << " datasets, worst " << r.worst_ratio << " (" << r.worst_dataset << "), "
                  << r.failures.size() << " integer datasets differ\n";
        BOOST_TEST(r.datasets_checked > 0);
        BOOST_TEST(r.worst_ratio <= kBf16Tolerance, m << " " << prefix << " " << label << " bf16 error " << r.worst_ratio);
      }
    }
  }
  std::cout << std::flush;
  fs::remove_all(tmp);
}
