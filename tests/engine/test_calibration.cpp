// Rates for `moetrace plan` (engine/calibration.h): calibration on the fixture widths, prediction,
// the rates file as hostile input, the GPU cost model, and the FLOP count of model/model_cost.h
// against published parameter counts. No test here depends on how fast the machine is.
#define BOOST_TEST_MODULE calibration
#include <boost/test/unit_test.hpp>

#include <cmath>
#include <fstream>
#include <string>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "backend/backend.h"
#include "engine/calibration.h"
#include "model/model_config.h"
#include "model/model_cost.h"
#include "support/test_paths.h"
#include "util/error.h"

using namespace moetrace;
namespace fs = std::filesystem;

namespace {

CalibrationOptions tiny_options() {
  CalibrationOptions o;
  o.budget_seconds = 1;
  o.rows = {4, 16, 64};
  o.repeats = 2;
  o.prompt_tokens = 8;
  o.threads = 1;
  return o;
}

CalibratedRates calibrate_fixture(const std::string& name) {
  const ModelConfig c = load_model_config(test::fixtures_dir() / name / "config.json");
  auto backend = make_cpu_backend();
  return calibrate_rates(*backend, c, tiny_options());
}

// A small valid rates file's JSON (two entries), written by save_rates.
nlohmann::json saved_json(const fs::path& path, const std::vector<CalibratedRates>& list) {
  save_rates(path, list);
  std::ifstream in(path);
  return nlohmann::json::parse(in);
}

CalibratedRates hand_rates() {
  CalibratedRates r;
  r.key = {"host-a", "Some CPU @ 2GHz", "cpu", 2, "moetrace 0.1.0; cpu onednn=3.5.0", "64,4,2,32,16,4,48"};
  r.points = {{true, 10, 1e-3, 3, 0.1}, {true, 1000, 1e-5, 3, 0.05}, {false, 10, 2e-3, 2, 0.0}};
  r.seconds_per_layer_pass = 0.5;
  r.calibration_seconds = 61.5;
  r.source = "calibrated on host-a";
  r.measured_at = "2026-12-06T20:00:00Z";
  return r;
}

// load_rates on `j` written to a file: the InputError's message (empty when it loads).
std::string load_error(const nlohmann::json& j, const std::string& raw = "") {
  const fs::path p = test::fresh_temp_dir("rates") / "rates.json";
  std::ofstream(p) << (raw.empty() ? j.dump() : raw);
  try {
    load_rates(p);
  } catch (const InputError& e) {
    const std::string m = e.what();
    BOOST_TEST(m.find(p.string()) != std::string::npos, "message names the file: " + m);
    return m;
  }
  return "";
}

bool mentions(const std::string& message, const std::string& part) {
  const bool ok = message.find(part) != std::string::npos;
  if (!ok) BOOST_TEST_MESSAGE("message: " << message);
  return ok;
}

ModelConfig widths(int hidden, int layers, int heads, int kv_heads, int head_dim, int experts, int top_k, int inter) {
  ModelConfig c;
  c.hidden_size = hidden;
  c.num_layers = layers;
  c.num_heads = heads;
  c.num_kv_heads = kv_heads;
  c.head_dim = head_dim;
  c.num_experts = experts;
  c.top_k = top_k;
  c.expert_width = inter;
  return c;
}

}  // namespace

BOOST_AUTO_TEST_CASE(calibration_gives_positive_rates_and_growing_predictions) {
  for (const char* m : {"qwen3moe-tiny", "mixtral-tiny", "olmoe-tiny"}) {
    BOOST_TEST_CONTEXT(m) {
      const CalibratedRates r = calibrate_fixture(m);
      const ModelConfig c = load_model_config(test::fixtures_dir() / m / "config.json");
      BOOST_TEST(r.key.backend == "cpu");
      BOOST_TEST(r.key.threads == 1);
      BOOST_TEST(r.key.shape == fmt::format("{},{},{},{},{},{},{}", c.hidden_size, c.num_heads, c.num_kv_heads,
                                            c.head_dim, c.num_experts, c.top_k, c.expert_width));
      BOOST_TEST(!r.key.host.empty());
      BOOST_TEST(r.calibration_seconds > 0);
      BOOST_TEST(std::isfinite(r.seconds_per_layer_pass));
      BOOST_TEST(r.seconds_per_layer_pass >= 0);
      int kinds[2] = {0, 0};
      for (const RatePoint& p : r.points) {
        ++kinds[p.prepare ? 1 : 0];
        BOOST_TEST(std::isfinite(p.seconds_per_step));
        BOOST_TEST(p.seconds_per_step > 0);
        BOOST_TEST(p.samples >= 1);
        BOOST_TEST(p.rows >= 4);
      }
      BOOST_TEST(kinds[0] >= 1);
      BOOST_TEST(kinds[1] >= 1);
      for (bool prepare : {true, false}) {
        double last = 0;
        for (std::uint64_t steps : {2, 8, 32, 128, 1024, 100000}) {
          const double s = predict_seconds(r, {.layers = 2, .steps = steps, .prepare = prepare});
          BOOST_TEST(std::isfinite(s));
          BOOST_TEST(s >= last * (1 - 1e-12));  // equal where a larger call measured no slower (rounding)
          last = s;
        }
        BOOST_TEST(predict_seconds(r, {.layers = 2, .steps = 200000, .prepare = prepare}) > last);
        BOOST_TEST(predict_seconds(r, {.layers = 0, .steps = 0, .prepare = prepare}) == 0.0);
      }
    }
  }
}

BOOST_AUTO_TEST_CASE(prediction_follows_the_documented_formula) {
  const CalibratedRates r = hand_rates();
  // layers * pass + steps * rate(rows); rate log-log between the points, clamped outside.
  BOOST_TEST(predict_seconds(r, {.layers = 2, .steps = 20, .prepare = true}) == 1.0 + 20 * 1e-3,
             boost::test_tools::tolerance(1e-12));
  BOOST_TEST(predict_seconds(r, {.layers = 2, .steps = 200, .prepare = true}) == 1.0 + 200 * 1e-4,
             boost::test_tools::tolerance(1e-12));
  BOOST_TEST(predict_seconds(r, {.layers = 2, .steps = 2, .prepare = true}) == 1.0 + 2 * 1e-3,
             boost::test_tools::tolerance(1e-12));
  BOOST_TEST(predict_seconds(r, {.layers = 1, .steps = 5000, .prepare = true}) == 0.5 + 5000 * 1e-5,
             boost::test_tools::tolerance(1e-12));
  // Patched calls use their own point.
  BOOST_TEST(predict_seconds(r, {.layers = 3, .steps = 3000, .prepare = false}) == 1.5 + 3000 * 2e-3,
             boost::test_tools::tolerance(1e-12));
}

BOOST_AUTO_TEST_CASE(rates_file_round_trip_and_replacement) {
  const fs::path p = test::fresh_temp_dir("rates") / "sub" / "rates.json";
  BOOST_TEST(load_rates(p).empty());  // no file yet: no rates
  CalibratedRates measured = calibrate_fixture("qwen3moe-tiny");
  std::vector<CalibratedRates> list{hand_rates(), measured};
  save_rates(p, list);
  const std::vector<CalibratedRates> back = load_rates(p);
  BOOST_TEST_REQUIRE(back.size() == 2u);
  BOOST_TEST((back[0] == list[0]));
  BOOST_TEST((back[1] == list[1]));
  BOOST_TEST(find_rates(back, measured.key) == &back[1]);
  RateKey other = measured.key;
  other.threads += 1;
  BOOST_TEST(find_rates(back, other) == nullptr);

  CalibratedRates again = hand_rates();
  again.seconds_per_layer_pass = 0.25;
  replace_rates(list, again);
  BOOST_TEST(list.size() == 2u);
  BOOST_TEST(list[0].seconds_per_layer_pass == 0.25);
  again.key.backend = "cpu-bf16";
  replace_rates(list, again);
  BOOST_TEST(list.size() == 3u);
  for (const auto& e : fs::directory_iterator(p.parent_path()))
    BOOST_TEST(e.path().filename() == "rates.json", "no temporary file left: " + e.path().string());
}

BOOST_AUTO_TEST_CASE(hostile_rates_files_are_input_errors_naming_the_key) {
  const fs::path p = test::fresh_temp_dir("rates") / "rates.json";
  const nlohmann::json good = saved_json(p, {hand_rates()});
  BOOST_TEST(load_error(good).empty());

  BOOST_TEST(mentions(load_error(good, "{ not json"), "not valid JSON"));
  nlohmann::json j = good;
  j["entries"][0]["points"][0].erase("seconds_per_step");
  BOOST_TEST(mentions(load_error(j), "entries[0].points[0].seconds_per_step: missing"));
  j = good;
  j["entries"][0]["points"][1]["seconds_per_step"] = -1e-3;
  BOOST_TEST(mentions(load_error(j), "entries[0].points[1].seconds_per_step: not a positive number"));
  j = good;
  j["entries"][0]["points"][1]["seconds_per_step"] = nullptr;  // what a NaN becomes in JSON
  BOOST_TEST(mentions(load_error(j), "entries[0].points[1].seconds_per_step: not a positive number"));
  j = good;
  j["entries"][0]["seconds_per_layer_pass"] = -0.5;
  BOOST_TEST(mentions(load_error(j), "entries[0].seconds_per_layer_pass: not a non-negative number"));
  j = good;
  j["entries"][0]["key"]["threads"] = "2";
  BOOST_TEST(mentions(load_error(j), "entries[0].key.threads: not an integer"));
  j = good;
  j["entries"][0]["key"]["host"] = 7;
  BOOST_TEST(mentions(load_error(j), "entries[0].key.host: not a string"));
  j = good;
  j["entries"][0]["points"] = nlohmann::json::array();
  BOOST_TEST(mentions(load_error(j), "entries[0].points: empty"));
  j = good;
  j["entries"][0]["points"] = "none";
  BOOST_TEST(mentions(load_error(j), "entries[0].points: not a list"));
  j = good;
  j["entries"][0]["points"][2]["kind"] = "warm";
  BOOST_TEST(mentions(load_error(j), "entries[0].points[2].kind"));
  j = good;
  j["entries"][0]["points"][1]["rows"] = 10;  // the same rows as the point before it
  BOOST_TEST(mentions(load_error(j), "entries[0].points[1].rows: not above"));
  j = good;
  j["entries"][0]["extra"] = 1;
  BOOST_TEST(mentions(load_error(j), "entries[0].extra: unknown key"));
  j = good;
  j["entries"].push_back(good["entries"][0]);
  BOOST_TEST(mentions(load_error(j), "entries[1].key: the same key"));
  j = good;
  j["moetrace_rates"] = 2;
  BOOST_TEST(mentions(load_error(j), "moetrace_rates: not an integer in [1, 1]"));
  BOOST_TEST(mentions(load_error(nlohmann::json::array()), "(top level): not an object"));
  // A folder where the file belongs.
  BOOST_CHECK_THROW(load_rates(p.parent_path()), InputError);
}

BOOST_AUTO_TEST_CASE(gpu_cost_model_known_and_unknown) {
  const ModelConfig qwen = widths(2048, 48, 32, 4, 128, 128, 8, 768);
  std::string error;
  const CalibratedRates none = gpu_cost_model("v100", qwen, &error);
  BOOST_TEST(none.points.empty());
  BOOST_TEST(mentions(error, "v100"));
  BOOST_TEST(mentions(error, "h100, h200, a100"));
  error.clear();
  const CalibratedRates h100 = gpu_cost_model("h100", qwen, &error);
  const CalibratedRates a100 = gpu_cost_model("a100", qwen, &error);
  BOOST_TEST(error.empty());
  BOOST_TEST(mentions(h100.source, "GPU cost model (uncalibrated)"));
  BOOST_TEST_REQUIRE(h100.points.size() == a100.points.size());
  for (std::size_t i = 0; i < h100.points.size(); ++i) {
    BOOST_TEST(h100.points[i].seconds_per_step > 0);
    // An A100 has less of both peak compute and bandwidth than an H100.
    BOOST_TEST(a100.points[i].seconds_per_step > h100.points[i].seconds_per_step);
  }
  // Never faster than the H100's peak: 989e12 bf16 FLOP/s (data sheet), at any rows.
  const double step_flops = matmul_flops_per_layer_token(qwen, 16);
  for (std::uint64_t steps : {1, 64, 4096, 1 << 20}) {
    const double s = predict_seconds(h100, {.layers = 1, .steps = steps, .prepare = false});
    BOOST_TEST(s >= steps * step_flops / 989e12);
  }
}

// Published counts, not this code: Qwen3-30B-A3B (model card, hf.co/Qwen/Qwen3-30B-A3B): 30.5B
// parameters, 29.9B of them non-embedding, 3.3B activated per token. The activated parameters
// without the embedding and read-out tables (30.5B - 29.9B = 0.6B) are 2.7B; a forward does
// 2 FLOPs per activated weight, so about 5.4e9 matrix FLOPs per token over the 48 layers.
BOOST_AUTO_TEST_CASE(qwen3_30b_a3b_flops_match_its_active_parameters) {
  const ModelConfig c = widths(2048, 48, 32, 4, 128, 128, 8, 768);
  const double per_token = 48 * matmul_flops_per_layer_token(c, 16);
  BOOST_TEST(per_token == 2 * (3.3e9 - (30.5e9 - 29.9e9)), boost::test_tools::tolerance(0.10));
  // Experts: (30.5B - 3.3B) / (128 - 8) = 0.227B per expert over all layers, 8 active: 1.81B of 2.7B.
  BOOST_TEST(moe_flop_fraction(c, 16) == 8 * (30.5e9 - 3.3e9) / 120 / 2.7e9, boost::test_tools::tolerance(0.05));
}

// Mixtral 8x7B (Mistral AI's announcement, "Mixtral of experts", 2023-12-11): 46.7B parameters,
// 12.9B used per token. Its untied 32000 x 4096 embedding and read-out tables (0.262B) are no matrix
// products of a layer: about 2 x 12.64B FLOPs per token over the 32 layers.
BOOST_AUTO_TEST_CASE(mixtral_8x7b_flops_match_its_active_parameters) {
  const ModelConfig c = widths(4096, 32, 32, 8, 128, 8, 2, 14336);
  const double per_token = 32 * matmul_flops_per_layer_token(c, 16);
  BOOST_TEST(per_token == 2 * (12.9e9 - 2.0 * 32000 * 4096), boost::test_tools::tolerance(0.10));
  // Experts: (46.7B - 12.9B) / (8 - 2) = 5.63B per expert over all layers, 2 active: 11.27B of 12.64B.
  BOOST_TEST(moe_flop_fraction(c, 16) == 2 * (46.7e9 - 12.9e9) / 6 / (12.9e9 - 2.0 * 32000 * 4096),
             boost::test_tools::tolerance(0.05));
  // Attention over a longer context costs more, and only outside the experts.
  BOOST_TEST(matmul_flops_per_layer_token(c, 4096) > matmul_flops_per_layer_token(c, 16));
  BOOST_TEST(moe_flop_fraction(c, 4096) < moe_flop_fraction(c, 16));
}
