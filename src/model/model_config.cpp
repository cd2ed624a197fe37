#include "model/model_config.h"

#include <fstream>
#include <sstream>

#include <nlohmann/json.hpp>

#include "util/error.h"

namespace moetrace {
namespace {

using nlohmann::json;

// Reads a required numeric field; `names` lists the spellings the hub configs use.
template <typename T>
T required(const json& j, std::initializer_list<const char*> names, const std::string& origin) {
  for (const char* name : names) {
    auto it = j.find(name);
    if (it == j.end() || it->is_null()) continue;
    if (!it->is_number())
      fail_input("{}: field '{}' must be a number, got {}", origin, name, it->dump());
    return it->get<T>();
  }
  fail_input("{}: missing required field '{}'", origin, *names.begin());
}

template <typename T>
T optional(const json& j, const char* name, T fallback, const std::string& origin) {
  auto it = j.find(name);
  if (it == j.end() || it->is_null()) return fallback;
  if constexpr (std::is_same_v<T, bool>) {
    if (!it->is_boolean()) fail_input("{}: field '{}' must be true or false, got {}", origin, name, it->dump());
  } else {
    if (!it->is_number()) fail_input("{}: field '{}' must be a number, got {}", origin, name, it->dump());
  }
  return it->get<T>();
}

void require_positive(int v, const char* name, const std::string& origin) {
  if (v <= 0) fail_input("{}: field '{}' must be positive, got {}", origin, name, v);
}

}  // namespace

std::string to_string(Architecture a) {
  switch (a) {
    case Architecture::Mixtral: return "mixtral";
    case Architecture::Qwen3Moe: return "qwen3_moe";
    case Architecture::Olmoe: return "olmoe";
  }
  return "?";
}

ModelConfig parse_model_config(const std::string& text, const std::string& origin) {
  json j;
  try {
    j = json::parse(text);
  } catch (const json::parse_error& e) {
    fail_input("{}: not valid JSON: {}", origin, e.what());
  }
  if (!j.is_object()) fail_input("{}: expected a JSON object", origin);
  auto mt = j.find("model_type");
  if (mt == j.end() || mt->is_null()) fail_input("{}: missing required field 'model_type'", origin);
  if (!mt->is_string()) fail_input("{}: field 'model_type' must be a string, got {}", origin, mt->dump());

  ModelConfig c;
  c.model_type = mt->get<std::string>();
  // The spellings of the architecture-specific fields, for error messages.
  const char* experts_field = "num_experts";
  const char* width_field = "intermediate_size";
  if (c.model_type == "mixtral") {
    c.arch = Architecture::Mixtral;
    experts_field = "num_local_experts";
    c.num_experts = required<int>(j, {"num_local_experts"}, origin);
    c.expert_width = required<int>(j, {"intermediate_size"}, origin);
    c.norm_topk_prob = true;  // Mixtral always renormalises its top-k weights
    c.qk_norm = QkNorm::None;
  } else if (c.model_type == "qwen3_moe") {
    c.arch = Architecture::Qwen3Moe;
    c.num_experts = required<int>(j, {"num_experts"}, origin);
    width_field = "moe_intermediate_size";
    c.expert_width = required<int>(j, {"moe_intermediate_size"}, origin);
    c.norm_topk_prob = optional<bool>(j, "norm_topk_prob", false, origin);
    c.qk_norm = QkNorm::PerHead;
    // Dense layers are not supported: every layer must be sparse.
    if (optional<int>(j, "decoder_sparse_step", 1, origin) != 1)
      fail_input("{}: decoder_sparse_step != 1 (dense MLP layers) is not supported", origin);
    if (auto it = j.find("mlp_only_layers"); it != j.end() && it->is_array() && !it->empty())
      fail_input("{}: mlp_only_layers (dense MLP layers) is not supported", origin);
  } else if (c.model_type == "olmoe") {
    c.arch = Architecture::Olmoe;
    c.num_experts = required<int>(j, {"num_experts"}, origin);
    c.expert_width = required<int>(j, {"intermediate_size"}, origin);
    c.norm_topk_prob = optional<bool>(j, "norm_topk_prob", false, origin);
    c.qk_norm = QkNorm::WholeProjection;
    if (auto it = j.find("clip_qkv"); it != j.end() && !it->is_null())
      fail_input("{}: clip_qkv is not supported", origin);
  } else {
    fail_input("{}: unsupported model_type '{}' (supported: mixtral, qwen3_moe, olmoe)", origin, c.model_type);
  }
  c.vocab_size = required<int>(j, {"vocab_size"}, origin);
  c.hidden_size = required<int>(j, {"hidden_size"}, origin);
  c.num_layers = required<int>(j, {"num_hidden_layers"}, origin);
  c.num_heads = required<int>(j, {"num_attention_heads"}, origin);
  c.num_kv_heads = optional<int>(j, "num_key_value_heads", c.num_heads, origin);
  c.top_k = required<int>(j, {"num_experts_per_tok"}, origin);
  c.rms_norm_eps = required<double>(j, {"rms_norm_eps"}, origin);
  c.rope_theta = optional<double>(j, "rope_theta", 10000.0, origin);
  if (auto rp = j.find("rope_parameters"); rp != j.end() && rp->is_object()) {
    // transformers 5 may nest rope settings; only the default rope type is supported.
    if (auto t = rp->find("rope_type"); t != rp->end() && t->is_string() && *t != "default")
      fail_input("{}: rope_type '{}' is not supported (only the default rotate-half RoPE)", origin, t->get<std::string>());
    if (auto th = rp->find("rope_theta"); th != rp->end() && th->is_number()) c.rope_theta = th->get<double>();
  }
  if (auto rs = j.find("rope_scaling"); rs != j.end() && !rs->is_null())
    fail_input("{}: rope_scaling is not supported", origin);
  c.tie_word_embeddings = optional<bool>(j, "tie_word_embeddings", false, origin);
  c.bos_token_id = optional<int>(j, "bos_token_id", -1, origin);
  c.head_dim = optional<int>(j, "head_dim", 0, origin);
  if (c.head_dim == 0) {
    require_positive(c.num_heads, "num_attention_heads", origin);
    if (c.hidden_size % c.num_heads != 0)
      fail_input("{}: hidden_size {} is not divisible by num_attention_heads {} and no head_dim is given",
                 origin, c.hidden_size, c.num_heads);
    c.head_dim = c.hidden_size / c.num_heads;
  }
  if (auto act = j.find("hidden_act"); act != j.end() && act->is_string() && *act != "silu")
    fail_input("{}: hidden_act '{}' is not supported (only silu)", origin, act->get<std::string>());
  if (optional<bool>(j, "attention_bias", false, origin))
    fail_input("{}: attention_bias = true is not supported", origin);

  require_positive(c.vocab_size, "vocab_size", origin);
  require_positive(c.hidden_size, "hidden_size", origin);
  require_positive(c.num_layers, "num_hidden_layers", origin);
  require_positive(c.num_heads, "num_attention_heads", origin);
  require_positive(c.num_kv_heads, "num_key_value_heads", origin);
  require_positive(c.head_dim, "head_dim", origin);
  require_positive(c.num_experts, experts_field, origin);
  require_positive(c.top_k, "num_experts_per_tok", origin);
  require_positive(c.expert_width, width_field, origin);
  if (c.head_dim % 2 != 0) fail_input("{}: head_dim {} must be even for RoPE", origin, c.head_dim);
  if (c.num_heads % c.num_kv_heads != 0)
    fail_input("{}: num_attention_heads {} is not a multiple of num_key_value_heads {}", origin,
               c.num_heads, c.num_kv_heads);
  if (c.top_k > c.num_experts)
    fail_input("{}: num_experts_per_tok {} exceeds the number of experts {}", origin, c.top_k, c.num_experts);
  if (!(c.rms_norm_eps > 0)) fail_input("{}: rms_norm_eps must be positive", origin);
  if (!(c.rope_theta > 0)) fail_input("{}: rope_theta must be positive", origin);
  return c;
}

ModelConfig load_model_config(const std::filesystem::path& path) {
  auto file = std::filesystem::is_directory(path) ? path / "config.json" : path;
  std::ifstream in(file);
  if (!in) fail_input("cannot open model config {}", file.string());
  std::stringstream ss;
  ss << in.rdbuf();
  return parse_model_config(ss.str(), file.string());
}

}  // namespace moetrace
