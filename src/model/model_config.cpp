#include "model/model_config.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <system_error>

#include <nlohmann/json.hpp>

#include "util/checked.h"
#include "util/error.h"
#include "util/input_file.h"
#include "util/json_input.h"
#include "util/message.h"

namespace moetrace {
namespace {

using nlohmann::json;
constexpr std::int64_t kIntMax = std::numeric_limits<int>::max();

// The value of the first spelling in `names` that is present and not null.
const json* find_field(const json& j, std::initializer_list<const char*> names, const char*& found) {
  for (const char* name : names) {
    auto it = j.find(name);
    if (it == j.end() || it->is_null()) continue;
    found = name;
    return &*it;
  }
  found = *names.begin();
  return nullptr;
}

// An int field, checked to be a JSON integer in [lo, hi] before it is narrowed (so 4294967304
// never becomes 8 and 1.5 never becomes 1).
int int_field(const json& v, const char* name, std::int64_t lo, std::int64_t hi, const std::string& origin) {
  if (!v.is_number_integer())
    fail_input("{}: field '{}' must be an integer, got {}", origin, name, json_for_message(v));
  const std::int64_t x = json_integer(v, std::numeric_limits<std::int64_t>::min(),
                                      std::numeric_limits<std::int64_t>::max(), origin, name);
  if (lo == 1 && x < 1) fail_input("{}: field '{}' must be positive, got {}", origin, name, x);
  if (x < lo || x > hi) fail_input("{}: field '{}' must be in [{}, {}], got {}", origin, name, lo, hi, x);
  return static_cast<int>(x);
}

// A required positive int field; `names` lists the spellings the hub configs use.
int required_int(const json& j, std::initializer_list<const char*> names, const std::string& origin) {
  const char* name = nullptr;
  const json* v = find_field(j, names, name);
  if (!v) fail_input("{}: missing required field '{}'", origin, name);
  return int_field(*v, name, 1, kIntMax, origin);
}

int optional_int(const json& j, const char* name, int fallback, std::int64_t lo, std::int64_t hi,
                 const std::string& origin) {
  auto it = j.find(name);
  if (it == j.end() || it->is_null()) return fallback;
  return int_field(*it, name, lo, hi, origin);
}

// A float field: a finite number in (0, hi] (NaN never passes).
double positive_double(const json& v, const char* name, double hi, const std::string& origin) {
  if (!v.is_number()) fail_input("{}: field '{}' must be a number, got {}", origin, name, json_for_message(v));
  const double x = v.get<double>();
  if (!(std::isfinite(x) && x > 0 && x <= hi))
    fail_input("{}: field '{}' must be positive, finite and at most {}, got {}", origin, name, hi, json_for_message(v));
  return x;
}

bool optional_bool(const json& j, const char* name, bool fallback, const std::string& origin) {
  auto it = j.find(name);
  if (it == j.end() || it->is_null()) return fallback;
  return json_bool(*it, origin, name);
}

// a * b as an int, or an InputError naming the product.
int product_field(int a, int b, const char* what, const std::string& origin) {
  const auto r = checked_mul<std::int64_t>(a, b);
  if (!r || *r > kIntMax) fail_input("{}: {} = {} x {} is too large (at most {})", origin, what, a, b, kIntMax);
  return static_cast<int>(*r);
}

// "eos_token_id": an integer or a list of integers, each a token id in [0, vocab_size); duplicates
// dropped, file order kept. nullopt when absent or null.
std::optional<std::vector<int>> eos_ids_field(const json& j, int vocab_size, const std::string& origin) {
  constexpr const char* kName = "eos_token_id";
  auto it = j.find(kName);
  if (it == j.end() || it->is_null()) return std::nullopt;
  if (!it->is_number_integer() && !it->is_array())
    fail_input("{}: field '{}' must be an integer or a list of integers, got {}", origin, kName, json_for_message(*it));
  std::vector<int> ids;
  auto add = [&](const json& v, const std::string& name) {
    const int id = int_field(v, name.c_str(), 0, std::int64_t{vocab_size} - 1, origin);
    if (std::find(ids.begin(), ids.end(), id) == ids.end()) ids.push_back(id);
  };
  if (it->is_array()) {
    for (std::size_t i = 0; i < it->size(); ++i) add((*it)[i], std::string(kName) + "[" + std::to_string(i) + "]");
  } else {
    add(*it, kName);
  }
  return ids;
}

void require_positive(int v, const char* name, const std::string& origin) {
  if (v <= 0) fail_input("{}: field '{}' must be positive, got {}", origin, name, v);
}

ModelConfig parse_model_config_json(const json& j, const std::string& origin);

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
  try {
    return parse_model_config_json(parse_json_input(text, origin), origin);
  } catch (const json::exception& e) {
    // A safety net: every field is read through checked getters, but no library exception may
    // leave this function as anything but an InputError naming the file.
    fail_input("{}: unreadable value: {}", origin, e.what());
  }
}

namespace {

ModelConfig parse_model_config_json(const json& j, const std::string& origin) {
  if (!j.is_object()) fail_input("{}: expected a JSON object", origin);
  auto mt = j.find("model_type");
  if (mt == j.end() || mt->is_null()) fail_input("{}: missing required field 'model_type'", origin);
  if (!mt->is_string()) fail_input("{}: field 'model_type' must be a string, got {}", origin, json_for_message(*mt));

  ModelConfig c;
  c.model_type = mt->get<std::string>();
  // The spellings of the architecture-specific fields, for error messages.
  const char* experts_field = "num_experts";
  const char* width_field = "intermediate_size";
  if (c.model_type == "mixtral") {
    c.arch = Architecture::Mixtral;
    experts_field = "num_local_experts";
    c.num_experts = required_int(j, {"num_local_experts"}, origin);
    c.expert_width = required_int(j, {"intermediate_size"}, origin);
    c.norm_topk_prob = true;  // Mixtral always renormalises its top-k weights
    c.qk_norm = QkNorm::None;
  } else if (c.model_type == "qwen3_moe") {
    c.arch = Architecture::Qwen3Moe;
    c.num_experts = required_int(j, {"num_experts"}, origin);
    width_field = "moe_intermediate_size";
    c.expert_width = required_int(j, {"moe_intermediate_size"}, origin);
    c.norm_topk_prob = optional_bool(j, "norm_topk_prob", false, origin);
    c.qk_norm = QkNorm::PerHead;
    // Dense layers are not supported: every layer must be sparse.
    if (optional_int(j, "decoder_sparse_step", 1, 1, kIntMax, origin) != 1)
      fail_input("{}: decoder_sparse_step != 1 (dense MLP layers) is not supported", origin);
    if (auto it = j.find("mlp_only_layers"); it != j.end() && it->is_array() && !it->empty())
      fail_input("{}: mlp_only_layers (dense MLP layers) is not supported", origin);
  } else if (c.model_type == "olmoe") {
    c.arch = Architecture::Olmoe;
    c.num_experts = required_int(j, {"num_experts"}, origin);
    c.expert_width = required_int(j, {"intermediate_size"}, origin);
    c.norm_topk_prob = optional_bool(j, "norm_topk_prob", false, origin);
    c.qk_norm = QkNorm::WholeProjection;
    if (auto it = j.find("clip_qkv"); it != j.end() && !it->is_null())
      fail_input("{}: clip_qkv is not supported", origin);
  } else {
    fail_input("{}: unsupported model_type '{}' (supported: mixtral, qwen3_moe, olmoe)", origin,
               truncate_for_message(c.model_type));
  }
  c.vocab_size = required_int(j, {"vocab_size"}, origin);
  c.hidden_size = required_int(j, {"hidden_size"}, origin);
  c.num_layers = required_int(j, {"num_hidden_layers"}, origin);
  c.num_heads = required_int(j, {"num_attention_heads"}, origin);
  c.num_kv_heads = optional_int(j, "num_key_value_heads", c.num_heads, 1, kIntMax, origin);
  c.top_k = required_int(j, {"num_experts_per_tok"}, origin);
  {
    const char* name = nullptr;
    const json* eps = find_field(j, {"rms_norm_eps"}, name);
    if (!eps) fail_input("{}: missing required field 'rms_norm_eps'", origin);
    c.rms_norm_eps = positive_double(*eps, "rms_norm_eps", 1.0, origin);
  }
  c.rope_theta = 10000.0;
  if (auto th = j.find("rope_theta"); th != j.end() && !th->is_null())
    c.rope_theta = positive_double(*th, "rope_theta", 1e30, origin);
  if (auto rp = j.find("rope_parameters"); rp != j.end() && rp->is_object()) {
    // transformers 5 may nest rope settings; only the default rope type is supported.
    if (auto t = rp->find("rope_type"); t != rp->end() && !t->is_null() && (!t->is_string() || *t != "default"))
      fail_input("{}: rope_type {} is not supported (only the default rotate-half RoPE)", origin, json_for_message(*t));
    if (auto th = rp->find("rope_theta"); th != rp->end() && !th->is_null())
      c.rope_theta = positive_double(*th, "rope_parameters.rope_theta", 1e30, origin);
  }
  if (auto rs = j.find("rope_scaling"); rs != j.end() && !rs->is_null())
    fail_input("{}: rope_scaling is not supported", origin);
  c.tie_word_embeddings = optional_bool(j, "tie_word_embeddings", false, origin);
  c.bos_token_id = optional_int(j, "bos_token_id", -1, 0, c.vocab_size - 1, origin);
  c.eos_token_ids = eos_ids_field(j, c.vocab_size, origin).value_or(std::vector<int>{});
  c.max_position_embeddings = optional_int(j, "max_position_embeddings", 0, 1, kIntMax, origin);
  c.head_dim = optional_int(j, "head_dim", 0, 0, kIntMax, origin);
  if (c.head_dim == 0) {
    require_positive(c.num_heads, "num_attention_heads", origin);
    if (c.hidden_size % c.num_heads != 0)
      fail_input("{}: hidden_size {} is not divisible by num_attention_heads {} and no head_dim is given",
                 origin, c.hidden_size, c.num_heads);
    c.head_dim = c.hidden_size / c.num_heads;
  }
  if (auto act = j.find("hidden_act"); act != j.end() && !act->is_null() && (!act->is_string() || *act != "silu"))
    fail_input("{}: hidden_act {} is not supported (only silu)", origin, json_for_message(*act));
  if (optional_bool(j, "attention_bias", false, origin))
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
  // Every size the loader and the engine derive from these must fit in an int.
  (void)product_field(c.num_heads, c.head_dim, "num_attention_heads x head_dim", origin);
  (void)product_field(2, c.expert_width, "2 x the expert width", origin);
  return c;
}

}  // namespace

std::optional<std::vector<int>> parse_generation_eos_ids(const std::string& text, int vocab_size,
                                                         const std::string& origin) {
  try {
    const json j = parse_json_input(text, origin);
    if (!j.is_object()) fail_input("{}: expected a JSON object", origin);
    return eos_ids_field(j, vocab_size, origin);
  } catch (const json::exception& e) {
    fail_input("{}: unreadable value: {}", origin, e.what());
  }
}

ModelConfig load_model_config(const std::filesystem::path& path) {
  const auto file = input_path_kind(path, "model config") == PathKind::Directory ? path / "config.json" : path;
  ModelConfig c = parse_model_config(read_regular_file(file, "model config", kMaxConfigJsonBytes), file.string());
  // generation_config.json (what generation uses in transformers) takes precedence for the EOS ids.
  const auto generation = file.parent_path() / "generation_config.json";
  std::error_code ec;
  if (std::filesystem::symlink_status(generation, ec).type() != std::filesystem::file_type::not_found) {
    const std::string text = read_regular_file(generation, "generation config", kMaxConfigJsonBytes);
    if (auto ids = parse_generation_eos_ids(text, c.vocab_size, generation.string())) c.eos_token_ids = std::move(*ids);
  }
  return c;
}

}  // namespace moetrace
