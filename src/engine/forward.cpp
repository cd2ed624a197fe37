#include "engine/forward.h"

#include <algorithm>
#include <numeric>
#include <utility>

#include "engine/plan.h"
#include "util/error.h"

namespace moetrace {
namespace {

std::vector<int> iota_rows(int begin, int count) {
  std::vector<int> v(count);
  std::iota(v.begin(), v.end(), begin);
  return v;
}

// One Engine::run: the compiled plan walked layer by layer. Each layer is the same sequence of
// phases: assemble (streams that start here join the batch), attention, route, experts, patch
// (after attention, after the MoE block and at the end of the layer), record; then the read-out.
class BatchRun {
 public:
  BatchRun(const DeviceModel& model, Backend& backend, ExpertExchange* exchange,
           const std::vector<StreamSpec>& streams, const BatchPlan& plan)
      : model_(model), c_(model.config), B_(backend), exchange_(exchange), streams_(streams), plan_(plan),
        out_(streams.size()) {
    for (std::size_t i = 0; i < streams.size(); ++i)
      if (streams[i].record != RecordLevel::None) {
        out_[i].record = std::make_unique<RunRecord>();
        out_[i].record->num_tokens = streams[i].prompt->num_tokens();
        out_[i].record->level = streams[i].record;
        out_[i].record->layers.resize(c_.num_layers);
      }
  }

  std::vector<StreamOutput> run(std::uint64_t& steps) {
    LayerObserver* observer = model_.layer_observer.get();
    for (int l = 0; l < c_.num_layers; ++l) {
      if (observer) observer->entering(l);
      assemble(l);
      if (x_) {  // else no stream has started yet
        steps += static_cast<std::uint64_t>(x_->rows());
        record_input(l);
        attention(l);
        mixture_of_experts(l);
        apply(plan_.layers[l].hidden, *x_, nullptr, nullptr);  // residual restoration
      }
      if (observer) observer->leaving(l);
    }
    read_out();
    return std::move(out_);
  }

 private:
  float eps() const { return static_cast<float>(c_.rms_norm_eps); }

  // Rows of a stream's own tensor, preceded by the base run's rows for positions < start_pos.
  TensorPtr with_prefix(const StreamSpec& s, const Tensor* base, int rows_per_pos, TensorPtr own) {
    if (s.start_pos == 0) return own;
    MOETRACE_ASSERT(base != nullptr, "base run lacks a recorded tensor");
    TensorPtr prefix = B_.gather_rows(*base, iota_rows(0, s.start_pos * rows_per_pos));
    return B_.concat_rows({prefix.get(), own.get()});
  }
  TensorPtr stream_rows(const Tensor& t, const StreamRows& r) { return B_.gather_rows(t, iota_rows(r.offset, r.count)); }
  const LayerRecord* base_layer(const StreamSpec& s, int l) const {
    return s.start_pos > 0 ? &s.base->layers[l] : nullptr;
  }

  // ---- assemble: the residual of the streams that start at layer l joins the batch ----------
  void assemble(int l) {
    const LayerPlan& P = plan_.layers[l];
    if (P.joining.empty()) return;
    std::vector<TensorPtr> joined;
    for (int i : P.joining) joined.push_back(stream_input(streams_[i], l));
    std::vector<const Tensor*> parts;
    if (x_) parts.push_back(x_.get());
    for (const TensorPtr& t : joined) parts.push_back(t.get());
    x_ = parts.size() == 1 ? std::move(joined.front()) : B_.concat_rows(parts);
  }

  // A continuation takes its input from the base run (noise included); only runs without a base,
  // or that add their own noise, start from the embeddings.
  TensorPtr stream_input(const StreamSpec& s, int l) {
    const int T = s.prompt->num_tokens(), H = c_.hidden_size;
    if (!(l == 0 && (!s.base || s.noise))) return B_.gather_rows(*s.base->layers[l].input, iota_rows(s.start_pos, T - s.start_pos));
    std::vector<int> ids(s.prompt->ids.begin() + s.start_pos, s.prompt->ids.end());
    for (int id : ids) MOETRACE_ASSERT(id >= 0 && id < c_.vocab_size, "token id outside the vocabulary");
    TensorPtr in = B_.embed(*model_.embed, ids);
    if (s.noise) {
      const int s0 = s.prompt->subject_begin, s1 = s.prompt->subject_end;
      std::vector<int> src, dst;
      for (int t = std::max(s0, s.start_pos); t < s1; ++t) {
        src.push_back(t - s0);
        dst.push_back(t - s.start_pos);
      }
      TensorPtr noise = B_.upload(s.noise->data(), s1 - s0, H);
      B_.add_rows(*noise, src, *in, dst, 1.0f);
    }
    return in;
  }

  void record_input(int l) {
    for (const StreamRows& r : plan_.layers[l].batch) {
      RunRecord* rec = out_[r.stream].record.get();
      if (!rec) continue;
      const StreamSpec& s = streams_[r.stream];
      rec->layers[l].input = with_prefix(s, s.base ? s.base->layers[l].input.get() : nullptr, 1, stream_rows(*x_, r));
    }
  }

  // ---- attention: x += o_proj(attention(...)), with attention-site patches applied --------------
  void attention(int l) {
    const LayerPlan& P = plan_.layers[l];
    const DeviceLayer& W = model_.layers[l];
    TensorPtr xn = B_.rms_norm(*x_, *W.attn_norm, c_.hidden_size, eps());
    TensorPtr q = B_.linear(*xn, *W.q_proj);
    TensorPtr k = B_.linear(*xn, *W.k_proj);
    TensorPtr v = B_.linear(*xn, *W.v_proj);
    if (c_.qk_norm == QkNorm::PerHead) {
      q = B_.rms_norm(*q, *W.q_norm, c_.head_dim, eps());
      k = B_.rms_norm(*k, *W.k_norm, c_.head_dim, eps());
    } else if (c_.qk_norm == QkNorm::WholeProjection) {
      q = B_.rms_norm(*q, *W.q_norm, c_.q_width(), eps());
      k = B_.rms_norm(*k, *W.k_norm, c_.kv_width(), eps());
    }
    B_.rope(*q, P.positions, c_.head_dim, c_.rope_theta);
    B_.rope(*k, P.positions, c_.head_dim, c_.rope_theta);

    // Each stream attends to its own keys and values, preceded by its base run's for a continuation.
    std::vector<TensorPtr> key_ctx, value_ctx;
    std::vector<AttentionSegment> segments;
    for (const StreamRows& r : P.batch) {
      const StreamSpec& s = streams_[r.stream];
      const LayerRecord* base = base_layer(s, l);
      key_ctx.push_back(with_prefix(s, base ? base->keys.get() : nullptr, 1, stream_rows(*k, r)));
      value_ctx.push_back(with_prefix(s, base ? base->values.get() : nullptr, 1, stream_rows(*v, r)));
      segments.push_back({r.offset, r.count, s.start_pos, key_ctx.back().get(), value_ctx.back().get()});
    }
    TensorPtr attn = B_.attention(*q, segments, {c_.num_heads, c_.num_kv_heads, c_.head_dim});
    TensorPtr attn_out = B_.linear(*attn, *W.o_proj);
    apply(P.attn, *attn_out, nullptr, nullptr);
    record_attention(l, key_ctx, value_ctx, *attn_out);
    B_.add(*x_, *attn_out);
  }

  void record_attention(int l, std::vector<TensorPtr>& key_ctx, std::vector<TensorPtr>& value_ctx,
                        const Tensor& attn_out) {
    const std::vector<StreamRows>& batch = plan_.layers[l].batch;
    for (std::size_t j = 0; j < batch.size(); ++j) {
      const StreamRows& r = batch[j];
      RunRecord* rec = out_[r.stream].record.get();
      if (!rec) continue;
      rec->layers[l].keys = std::move(key_ctx[j]);
      rec->layers[l].values = std::move(value_ctx[j]);
      if (rec->level == RecordLevel::Full) {
        const StreamSpec& s = streams_[r.stream];
        const LayerRecord* base = base_layer(s, l);
        rec->layers[l].attn_out = with_prefix(s, base ? base->attn_out.get() : nullptr, 1, stream_rows(attn_out, r));
      }
    }
  }

  // ---- route, experts: x += sum of the routed experts' weighted updates, with MoE patches -------
  void mixture_of_experts(int l) {
    const LayerPlan& P = plan_.layers[l];
    const DeviceLayer& W = model_.layers[l];
    const int K = c_.top_k;
    TensorPtr un = B_.rms_norm(*x_, *W.moe_norm, c_.hidden_size, eps());
    TensorPtr logits = B_.linear(*un, *W.router);
    RoutingPtr routing = route(l, *logits);

    TensorPtr slots = B_.zeros(P.rows * K, c_.hidden_size);
    B_.run_routed_experts(*un, *routing, local_experts(l), *slots);
    if (exchange_) exchange_->combine(B_, *slots);
    TensorPtr moe_out = B_.sum_slots(*slots, K);
    apply(P.moe, *moe_out, slots.get(), routing.get());
    if (P.full_records) record_moe(l, *logits, *routing, *moe_out, *slots);
    B_.add(*x_, *moe_out);
  }

  RoutingPtr route(int l, const Tensor& logits) {
    const LayerPlan& P = plan_.layers[l];
    RouteRequest request;
    request.layer = l;
    request.k = c_.top_k;
    request.renormalise = c_.norm_topk_prob;
    request.mask_offsets = P.mask_offsets;
    request.mask_experts = P.mask_experts;
    return B_.route(logits, request);
  }

  std::vector<ExpertRef> local_experts(int l) const {
    std::vector<ExpertRef> w(c_.num_experts);
    const DeviceLayer& W = model_.layers[l];
    for (int e = model_.local_experts.begin; e < model_.local_experts.end; ++e)
      w[e] = {W.experts[e].gate.get(), W.experts[e].up.get(), W.experts[e].down.get()};
    return w;
  }

  void record_moe(int l, const Tensor& logits, const RoutingResult& routing, const Tensor& moe_out,
                  const Tensor& slots) {
    const int K = c_.top_k, E = c_.num_experts;
    const Routing& top = routing.host().top;
    std::vector<float> router_logits(static_cast<std::size_t>(logits.rows()) * E);
    B_.download(logits, router_logits.data());
    for (const StreamRows& r : plan_.layers[l].batch) {
      RunRecord* rec = out_[r.stream].record.get();
      if (!rec || rec->level != RecordLevel::Full) continue;
      const StreamSpec& s = streams_[r.stream];
      const LayerRecord* base = base_layer(s, l);
      LayerRecord& L = rec->layers[l];
      L.moe_out = with_prefix(s, base ? base->moe_out.get() : nullptr, 1, stream_rows(moe_out, r));
      L.updates = with_prefix(s, base ? base->updates.get() : nullptr, K,
                              B_.gather_rows(slots, iota_rows(r.offset * K, r.count * K)));
      L.routing.k = K;
      L.router_logits.clear();
      if (base) {
        const std::size_t n = static_cast<std::size_t>(s.start_pos) * K;
        L.routing.experts.assign(base->routing.experts.begin(), base->routing.experts.begin() + n);
        L.routing.weights.assign(base->routing.weights.begin(), base->routing.weights.begin() + n);
        L.router_logits.assign(base->router_logits.begin(),
                               base->router_logits.begin() + static_cast<std::ptrdiff_t>(s.start_pos) * E);
      }
      L.routing.experts.insert(L.routing.experts.end(), top.experts.begin() + r.offset * K,
                               top.experts.begin() + (r.offset + r.count) * K);
      L.routing.weights.insert(L.routing.weights.end(), top.weights.begin() + r.offset * K,
                               top.weights.begin() + (r.offset + r.count) * K);
      L.router_logits.insert(L.router_logits.end(), router_logits.begin() + static_cast<std::ptrdiff_t>(r.offset) * E,
                             router_logits.begin() + static_cast<std::ptrdiff_t>(r.offset + r.count) * E);
    }
  }

  // ---- patch: one copy/add per source tensor and phase (engine/plan.h) ------------------------
  void apply(const std::vector<PatchPhase>& phases, Tensor& dst, const Tensor* slots, const RoutingResult* routing) {
    for (const PatchPhase& ph : phases) {
      for (const RowTransfer& t : ph.transfers) {
        if (t.add) B_.add_rows(*t.src, t.src_rows, dst, t.dst_rows, t.scale);
        else B_.copy_rows(*t.src, t.src_rows, dst, t.dst_rows);
      }
      for (const OwnUpdateSubtraction& o : ph.own) {
        MOETRACE_ASSERT(slots && routing, "own-update subtraction outside the MoE block");
        std::vector<int> src, dst_rows;
        own_slots(o, routing->host().top, src, dst_rows);
        B_.add_rows(*slots, src, dst, dst_rows, o.scale);
      }
    }
  }

  // The own slots of every row's expert set, ascending expert index within a row.
  void own_slots(const OwnUpdateSubtraction& o, const Routing& own, std::vector<int>& src, std::vector<int>& dst) {
    const int K = own.k;
    std::vector<std::pair<int, int>> chosen;  // (expert, slot)
    for (std::size_t i = 0; i < o.rows.size(); ++i) {
      const int row = o.rows[i];
      const auto set_begin = o.set_experts.begin() + o.set_offsets[i], set_end = o.set_experts.begin() + o.set_offsets[i + 1];
      chosen.clear();
      for (int j = 0; j < K; ++j) {
        const int e = own.expert(row, j);
        if (o.every_own[i] || std::binary_search(set_begin, set_end, e)) chosen.emplace_back(e, j);
      }
      std::sort(chosen.begin(), chosen.end());
      for (auto [e, j] : chosen) {
        src.push_back(row * K + j);
        dst.push_back(row);
      }
    }
  }

  // ---- read out: contrast, logits and the final residual --------------------------------------
  void read_out() {
    const std::vector<StreamRows>& batch = plan_.final_batch();
    const int H = c_.hidden_size;
    std::vector<int> last_rows, contrast_ids;
    for (const StreamRows& r : batch) {
      last_rows.push_back(r.offset + r.count - 1);
      const Prompt& p = *streams_[r.stream].prompt;
      contrast_ids.push_back(std::max(p.true_id, 0));
      contrast_ids.push_back(std::max(p.foil_id, 0));
    }
    TensorPtr last = B_.rms_norm(*B_.gather_rows(*x_, last_rows), *model_.final_norm, H, eps());
    const std::vector<float> two = B_.select_logits(*last, *model_.lm_head, contrast_ids, 2);
    // The LastLogits streams' final rows go through the LM head in one product (one pass over the
    // [vocab, H] weight for the whole batch; rows are independent, so each stream's logits are those
    // of a product of its row alone).
    std::vector<int> last_logit_rows;
    for (std::size_t j = 0; j < batch.size(); ++j)
      if (streams_[batch[j].stream].readout == Readout::LastLogits) last_logit_rows.push_back(static_cast<int>(j));
    std::vector<float> last_logits;
    if (!last_logit_rows.empty()) {
      TensorPtr logits = B_.linear(*B_.gather_rows(*last, last_logit_rows), *model_.lm_head);
      last_logits.resize(last_logit_rows.size() * static_cast<std::size_t>(c_.vocab_size));
      B_.download(*logits, last_logits.data());
    }
    std::size_t next_logits = 0;
    for (std::size_t j = 0; j < batch.size(); ++j) {
      const StreamRows& r = batch[j];
      const StreamSpec& s = streams_[r.stream];
      StreamOutput& o = out_[r.stream];
      if (s.prompt->true_id >= 0 && s.prompt->foil_id >= 0) o.contrast = two[2 * j] - two[2 * j + 1];
      if (s.readout == Readout::LastLogits) {
        const auto begin = last_logits.begin() + static_cast<std::ptrdiff_t>(next_logits++ * c_.vocab_size);
        o.logits.assign(begin, begin + c_.vocab_size);
      } else if (s.readout == Readout::AllLogits) {
        TensorPtr normed = B_.rms_norm(*stream_rows(*x_, r), *model_.final_norm, H, eps());
        TensorPtr logits = B_.linear(*normed, *model_.lm_head);
        o.logits.resize(static_cast<std::size_t>(r.count) * c_.vocab_size);
        B_.download(*logits, o.logits.data());
      }
      if (o.record && o.record->level == RecordLevel::Full)
        o.record->output = with_prefix(s, s.start_pos ? s.base->output.get() : nullptr, 1, stream_rows(*x_, r));
    }
  }

  const DeviceModel& model_;
  const ModelConfig& c_;
  Backend& B_;
  ExpertExchange* exchange_;
  const std::vector<StreamSpec>& streams_;
  const BatchPlan& plan_;
  std::vector<StreamOutput> out_;
  TensorPtr x_;  // residual stream of the batch [rows, H]
};

}  // namespace

Engine::Engine(const DeviceModel& model, Backend& backend, ExpertExchange* exchange)
    : model_(model), backend_(backend), exchange_(exchange) {}

std::vector<StreamOutput> Engine::run(const std::vector<StreamSpec>& streams) {
  if (streams.empty()) return {};
  ++calls_;
  const BatchPlan plan = compile_plan(streams, model_.config);
  return BatchRun(model_, backend_, exchange_, streams, plan).run(steps_);
}

}  // namespace moetrace
