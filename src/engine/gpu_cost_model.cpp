// The GPU cost model of calibration.h (docs/distribution.md, "Planning a study: rates and the GPU
// cost model"): a roofline per layer pass from published peak numbers and assumed efficiencies.
// Not measured: its source says so.
#include <algorithm>
#include <cmath>

#include <fmt/format.h>

#include "engine/calibration.h"
#include "model/model_cost.h"
#include "util/message.h"

namespace moetrace {
namespace {

struct GpuPeak {
  const char* name;        // as `gpu_cost_model` takes it
  const char* model;       // the part the numbers are for
  double bf16_flops;       // dense bf16 tensor-core FLOP/s (no sparsity)
  double hbm_bytes_per_s;  // HBM bandwidth
};

// Vendor data sheets (NVIDIA H100 SXM5, H200 SXM, A100 SXM4 80GB).
constexpr GpuPeak kGpuPeaks[] = {
    {"h100", "H100 SXM", 989e12, 3.35e12},
    {"h200", "H200 SXM", 989e12, 4.8e12},
    {"a100", "A100 SXM 80GB", 312e12, 2.0e12},
};

// Assumed shares of the peaks the engine reaches (uncalibrated): MoE layers are many small grouped
// products (a few rows per expert), so well below peak compute; streaming weights reaches more of
// the bandwidth.
constexpr double kGpuFlopEfficiency = 0.35;
constexpr double kGpuBandwidthEfficiency = 0.6;
// Fixed cost of one layer of one call: kernel launches and the routing's copy to the host.
constexpr double kGpuLayerPassSeconds = 100e-6;
constexpr double kWeightBytes = 2;      // bf16 weights (cuda-bf16)
constexpr double kActivationBytes = 4;  // float32 activations
// Rows the model is tabulated at (powers of 4).
constexpr int kGpuRows[] = {1, 4, 16, 64, 256, 1024, 4096};

struct LayerBytes {
  double dense = 0;       // attention projections and router of one layer
  double expert = 0;      // one expert
  double per_token = 0;   // activations one token row reads and writes in one layer
};

LayerBytes layer_bytes(const ModelConfig& c, double mean_context) {
  const double h = c.hidden_size, q = static_cast<double>(c.num_heads) * c.head_dim;
  const double kv = static_cast<double>(c.num_kv_heads) * c.head_dim, in = c.expert_width;
  LayerBytes b;
  b.dense = kWeightBytes * (h * (q + 2 * kv) + q * h + h * c.num_experts);
  b.expert = kWeightBytes * 3 * h * in;
  // Each product's input and output once, the K/V of the context once, the top_k experts' rows.
  b.per_token = kActivationBytes * (4 * h + 2 * q + 2 * kv + 2 * kv * mean_context + c.num_experts +
                                    c.top_k * (2 * h + 3 * in));
  return b;
}

// Expected experts a layer pass of `rows` rows touches, routing uniform over the experts.
double touched_experts(const ModelConfig& c, double rows) {
  const double e = c.num_experts;
  return e * (1 - std::pow(1 - static_cast<double>(c.top_k) / e, rows));
}

// Seconds of one layer pass of `rows` rows, beyond the fixed launch cost.
double pass_seconds(const GpuPeak& g, const ModelConfig& c, double rows, double mean_context) {
  const double flops = rows * matmul_flops_per_layer_token(c, mean_context);
  const LayerBytes b = layer_bytes(c, mean_context);
  const double bytes = b.dense + touched_experts(c, rows) * b.expert + rows * b.per_token;
  return std::max(flops / (g.bf16_flops * kGpuFlopEfficiency), bytes / (g.hbm_bytes_per_s * kGpuBandwidthEfficiency));
}

}  // namespace

CalibratedRates gpu_cost_model(const std::string& gpu, const ModelConfig& config, std::string* error,
                               double mean_context) {
  const GpuPeak* g = nullptr;
  std::string known;
  for (const GpuPeak& p : kGpuPeaks) {
    if (gpu == p.name) g = &p;
    known += known.empty() ? p.name : fmt::format(", {}", p.name);
  }
  CalibratedRates r;
  if (!g) {
    if (error) *error = fmt::format("unknown GPU '{}' for the cost model (known: {})", gpu, known);
    return r;
  }
  r.key.host = "any";
  r.key.cpu_model = "any";
  r.key.backend = "cuda-bf16";
  r.key.threads = 1;
  r.key.versions = "gpu cost model 1";
  r.key.shape = rate_shape(config);
  r.seconds_per_layer_pass = kGpuLayerPassSeconds;
  for (bool prepare : {true, false})
    for (int rows : kGpuRows)
      r.points.push_back({prepare, static_cast<double>(rows), pass_seconds(*g, config, rows, mean_context) / rows, 1, 0});
  r.source = fmt::format(
      "GPU cost model (uncalibrated): {}, {:.0f} TFLOP/s bf16 dense x {}, {:.2f} TB/s HBM x {}, {:.0f} us per layer "
      "pass, bf16 weights, mean context {:g}",
      g->model, g->bf16_flops / 1e12, kGpuFlopEfficiency, g->hbm_bytes_per_s / 1e12, kGpuBandwidthEfficiency,
      kGpuLayerPassSeconds * 1e6, mean_context);
  r.measured_at = utc_now();
  return r;
}

}  // namespace moetrace
