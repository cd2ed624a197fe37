// What the rate calibration of `moetrace plan` costs and how much its rates vary (a benchmark, not a
// test): calibrate_rates (engine/calibration.h) --repeat times per backend at real model widths,
// printing each calibration's own wall time, its per-layer-pass cost and, per point, the seconds per
// layer-token step of every repeat with their spread ((max - min) / median over the repeats).
//
//   moetrace_calibration_bench [--model qwen3|mixtral] [--backends cpu,cpu-bf16] [--threads 2]
//                              [--repeat 3] [--budget 60] [--validate]
#include <algorithm>
#include <cstdlib>
#include <cstdio>
#include <map>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>
#include <fmt/format.h>
#include <fmt/ranges.h>
#ifdef _OPENMP
#include <omp.h>
#endif

#include "backend/backend_registry.h"
#include "engine/calibration.h"
#include "model/model_cost.h"
#include "util/error.h"

using namespace moetrace;

namespace {

ModelConfig widths(int hidden, int heads, int kv_heads, int head_dim, int experts, int top_k, int inter, QkNorm qk) {
  ModelConfig c;
  c.arch = qk == QkNorm::PerHead ? Architecture::Qwen3Moe : Architecture::Mixtral;
  c.hidden_size = hidden;
  c.num_layers = 2;
  c.num_heads = heads;
  c.num_kv_heads = kv_heads;
  c.head_dim = head_dim;
  c.num_experts = experts;
  c.top_k = top_k;
  c.expert_width = inter;
  c.rms_norm_eps = 1e-6;
  c.rope_theta = 1e6;
  c.norm_topk_prob = qk == QkNorm::PerHead;
  c.qk_norm = qk;
  return c;
}

// The host's 1-minute load average (other work on a shared host shows in the spread).
double load_average() {
  double l[1] = {0};
  return getloadavg(l, 1) == 1 ? l[0] : -1;
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  const std::size_t n = v.size();
  return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

std::string spread(const std::vector<double>& v) {
  const auto [lo, hi] = std::minmax_element(v.begin(), v.end());
  return fmt::format("{:.1f}%", 100 * (*hi - *lo) / median(v));
}

// Held-out check: a further calibration at row counts between the default ones (its medians are
// measured call times) against what each earlier calibration predicts for those calls.
void validate_rates(const std::string& name, const ModelConfig& c, int threads, double budget,
                    const std::vector<CalibratedRates>& runs) {
  auto backend = make_backend(name);
  CalibrationOptions o;
  o.budget_seconds = budget;
  o.threads = threads;
  o.rows = {16, 64, 256, 1024};
  const CalibratedRates held_out = calibrate_rates(*backend, c, o);
  std::printf("\nheld-out calls (rows between the calibrated ones): measured s per call vs predicted by each repeat\n\n");
  std::printf("| kind | rows | measured s (median of %s) | predicted s | error |\n|------|-----:|------:|------:|------:|\n",
              "its calls");
  for (const RatePoint& p : held_out.points) {
    const CallShape call{.layers = 2, .steps = static_cast<std::uint64_t>(2 * p.rows), .prepare = p.prepare};
    const double measured = predict_seconds(held_out, call);  // at its own point: its median exactly
    std::vector<double> predicted, error;
    for (const CalibratedRates& r : runs) {
      predicted.push_back(predict_seconds(r, call));
      error.push_back(100 * (predicted.back() - measured) / measured);
    }
    std::printf("| %s | %.0f | %.4f (%d) | %s | %s |\n", p.prepare ? "prepare" : "patched", p.rows, measured, p.samples,
                fmt::format("{:.4f}", fmt::join(predicted, " / ")).c_str(),
                fmt::format("{:+.0f}%", fmt::join(error, " / ")).c_str());
  }
}

void bench_backend(const std::string& name, const ModelConfig& c, int threads, int repeat, double budget, bool validate) {
  std::vector<CalibratedRates> runs;
  for (int r = 0; r < repeat; ++r) {
    auto backend = make_backend(name);
    CalibrationOptions o;
    o.budget_seconds = budget;
    o.threads = threads;
    const double load0 = load_average();
    runs.push_back(calibrate_rates(*backend, c, o));
    std::printf("# %s calibration %d: %.1f s; 1-minute load average %.2f before, %.2f after\n", name.c_str(), r + 1,
                runs.back().calibration_seconds, load0, load_average());
  }
  std::vector<double> cost, pass;
  for (const CalibratedRates& r : runs) {
    cost.push_back(r.calibration_seconds);
    pass.push_back(r.seconds_per_layer_pass);
  }
  std::printf("\n## backend %s, %d thread(s), budget %.0f s: calibration wall s %s (spread %s); per-layer-pass "
              "cost ms %s\n\n", name.c_str(), threads, budget, fmt::format("{:.1f}", fmt::join(cost, " / ")).c_str(),
              spread(cost).c_str(), fmt::format("{:.3f}", fmt::join(pass, " / ")).c_str());
  std::printf("| kind | rows | us per layer-token step (each repeat) | samples | spread over repeats |\n");
  std::printf("|------|-----:|------:|------:|------:|\n");
  std::map<std::pair<bool, double>, std::vector<double>> by_point;
  std::map<std::pair<bool, double>, std::vector<int>> samples;
  for (const CalibratedRates& r : runs)
    for (const RatePoint& p : r.points) {
      by_point[{!p.prepare, p.rows}].push_back(p.seconds_per_step * 1e6);
      samples[{!p.prepare, p.rows}].push_back(p.samples);
    }
  for (const auto& [k, v] : by_point)
    std::printf("| %s | %.0f | %s | %s | %s |\n", k.first ? "patched" : "prepare", k.second,
                fmt::format("{:.2f}", fmt::join(v, " / ")).c_str(),
                fmt::format("{}", fmt::join(samples[k], "/")).c_str(), v.size() > 1 ? spread(v).c_str() : "-");
  if (validate) validate_rates(name, c, threads, budget, runs);
  std::printf("\nkey: host %s | cpu %s | versions %s | shape %s\nsource (last): %s\n", runs.back().key.host.c_str(),
              runs.back().key.cpu_model.c_str(), runs.back().key.versions.c_str(), runs.back().key.shape.c_str(),
              runs.back().source.c_str());
  std::fflush(stdout);
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"moetrace calibration benchmark: cost and spread of the rate calibration at real widths"};
  std::string model = "qwen3";
  std::vector<std::string> backends{"cpu", "cpu-bf16"};
  int threads = 2, repeat = 3;
  double budget = 60;
  bool validate = false;
  app.add_option("--model", model, "qwen3 (Qwen3-30B-A3B widths) or mixtral (Mixtral-8x7B widths)")
      ->check(CLI::IsMember({"qwen3", "mixtral"}))->capture_default_str();
  app.add_option("--backends", backends, "backends")->delimiter(',')->capture_default_str();
  app.add_option("--threads", threads, "OpenMP threads")->check(CLI::PositiveNumber)->capture_default_str();
  app.add_option("--repeat", repeat, "calibrations per backend")->check(CLI::PositiveNumber)->capture_default_str();
  app.add_option("--budget", budget, "calibration budget in seconds")->check(CLI::PositiveNumber)->capture_default_str();
  app.add_flag("--validate", validate, "then a held-out calibration at rows 16, 64, 256, 1024 checks the predictions");
  CLI11_PARSE(app, argc, argv);
  try {
#ifdef _OPENMP
    omp_set_num_threads(threads);
#endif
    const ModelConfig c = model == "qwen3" ? widths(2048, 32, 4, 128, 128, 8, 768, QkNorm::PerHead)
                                           : widths(4096, 32, 8, 128, 8, 2, 14336, QkNorm::None);
    std::printf("# moetrace_calibration_bench: %s widths (%s), %.1f MFLOP per layer-token step at context 16, "
                "experts' share %.2f\n", model.c_str(), rate_shape(c).c_str(),
                matmul_flops_per_layer_token(c, 16) / 1e6, moe_flop_fraction(c, 16));
    for (const std::string& b : backends) bench_backend(b, c, threads, repeat, budget, validate);
  } catch (const InputError& e) {
    std::fprintf(stderr, "moetrace_calibration_bench: error: %s\n", e.what());
    return 2;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "moetrace_calibration_bench: internal error: %s\n", e.what());
    return 3;
  }
  return 0;
}
