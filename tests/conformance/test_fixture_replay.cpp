// Conformance of the CPU backend against the float64 goldens of ../shared/fixtures: every dataset
// of every fixture model is recomputed from its inputs and must match within 1e-4 * max|golden|
// (topk_idx exactly). The fast path must agree with full recomputation, and a perturbed weight must
// make the check fail (so the check can fail at all).
#define BOOST_TEST_MODULE fixture_replay
#include <boost/test/unit_test.hpp>

#include <cstring>
#include <filesystem>
#include <fstream>

#include "backend/backend.h"
#include "engine/device_model.h"
#include "model/model_weights.h"
#include "protocols/replay.h"
#include "support/fixture_replay.h"
#include "support/test_paths.h"
#include "util/half_precision.h"

namespace fs = std::filesystem;
using namespace moetrace;

namespace {

constexpr double kTolerance = 1e-4;
const std::vector<std::string> kModels = {"mixtral-tiny", "qwen3moe-tiny", "olmoe-tiny"};

}  // namespace

BOOST_AUTO_TEST_CASE(every_fixture_dataset_matches_the_goldens_on_the_fast_path) {
  const fs::path tmp = test::fresh_temp_dir("replay");
  for (const std::string& m : kModels) {
    const fs::path out = tmp / (m + ".fast.h5");
    test::replay_fixture("cpu", test::fixtures_dir() / m, test::fixtures_dir() / (m + ".golden.h5"), out, PatchMode::FastPath, true);
    auto report = test::compare_with_golden((test::fixtures_dir() / (m + ".golden.h5")).string(), out.string(),
                                            {"clean/", "trace/", "deactivate/logits_last"}, kTolerance);
    test::expect_clean(report, m + " (fast path)");
  }
  fs::remove_all(tmp);
}

BOOST_AUTO_TEST_CASE(full_recompute_matches_the_goldens_and_the_fast_path) {
  const fs::path tmp = test::fresh_temp_dir("replay-full");
  for (const std::string& m : kModels) {
    const fs::path golden = test::fixtures_dir() / (m + ".golden.h5");
    const fs::path fast = tmp / (m + ".fast.h5"), full = tmp / (m + ".full.h5");
    const std::uint64_t fast_steps = test::replay_fixture("cpu", test::fixtures_dir() / m, golden, fast, PatchMode::FastPath, true);
    const std::uint64_t full_steps =
        test::replay_fixture("cpu", test::fixtures_dir() / m, golden, full, PatchMode::FullRecompute, true);
    test::expect_clean(test::compare_with_golden(golden.string(), full.string(), {"trace/"}, kTolerance),
                 m + " (full recompute)");
    // Both paths compute the same runs; only the batching differs, so they agree far below the
    // golden tolerance on every restoration dataset (the final-position ones included).
    test::expect_clean(test::compare_files(fast.string(), full.string(),
                                     {"trace/corrupted", "trace/expert_last", "trace/routed_coalition_last",
                                      "trace/heat_hidden", "trace/heat_attn", "trace/heat_moe", "trace/moe_subject",
                                      "trace/attn_subject", "trace/moe_last_subject", "trace/moe_window3_subject",
                                      "trace/expert_subject", "trace/routed_coalition_subject"},
                                     1e-5),
                 m + " fast vs full");
    BOOST_TEST_MESSAGE(m << ": layer-token steps fast " << fast_steps << " vs full " << full_steps);
    BOOST_TEST(fast_steps < full_steps);
  }
  fs::remove_all(tmp);
}

BOOST_AUTO_TEST_CASE(a_perturbed_weight_fails_the_check) {
  const fs::path tmp = test::fresh_temp_dir("perturbed");
  const std::string m = "qwen3moe-tiny";
  fs::copy(test::fixtures_dir() / m, tmp / m);
  // Double element 0 of the final norm weight (bf16 exponent + 1) inside the safetensors file.
  {
    SafetensorsFile st(tmp / m / "model.safetensors");
    const TensorView& w = st.tensors().at("model.norm.weight");
    const std::size_t offset = static_cast<std::size_t>(w.data - st.mapped_bytes());
    std::uint16_t v;
    std::memcpy(&v, w.data, 2);
    const float doubled = 2.0f * bf16_to_float(v);
    std::uint16_t nv = float_to_bf16(doubled);
    std::fstream f(tmp / m / "model.safetensors", std::ios::in | std::ios::out | std::ios::binary);
    f.seekp(static_cast<std::streamoff>(offset));
    f.write(reinterpret_cast<const char*>(&nv), 2);
  }
  const fs::path golden = test::fixtures_dir() / (m + ".golden.h5");
  test::replay_fixture("cpu", tmp / m, golden, tmp / "perturbed.h5", PatchMode::FastPath, false);
  auto report = test::compare_with_golden(golden.string(), (tmp / "perturbed.h5").string(), {"clean/"}, kTolerance);
  BOOST_TEST(!report.failures.empty());
  bool logits_flagged = false;
  for (const auto& f : report.failures) logits_flagged |= f.find("clean/logits") != std::string::npos;
  BOOST_TEST(logits_flagged);
  // Layers are untouched by the final norm: the residual stream must still match.
  for (const auto& f : report.failures) BOOST_TEST(f.find("clean/hidden") == std::string::npos);
  fs::remove_all(tmp);
}
