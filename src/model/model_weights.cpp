#include "model/model_weights.h"

#include <set>

#include "util/error.h"

namespace moetrace {
namespace {

// Looks tensors up by name, checks their shapes, and remembers which ones were used so that
// tensors the model does not know about can be reported.
class TensorResolver {
 public:
  TensorResolver(const Checkpoint& ckpt, Architecture arch) : ckpt_(ckpt), ckpt_arch_(arch) {}

  bool has(const std::string& name) const { return ckpt_.find(name) != nullptr; }

  TensorView take(const std::string& name, std::vector<std::int64_t> shape) {
    const TensorView* t = ckpt_.find(name);
    if (!t) fail_input("model folder {}: missing tensor '{}'", ckpt_.dir().string(), name);
    if (t->shape != shape) {
      TensorView expected;
      expected.shape = shape;
      fail_input("{}: tensor '{}' has shape {}, expected {} from config.json", t->file, name,
                 t->shape_string(), expected.shape_string());
    }
    used_.insert(name);
    return *t;
  }

  void reject_unused() const {
    for (const auto& [name, t] : ckpt_.tensors())
      if (!used_.count(name))
        fail_input("{}: unexpected tensor '{}' (not part of a {} model with this config.json)", t.file,
                   name, to_string(ckpt_arch_));
  }

 private:
  const Checkpoint& ckpt_;
  Architecture ckpt_arch_;
  std::set<std::string> used_;
};

// A row block [row0, row0 + rows) of a 3-D fused tensor [E, R, C] at expert e, as a 2-D view.
TensorView expert_slice(const TensorView& fused, std::int64_t e, std::int64_t row0, std::int64_t rows) {
  TensorView v = fused;
  const std::int64_t r = fused.shape[1], c = fused.shape[2];
  v.name = fmt::format("{}[{}][{}:{}]", fused.name, e, row0, row0 + rows);
  v.shape = {rows, c};
  v.data = fused.data + ((e * r + row0) * c) * dtype_size(fused.dtype);
  return v;
}

}  // namespace

ModelWeights resolve_weights(const ModelConfig& c, std::shared_ptr<const Checkpoint> ckpt) {
  TensorResolver res(*ckpt, c.arch);
  ModelWeights w;
  w.config = c;
  w.checkpoint = ckpt;
  const std::int64_t H = c.hidden_size, V = c.vocab_size, I = c.expert_width, E = c.num_experts;
  w.embed = res.take("model.embed_tokens.weight", {V, H});
  w.final_norm = res.take("model.norm.weight", {H});
  if (res.has("lm_head.weight") || !c.tie_word_embeddings)
    w.lm_head = res.take("lm_head.weight", {V, H});
  else
    w.lm_head = w.embed;

  // Mixtral's hub checkpoints call the MoE block `block_sparse_moe`; transformers 5 writes `mlp`.
  // Decided from every tensor name, so that a missing tensor is reported under the checkpoint's own spelling.
  bool mixtral_hub = false;
  if (c.arch == Architecture::Mixtral)
    for (const auto& [name, view] : ckpt->tensors()) mixtral_hub |= name.find(".block_sparse_moe.") != std::string::npos;
  const std::string moe = mixtral_hub ? "block_sparse_moe" : "mlp";
  const bool fused = res.has(fmt::format("model.layers.0.{}.experts.gate_up_proj", moe));
  w.expert_layout = fused ? ExpertLayout::Fused : ExpertLayout::PerExpert;

  for (int l = 0; l < c.num_layers; ++l) {
    const std::string p = fmt::format("model.layers.{}.", l);
    LayerWeights L;
    L.attn_norm = res.take(p + "input_layernorm.weight", {H});
    L.moe_norm = res.take(p + "post_attention_layernorm.weight", {H});
    L.q_proj = res.take(p + "self_attn.q_proj.weight", {c.q_width(), H});
    L.k_proj = res.take(p + "self_attn.k_proj.weight", {c.kv_width(), H});
    L.v_proj = res.take(p + "self_attn.v_proj.weight", {c.kv_width(), H});
    L.o_proj = res.take(p + "self_attn.o_proj.weight", {H, c.q_width()});
    if (c.qk_norm == QkNorm::PerHead) {
      L.q_norm = res.take(p + "self_attn.q_norm.weight", {c.head_dim});
      L.k_norm = res.take(p + "self_attn.k_norm.weight", {c.head_dim});
    } else if (c.qk_norm == QkNorm::WholeProjection) {
      L.q_norm = res.take(p + "self_attn.q_norm.weight", {c.q_width()});
      L.k_norm = res.take(p + "self_attn.k_norm.weight", {c.kv_width()});
    }
    const std::string m = p + moe + ".";
    L.router = res.take(m + "gate.weight", {E, H});
    if (fused) {
      TensorView gate_up = res.take(m + "experts.gate_up_proj", {E, 2 * I, H});
      TensorView down = res.take(m + "experts.down_proj", {E, H, I});
      for (std::int64_t e = 0; e < E; ++e)
        L.experts.push_back({expert_slice(gate_up, e, 0, I), expert_slice(gate_up, e, I, I),
                             expert_slice(down, e, 0, H)});
    } else {
      for (std::int64_t e = 0; e < E; ++e) {
        const std::string x = fmt::format("{}experts.{}.", m, e);
        if (c.arch == Architecture::Mixtral && mixtral_hub)
          L.experts.push_back({res.take(x + "w1.weight", {I, H}), res.take(x + "w3.weight", {I, H}),
                               res.take(x + "w2.weight", {H, I})});
        else
          L.experts.push_back({res.take(x + "gate_proj.weight", {I, H}),
                               res.take(x + "up_proj.weight", {I, H}),
                               res.take(x + "down_proj.weight", {H, I})});
      }
    }
    w.layers.push_back(std::move(L));
  }
  res.reject_unused();
  return w;
}

ModelWeights load_model(const std::filesystem::path& model_dir, const LoadOptions& options) {
  ModelConfig config = load_model_config(model_dir);
  auto ckpt = std::make_shared<const Checkpoint>(model_dir);
  ModelWeights w = resolve_weights(config, std::move(ckpt));
  if (options.scan_weights && !options.allow_nonfinite_weights) w.checkpoint->check_finite();
  return w;
}

std::vector<const TensorView*> layer_tensors(const LayerWeights& L, int expert_begin, int expert_end) {
  std::vector<const TensorView*> out{&L.attn_norm, &L.moe_norm, &L.q_proj, &L.k_proj, &L.v_proj, &L.o_proj};
  if (L.q_norm) out.push_back(&*L.q_norm);
  if (L.k_norm) out.push_back(&*L.k_norm);
  out.push_back(&L.router);
  for (int e = expert_begin; e < expert_end; ++e)
    for (const TensorView* v : {&L.experts[e].gate, &L.experts[e].up, &L.experts[e].down}) out.push_back(v);
  return out;
}

std::vector<const TensorView*> model_tensors(const ModelWeights& w) {
  std::vector<const TensorView*> out{&w.embed, &w.final_norm, &w.lm_head};
  for (const LayerWeights& L : w.layers) {
    const auto layer = layer_tensors(L, 0, static_cast<int>(L.experts.size()));
    out.insert(out.end(), layer.begin(), layer.end());
  }
  return out;
}

}  // namespace moetrace
