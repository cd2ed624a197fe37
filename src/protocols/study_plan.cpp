#include "protocols/study_plan.h"

#include <algorithm>
#include <set>

#include "results/results_file.h"

namespace moetrace {

int weight_value_bytes(const std::string& backend) {
  return backend.size() > 5 && backend.compare(backend.size() - 5, 5, "-bf16") == 0 ? 2 : 4;
}

WeightBytes model_weight_bytes(const ModelConfig& m, const std::string& backend) {
  const std::uint64_t b = static_cast<std::uint64_t>(weight_value_bytes(backend));
  const std::uint64_t H = static_cast<std::uint64_t>(m.hidden_size), V = static_cast<std::uint64_t>(m.vocab_size);
  const std::uint64_t q = static_cast<std::uint64_t>(m.num_heads) * m.head_dim;
  const std::uint64_t kv = static_cast<std::uint64_t>(m.num_kv_heads) * m.head_dim;
  const std::uint64_t attention = H * q + 2 * H * kv + q * H + 2 * q + 2 * H;  // projections, q/k norms, layer norms
  const std::uint64_t router = static_cast<std::uint64_t>(m.num_experts) * H;
  const std::uint64_t expert = 3 * H * static_cast<std::uint64_t>(m.expert_width);
  WeightBytes w;
  w.replicated = b * ((V * H) * (m.tie_word_embeddings ? 1 : 2) + H +
                      static_cast<std::uint64_t>(m.num_layers) * (attention + router));
  w.experts = b * static_cast<std::uint64_t>(m.num_layers) * static_cast<std::uint64_t>(m.num_experts) * expert;
  return w;
}

std::uint64_t activation_bytes_per_row(const ModelConfig& m) {
  const std::uint64_t H = static_cast<std::uint64_t>(m.hidden_size), k = static_cast<std::uint64_t>(m.top_k);
  const std::uint64_t q = static_cast<std::uint64_t>(m.num_heads) * m.head_dim;
  const std::uint64_t kv = static_cast<std::uint64_t>(m.num_kv_heads) * m.head_dim;
  // x, norms, attention output and update, MoE output; q, attention; k, v; logits; k slots; k experts'
  // gate, up and product rows.
  return sizeof(float) * (6 * H + 2 * q + 2 * kv + static_cast<std::uint64_t>(m.num_experts) + k * H +
                          3 * k * static_cast<std::uint64_t>(m.expert_width));
}

namespace {

std::uint64_t results_bytes(const RunConfig& c, const ModelConfig& m, const RunWorkPlan& w) {
  const std::uint64_t N = static_cast<std::uint64_t>(w.usable_cases), L = static_cast<std::uint64_t>(m.num_layers);
  std::vector<TableShape> tables;
  std::set<double> multipliers(c.robust_noise_multipliers.begin(), c.robust_noise_multipliers.end());
  multipliers.insert(c.noise_multiplier);
  for (std::size_t i = 0; i < multipliers.size(); ++i) tables.push_back({static_cast<std::uint64_t>(w.scan_records), 2});
  tables.push_back({N, L});  // layer sweep
  for (int i = 0; i < 3 * w.traced_layers; ++i) tables.push_back({N, static_cast<std::uint64_t>(m.num_experts)});
  tables.push_back({N, 5});  // controls (ControlColumn)
  tables.push_back({N, c.coalitions.size()});
  for (int i = 0; i < 3 && w.heatmap_cases > 0; ++i)
    tables.push_back({static_cast<std::uint64_t>(w.heatmap_cases), L * static_cast<std::uint64_t>(w.heatmap_tokens)});
  for (std::int64_t n : w.robustness_cases) tables.push_back({static_cast<std::uint64_t>(n), L});
  constexpr std::uint64_t kCaseBytes = 142;  // a case's ids, texts and token ids, stored (the demo's)
  const std::uint64_t thresholds = std::max<std::uint64_t>(1, c.robust_candidate_thresholds.size());
  const std::uint64_t records = w.robustness_cases.size() + c.robust_split_seeds.size() * thresholds;
  return estimate_results_bytes(tables, N * kCaseBytes, records, 0.6);
}

}  // namespace

StudyProfile run_study_profile(const RunConfig& config, const ModelConfig& model, const std::string& model_name,
                               const std::string& backend, const RunWorkPlan& work) {
  StudyProfile p;
  p.protocol = "run";
  p.model = model_name;
  p.backend = backend;
  p.layers = model.num_layers;
  p.experts = model.num_experts;
  p.top_k = model.top_k;
  p.hidden = model.hidden_size;
  p.stages = work.stages;
  p.weights = model_weight_bytes(model, backend);
  p.activation_bytes = activation_bytes_per_row(model) * static_cast<std::uint64_t>(work.max_call_rows) +
                       (work.peak_live_bytes > work.peak_cache_bytes ? work.peak_live_bytes - work.peak_cache_bytes : 0);
  p.prepared_cache_bytes = work.peak_cache_bytes;
  p.results_bytes = results_bytes(config, model, work);
  // EP: each rank sends the slot rows of the other ranks' experts and receives its own back: per
  // layer-token step top_k rows of H floats, of which (R-1)/R leave the rank; at R = 2, half.
  p.exchange_bytes_per_step = 0.5 * model.top_k * model.hidden_size * sizeof(float);
  return p;
}

}  // namespace moetrace
