#include "protocols/prepared_cases.h"

#include "protocols/case_scan.h"
#include "util/counter_rng.h"

namespace moetrace {
namespace {

std::size_t tensor_bytes(const TensorPtr& t) {
  return t ? static_cast<std::size_t>(t->rows()) * static_cast<std::size_t>(t->cols()) * sizeof(float) : 0;
}

std::size_t record_bytes(const RunRecord* r) {
  if (!r) return 0;
  std::size_t b = tensor_bytes(r->output);
  for (const LayerRecord& l : r->layers)
    b += tensor_bytes(l.input) + tensor_bytes(l.keys) + tensor_bytes(l.values) + tensor_bytes(l.attn_out) +
         tensor_bytes(l.moe_out) + tensor_bytes(l.updates) + l.router_logits.size() * sizeof(float) +
         l.routing.weights.size() * (sizeof(float) + sizeof(int));
  return b;
}

// Whether a prepared case's noised records hold `level` (Full: at the layers >= full_from).
bool covers(const TracedCase& tc, RecordLevel level, int full_from) {
  return level != RecordLevel::Full || (tc.noised_full_from >= 0 && tc.noised_full_from <= full_from);
}

}  // namespace

std::vector<float> subject_noise(std::uint64_t seed, std::int64_t case_id, int sample, int n, int hidden,
                                 double sigma) {
  std::vector<float> out(static_cast<std::size_t>(n) * hidden);
  NoiseStream(seed, static_cast<std::uint64_t>(case_id), static_cast<std::uint32_t>(sample))
      .fill_normal(out.data(), out.size(), sigma);
  return out;
}

std::size_t traced_case_bytes(const TracedCase& tc) {
  std::size_t b = record_bytes(tc.clean.record.get());
  for (const StreamOutput& o : tc.noised) b += record_bytes(o.record.get());
  for (const auto& n : tc.noise) b += n.size() * sizeof(float);
  return b;
}

std::size_t traced_case_bytes(const ModelConfig& mc, int tokens, int subject_tokens, int samples, int noised_full_from) {
  const std::size_t T = static_cast<std::size_t>(tokens), H = static_cast<std::size_t>(mc.hidden_size);
  const std::size_t kv = static_cast<std::size_t>(mc.num_kv_heads) * mc.head_dim, k = static_cast<std::size_t>(mc.top_k);
  const std::size_t base_layer = T * (H + 2 * kv) * sizeof(float);  // input, keys, values
  const std::size_t full_layer = base_layer + T * (2 * H + k * H) * sizeof(float)  // attn_out, moe_out, updates
                                 + T * mc.num_experts * sizeof(float)                // router logits
                                 + T * k * (sizeof(float) + sizeof(int));            // routing
  const std::size_t L = static_cast<std::size_t>(mc.num_layers), output = T * H * sizeof(float);
  const std::size_t clean = L * full_layer + output;
  const std::size_t from = noised_full_from < 0 ? L : static_cast<std::size_t>(noised_full_from);
  const std::size_t noised = from * base_layer + (L - from) * full_layer + (noised_full_from < 0 ? 0 : output);
  const std::size_t noise = static_cast<std::size_t>(subject_tokens) * H * sizeof(float);
  return clean + static_cast<std::size_t>(samples) * (noised + noise);
}

PreparedCases::PreparedCases(const RunConfig& config, CaseTracer& tracer, double sigma_base, std::size_t budget_bytes)
    : config_(config), tracer_(tracer), sigma_base_(sigma_base), budget_(budget_bytes) {}

std::vector<std::shared_ptr<const TracedCase>> PreparedCases::get(const std::vector<const UsableCase*>& cases,
                                                                   double multiplier, RecordLevel level, int full_from) {
  std::vector<std::shared_ptr<const TracedCase>> out(cases.size());
  std::vector<PrepareRequest> requests;
  std::vector<std::size_t> missing;
  std::vector<TracedCase*> extend;
  std::vector<Key> extend_keys;
  const int H = tracer_.engine().model().config.hidden_size;
  for (std::size_t i = 0; i < cases.size(); ++i) {
    const Key key{cases[i]->record.case_id, multiplier};
    auto it = kept_.find(key);
    if (it != kept_.end()) {
      out[i] = it->second.traced;
      if (covers(*it->second.traced, level, full_from)) {
        ++stats_.reused;
      } else {
        extend.push_back(it->second.traced.get());
        extend_keys.push_back(key);
      }
      continue;
    }
    const Prompt& p = cases[i]->prompt;
    PrepareRequest r{p, {}, level};
    for (int s = 0; s < config_.noise_samples; ++s)
      r.noise.push_back(subject_noise(config_.noise_seed, cases[i]->record.case_id, s, p.subject_end - p.subject_begin,
                                      H, sigma_base_ * multiplier));
    requests.push_back(std::move(r));
    missing.push_back(i);
  }
  if (!extend.empty()) {
    tracer_.record_noised_in_full(extend, full_from);
    stats_.extended += extend.size();
    for (const Key& key : extend_keys) keep(key, kept_.at(key).traced);  // re-sized, or let go
  }
  if (requests.empty()) return out;
  std::vector<TracedCase> prepared = tracer_.prepare_batch(std::move(requests));
  stats_.prepared += prepared.size();
  for (std::size_t k = 0; k < missing.size(); ++k) {
    const std::size_t i = missing[k];
    auto traced = std::make_shared<TracedCase>(std::move(prepared[k]));
    out[i] = traced;
    keep({cases[i]->record.case_id, multiplier}, std::move(traced));
  }
  return out;
}

// Keeps what fits; the first cases kept stay (a later stage walks the cases in the same order). A
// kept case that outgrows the budget (extended) is let go: the callers hold it while they use it.
void PreparedCases::keep(const Key& key, std::shared_ptr<TracedCase> traced) {
  auto it = kept_.find(key);
  const std::size_t old = it == kept_.end() ? 0 : it->second.bytes;
  const std::size_t bytes = traced_case_bytes(*traced);
  if (used_ - old + bytes <= budget_) {
    used_ = used_ - old + bytes;
    kept_[key] = Entry{std::move(traced), bytes};
  } else if (it != kept_.end()) {
    used_ -= old;
    kept_.erase(it);
  }
}

}  // namespace moetrace
