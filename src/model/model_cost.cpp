#include "model/model_cost.h"

namespace moetrace {
namespace {

struct LayerFlops {
  double attention = 0;  // projections, scores and weighted sum
  double router = 0;
  double experts = 0;
  double total() const { return attention + router + experts; }
};

// Widths as doubles: no int overflow for any config parse_model_config accepts.
LayerFlops layer_flops(const ModelConfig& c, double mean_context) {
  const double h = c.hidden_size, q = static_cast<double>(c.num_heads) * c.head_dim;
  const double kv = static_cast<double>(c.num_kv_heads) * c.head_dim;
  const double ctx = mean_context > 0 ? mean_context : 0;
  LayerFlops f;
  f.attention = 2 * h * (q + 2 * kv)  // q, k, v projections
                + 2 * q * h           // o projection
                + 2 * 2 * q * ctx;    // scores q.k and weighted sum of v, every head over ctx keys
  f.router = 2 * h * c.num_experts;
  f.experts = static_cast<double>(c.top_k) * 3 * 2 * h * c.expert_width;  // gate, up [I, H]; down [H, I]
  return f;
}

}  // namespace

double matmul_flops_per_layer_token(const ModelConfig& config, double mean_context) {
  return layer_flops(config, mean_context).total();
}

double moe_flop_fraction(const ModelConfig& config, double mean_context) {
  const LayerFlops f = layer_flops(config, mean_context);
  return f.total() > 0 ? f.experts / f.total() : 0.0;
}

}  // namespace moetrace
