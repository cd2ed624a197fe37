#pragma once
// One description of every supported architecture. The differences between Mixtral, Qwen3-MoE and
// OLMoE are data here (q/k-norm kind, top-k renormalisation, tensor names), so the forward is
// written once.
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include "util/checked.h"

namespace moetrace {

enum class Architecture { Mixtral, Qwen3Moe, Olmoe };

enum class QkNorm {
  None,             // Mixtral
  PerHead,          // Qwen3: RMSNorm over each head's head_dim, weight [head_dim]
  WholeProjection,  // OLMoE: RMSNorm over the whole q (or k) projection, weight [heads*head_dim]
};

struct ModelConfig {
  Architecture arch{};
  std::string model_type;  // as in config.json
  int vocab_size = 0;
  int hidden_size = 0;
  int num_layers = 0;
  int num_heads = 0;
  int num_kv_heads = 0;
  int head_dim = 0;
  int num_experts = 0;
  int top_k = 0;
  int expert_width = 0;  // intermediate size of one expert
  double rms_norm_eps = 0;
  double rope_theta = 0;
  bool norm_topk_prob = false;  // divide the top-k probabilities by their sum
  bool tie_word_embeddings = false;
  QkNorm qk_norm = QkNorm::None;
  int bos_token_id = -1;  // -1 when config.json has none
  // End-of-sequence token ids, distinct, in file order: "eos_token_id" (an integer or a list of
  // integers, each in [0, vocab_size)) of generation_config.json next to config.json when that
  // file exists and has the key (not null), else of config.json; empty when neither has one.
  std::vector<int> eos_token_ids;
  int max_position_embeddings = 0;  // 0 when config.json has none; prompts longer than it are skipped

  // Checked (parse_model_config also refuses configs where these overflow).
  int q_width() const { return mul_or_fail(num_heads, head_dim, "model config: num_attention_heads x head_dim"); }
  int kv_width() const { return mul_or_fail(num_kv_heads, head_dim, "model config: num_key_value_heads x head_dim"); }
};

// Parses <model_dir>/config.json (or the given file) and, when it exists, generation_config.json
// in the same folder (only its "eos_token_id" is read; the file must be a JSON object). Errors
// name the file and the field.
ModelConfig load_model_config(const std::filesystem::path& path);
ModelConfig parse_model_config(const std::string& json_text, const std::string& origin);

// The "eos_token_id" of a generation_config.json text: ids in [0, vocab_size), distinct, in file
// order; nullopt when the key is absent or null. InputError naming `origin` and the key otherwise.
std::optional<std::vector<int>> parse_generation_eos_ids(const std::string& json_text, int vocab_size,
                                                         const std::string& origin);

std::string to_string(Architecture a);

}  // namespace moetrace
