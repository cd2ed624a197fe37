#include "engine/forward.h"

#include <algorithm>
#include <numeric>
#include <set>

#include "util/error.h"

namespace moetrace {
namespace {

std::vector<int> iota_rows(int begin, int count) {
  std::vector<int> v(count);
  std::iota(v.begin(), v.end(), begin);
  return v;
}

// Where one stream's rows sit in the batch.
struct StreamRows {
  int stream = 0;
  int offset = 0;  // first row in the batch
  int count = 0;   // = T - start_pos
};

void validate(const StreamSpec& s, const ModelConfig& c) {
  MOETRACE_ASSERT(s.prompt && !s.prompt->ids.empty(), "stream without a prompt");
  const int T = s.prompt->num_tokens();
  MOETRACE_ASSERT(s.start_layer >= 0 && s.start_layer < c.num_layers, "start layer out of range");
  MOETRACE_ASSERT(s.start_pos >= 0 && s.start_pos < T, "start position out of range");
  if (s.start_layer > 0 || s.start_pos > 0) {
    MOETRACE_ASSERT(s.base && s.base->level != RecordLevel::None, "a continuation needs a recorded base run");
    MOETRACE_ASSERT(s.base->num_tokens == T, "base run of a different prompt");
  }
  if (s.record == RecordLevel::Full && s.start_pos > 0)
    MOETRACE_ASSERT(s.base->level == RecordLevel::Full, "a full record continuing a run needs a full base");
  if (s.record != RecordLevel::None)
    MOETRACE_ASSERT(s.start_layer == 0, "a recorded run must start at layer 0");
  if (s.readout == Readout::AllLogits) MOETRACE_ASSERT(s.start_pos == 0, "all logits need start_pos 0");
  if (s.noise) {
    MOETRACE_ASSERT(s.start_layer == 0, "noise is added to embeddings: start_layer must be 0");
    const int n = s.prompt->subject_end - s.prompt->subject_begin;
    MOETRACE_ASSERT(static_cast<int>(s.noise->size()) == n * c.hidden_size, "noise shape");
  }
  if (s.condition) {
    for (const Patch& p : s.condition->patches) {
      MOETRACE_ASSERT(s.clean && s.clean->level == RecordLevel::Full, "patches need a full clean record");
      MOETRACE_ASSERT(p.layer >= s.start_layer && p.layer < c.num_layers, "patch layer before the stream start");
      for (int t : p.positions)
        MOETRACE_ASSERT(t >= s.start_pos && t < T, "patch position before the stream start");
    }
  }
  if (s.deactivation)
    for (auto [l, e] : *s.deactivation)
      MOETRACE_ASSERT(l >= 0 && l < c.num_layers && e >= 0 && e < c.num_experts, "deactivated expert out of range");
}

}  // namespace

Engine::Engine(const DeviceModel& model, Backend& backend, ExpertExchange* exchange)
    : model_(model), backend_(backend), exchange_(exchange) {}

std::vector<StreamOutput> Engine::run(const std::vector<StreamSpec>& streams) {
  const ModelConfig& c = model_.config;
  Backend& B = backend_;
  const int H = c.hidden_size, K = c.top_k, E = c.num_experts;
  for (const StreamSpec& s : streams) validate(s, c);

  std::vector<StreamOutput> out(streams.size());
  for (std::size_t i = 0; i < streams.size(); ++i)
    if (streams[i].record != RecordLevel::None) {
      out[i].record = std::make_unique<RunRecord>();
      out[i].record->num_tokens = streams[i].prompt->num_tokens();
      out[i].record->level = streams[i].record;
      out[i].record->layers.resize(c.num_layers);
    }

  // Rows of a stream's own tensor, preceded by the base run's rows for positions < start_pos.
  auto with_prefix = [&](const StreamSpec& s, const Tensor* base, int rows_per_pos, TensorPtr own) {
    if (s.start_pos == 0) return own;
    MOETRACE_ASSERT(base != nullptr, "base run lacks a recorded tensor");
    TensorPtr prefix = B.gather_rows(*base, iota_rows(0, s.start_pos * rows_per_pos));
    return B.concat_rows({prefix.get(), own.get()});
  };

  // Streams join the batch at their start layer; the batch only grows.
  std::vector<StreamRows> batch;
  std::vector<int> positions;  // absolute position of every batch row
  TensorPtr x;                 // residual stream [rows, H]

  for (int l = 0; l < c.num_layers; ++l) {
    const DeviceLayer& W = model_.layers[l];

    // ---- streams that start here -------------------------------------------------------
    std::vector<const Tensor*> parts;
    std::vector<TensorPtr> joined;
    if (x) parts.push_back(x.get());
    int rows = x ? x->rows() : 0;
    for (std::size_t i = 0; i < streams.size(); ++i) {
      const StreamSpec& s = streams[i];
      if (s.start_layer != l) continue;
      const int T = s.prompt->num_tokens(), n = T - s.start_pos;
      TensorPtr in;
      // A continuation takes its input from the base run (noise included); only runs without a
      // base, or that add their own noise, start from the embeddings.
      if (l == 0 && (!s.base || s.noise)) {
        std::vector<int> ids(s.prompt->ids.begin() + s.start_pos, s.prompt->ids.end());
        for (int id : ids)
          MOETRACE_ASSERT(id >= 0 && id < c.vocab_size, "token id outside the vocabulary");
        in = B.embed(*model_.embed, ids);
        if (s.noise) {
          const int s0 = s.prompt->subject_begin, s1 = s.prompt->subject_end;
          std::vector<int> src, dst;
          for (int t = std::max(s0, s.start_pos); t < s1; ++t) {
            src.push_back(t - s0);
            dst.push_back(t - s.start_pos);
          }
          TensorPtr noise = B.upload(s.noise->data(), s1 - s0, H);
          B.add_rows(*noise, src, *in, dst, 1.0f);
        }
      } else {
        in = B.gather_rows(*s.base->layers[l].input, iota_rows(s.start_pos, n));
      }
      batch.push_back({static_cast<int>(i), rows, n});
      for (int t = s.start_pos; t < T; ++t) positions.push_back(t);
      rows += n;
      parts.push_back(in.get());
      joined.push_back(std::move(in));
    }
    if (!joined.empty()) x = parts.size() == 1 ? std::move(joined.front()) : B.concat_rows(parts);
    if (!x) continue;  // no stream has started yet
    const int N = x->rows();
    steps_ += static_cast<std::uint64_t>(N);

    auto rows_of = [&](const StreamRows& r) { return iota_rows(r.offset, r.count); };
    auto row_of = [&](const StreamRows& r, int pos) {
      return r.offset + pos - streams[r.stream].start_pos;
    };

    for (const StreamRows& r : batch)
      if (out[r.stream].record)
        out[r.stream].record->layers[l].input =
            with_prefix(streams[r.stream], streams[r.stream].base ? streams[r.stream].base->layers[l].input.get() : nullptr,
                        1, B.gather_rows(*x, rows_of(r)));

    // ---- attention ---------------------------------------------------------------------
    TensorPtr xn = B.rms_norm(*x, *W.attn_norm, H, static_cast<float>(c.rms_norm_eps));
    TensorPtr q = B.linear(*xn, *W.q_proj);
    TensorPtr k = B.linear(*xn, *W.k_proj);
    TensorPtr v = B.linear(*xn, *W.v_proj);
    if (c.qk_norm == QkNorm::PerHead) {
      q = B.rms_norm(*q, *W.q_norm, c.head_dim, static_cast<float>(c.rms_norm_eps));
      k = B.rms_norm(*k, *W.k_norm, c.head_dim, static_cast<float>(c.rms_norm_eps));
    } else if (c.qk_norm == QkNorm::WholeProjection) {
      q = B.rms_norm(*q, *W.q_norm, c.q_width(), static_cast<float>(c.rms_norm_eps));
      k = B.rms_norm(*k, *W.k_norm, c.kv_width(), static_cast<float>(c.rms_norm_eps));
    }
    B.rope(*q, positions, c.head_dim, c.rope_theta);
    B.rope(*k, positions, c.head_dim, c.rope_theta);

    std::vector<TensorPtr> key_ctx, value_ctx;
    std::vector<AttentionSegment> segments;
    for (const StreamRows& r : batch) {
      const StreamSpec& s = streams[r.stream];
      const LayerRecord* base = s.start_pos > 0 ? &s.base->layers[l] : nullptr;
      key_ctx.push_back(with_prefix(s, base ? base->keys.get() : nullptr, 1, B.gather_rows(*k, rows_of(r))));
      value_ctx.push_back(with_prefix(s, base ? base->values.get() : nullptr, 1, B.gather_rows(*v, rows_of(r))));
      segments.push_back({r.offset, r.count, s.start_pos, key_ctx.back().get(), value_ctx.back().get()});
    }
    TensorPtr attn = B.attention(*q, segments, {c.num_heads, c.num_kv_heads, c.head_dim});
    TensorPtr attn_out = B.linear(*attn, *W.o_proj);
    for (const StreamRows& r : batch) {
      const StreamSpec& s = streams[r.stream];
      if (!s.condition) continue;
      for (const Patch& p : s.condition->patches) {
        if (p.site != Site::Attn || p.layer != l) continue;
        std::vector<int> dst;
        for (int t : p.positions) dst.push_back(row_of(r, t));
        B.copy_rows(*s.clean->layers[l].attn_out, p.positions, *attn_out, dst);
      }
    }
    for (std::size_t j = 0; j < batch.size(); ++j) {
      const StreamRows& r = batch[j];
      RunRecord* rec = out[r.stream].record.get();
      if (!rec) continue;
      rec->layers[l].keys = std::move(key_ctx[j]);
      rec->layers[l].values = std::move(value_ctx[j]);
      if (rec->level == RecordLevel::Full) {
        const StreamSpec& s = streams[r.stream];
        rec->layers[l].attn_out = with_prefix(s, s.start_pos ? s.base->layers[l].attn_out.get() : nullptr, 1,
                                              B.gather_rows(*attn_out, rows_of(r)));
      }
    }
    key_ctx.clear();
    value_ctx.clear();
    B.add(*x, *attn_out);

    // ---- mixture of experts ------------------------------------------------------------
    TensorPtr un = B.rms_norm(*x, *W.moe_norm, H, static_cast<float>(c.rms_norm_eps));
    TensorPtr router_t = B.linear(*un, *W.router);
    std::vector<float> router_logits(static_cast<std::size_t>(N) * E);
    B.download(*router_t, router_logits.data());
    std::vector<std::vector<int>> masked;
    for (const StreamRows& r : batch) {
      const StreamSpec& s = streams[r.stream];
      if (!s.deactivation) continue;
      std::vector<int> here;
      for (auto [dl, de] : *s.deactivation)
        if (dl == l) here.push_back(de);
      if (here.empty()) continue;
      masked.resize(N);
      for (int i = 0; i < r.count; ++i) masked[r.offset + i] = here;
    }
    const Routing routing = route_top_k(router_logits, N, E, K, c.norm_topk_prob, masked);

    std::vector<ExpertTask> tasks;
    for (int e = model_.local_experts.begin; e < model_.local_experts.end; ++e) {
      ExpertTask task{W.experts[e].gate.get(), W.experts[e].up.get(), W.experts[e].down.get(), {}, {}, {}};
      for (int row = 0; row < N; ++row)
        for (int j = 0; j < K; ++j)
          if (routing.expert(row, j) == e) {
            task.in_rows.push_back(row);
            task.out_rows.push_back(row * K + j);
            task.weights.push_back(routing.weights[row * K + j]);
          }
      if (!task.in_rows.empty()) tasks.push_back(std::move(task));
    }
    TensorPtr slots = B.zeros(N * K, H);
    B.run_experts(*un, tasks, *slots);
    if (exchange_) exchange_->combine(B, *slots);
    TensorPtr moe_out = B.sum_slots(*slots, K);

    for (const StreamRows& r : batch) {
      const StreamSpec& s = streams[r.stream];
      if (!s.condition) continue;
      for (const Patch& p : s.condition->patches) {
        if (p.layer != l) continue;
        const LayerRecord& clean = s.clean->layers[l];
        if (p.site == Site::Moe) {
          std::vector<int> dst;
          for (int t : p.positions) dst.push_back(row_of(r, t));
          B.copy_rows(*clean.moe_out, p.positions, *moe_out, dst);
        } else if (p.site == Site::Experts) {
          // Add c_e(clean) - c_e(own) for every e in the set; routing is never recomputed.
          std::vector<int> add_src, add_dst, sub_src, sub_dst;
          for (int t : p.positions) {
            const int row = row_of(r, t);
            std::set<int> set;
            if (p.expert_set == ExpertSet::Listed) set.insert(p.experts.begin(), p.experts.end());
            if (p.expert_set != ExpertSet::Listed)
              for (int j = 0; j < K; ++j) set.insert(clean.routing.expert(t, j));
            if (p.expert_set == ExpertSet::Union)
              for (int j = 0; j < K; ++j) set.insert(routing.expert(row, j));
            for (int e : set) {
              if (int cs = clean.routing.slot_of(t, e); cs >= 0) {
                add_src.push_back(t * K + cs);
                add_dst.push_back(row);
              }
              if (int os = routing.slot_of(row, e); os >= 0) {
                sub_src.push_back(row * K + os);
                sub_dst.push_back(row);
              }
            }
          }
          B.add_rows(*clean.updates, add_src, *moe_out, add_dst, p.scale);
          B.add_rows(*slots, sub_src, *moe_out, sub_dst, -p.scale);
        }
      }
    }

    for (const StreamRows& r : batch) {
      RunRecord* rec = out[r.stream].record.get();
      if (!rec || rec->level != RecordLevel::Full) continue;
      const StreamSpec& s = streams[r.stream];
      const LayerRecord* base = s.start_pos > 0 ? &s.base->layers[l] : nullptr;
      LayerRecord& L = rec->layers[l];
      L.moe_out = with_prefix(s, base ? base->moe_out.get() : nullptr, 1, B.gather_rows(*moe_out, rows_of(r)));
      L.updates = with_prefix(s, base ? base->updates.get() : nullptr, K,
                              B.gather_rows(*slots, iota_rows(r.offset * K, r.count * K)));
      L.routing.k = K;
      L.router_logits.clear();
      if (base) {
        L.routing.experts = base->routing.experts;
        L.routing.weights = base->routing.weights;
        L.routing.experts.resize(static_cast<std::size_t>(s.start_pos) * K);
        L.routing.weights.resize(static_cast<std::size_t>(s.start_pos) * K);
        L.router_logits.assign(base->router_logits.begin(), base->router_logits.begin() + static_cast<std::ptrdiff_t>(s.start_pos) * E);
      }
      L.routing.experts.insert(L.routing.experts.end(), routing.experts.begin() + r.offset * K,
                               routing.experts.begin() + (r.offset + r.count) * K);
      L.routing.weights.insert(L.routing.weights.end(), routing.weights.begin() + r.offset * K,
                               routing.weights.begin() + (r.offset + r.count) * K);
      L.router_logits.insert(L.router_logits.end(), router_logits.begin() + static_cast<std::ptrdiff_t>(r.offset) * E,
                             router_logits.begin() + static_cast<std::ptrdiff_t>(r.offset + r.count) * E);
    }
    B.add(*x, *moe_out);

    // ---- residual restoration at the end of the layer ------------------------------------
    for (const StreamRows& r : batch) {
      const StreamSpec& s = streams[r.stream];
      if (!s.condition) continue;
      for (const Patch& p : s.condition->patches) {
        if (p.site != Site::Hidden || p.layer != l) continue;
        std::vector<int> dst;
        for (int t : p.positions) dst.push_back(row_of(r, t));
        B.copy_rows(s.clean->after_layer(l), p.positions, *x, dst);
      }
    }
  }

  // ---- read-out ----------------------------------------------------------------------------
  std::vector<int> last_rows, contrast_ids;
  for (const StreamRows& r : batch) {
    last_rows.push_back(r.offset + r.count - 1);
    const Prompt& p = *streams[r.stream].prompt;
    contrast_ids.push_back(std::max(p.true_id, 0));
    contrast_ids.push_back(std::max(p.foil_id, 0));
  }
  const float eps = static_cast<float>(c.rms_norm_eps);
  TensorPtr last = B.rms_norm(*B.gather_rows(*x, last_rows), *model_.final_norm, H, eps);
  const std::vector<float> two = B.select_logits(*last, *model_.lm_head, contrast_ids, 2);
  for (std::size_t j = 0; j < batch.size(); ++j) {
    const StreamRows& r = batch[j];
    const StreamSpec& s = streams[r.stream];
    StreamOutput& o = out[r.stream];
    if (s.prompt->true_id >= 0 && s.prompt->foil_id >= 0) o.contrast = two[2 * j] - two[2 * j + 1];
    if (s.readout == Readout::LastLogits) {
      TensorPtr logits = B.linear(*B.gather_rows(*last, {static_cast<int>(j)}), *model_.lm_head);
      o.logits.resize(c.vocab_size);
      B.download(*logits, o.logits.data());
    } else if (s.readout == Readout::AllLogits) {
      TensorPtr normed = B.rms_norm(*B.gather_rows(*x, iota_rows(r.offset, r.count)), *model_.final_norm, H, eps);
      TensorPtr logits = B.linear(*normed, *model_.lm_head);
      o.logits.resize(static_cast<std::size_t>(r.count) * c.vocab_size);
      B.download(*logits, o.logits.data());
    }
    if (o.record && o.record->level == RecordLevel::Full)
      o.record->output = with_prefix(s, s.start_pos ? s.base->output.get() : nullptr, 1,
                                     B.gather_rows(*x, iota_rows(r.offset, r.count)));
  }
  return out;
}

}  // namespace moetrace
