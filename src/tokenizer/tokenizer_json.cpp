#include "tokenizer/tokenizer_json.h"

#include <algorithm>

#include "tokenizer/bpe_model.h"
#include "tokenizer/vocab.h"
#include "tokenizer/wordlevel_model.h"
#include "util/error.h"
#include "util/input_file.h"
#include "util/json_input.h"
#include "util/message.h"

namespace moetrace::tok {

using json = nlohmann::json;

json read_json_file(const std::filesystem::path& path) {
  return parse_json_input(read_regular_file(path, "JSON file", kMaxConfigJsonBytes), path.string());
}

namespace {

// Builds one component; a library exception from reading its fields (a string where a boolean
// belongs, say) becomes an InputError naming the file and the component.
template <typename F>
auto component(const char* name, const std::string& where, F&& build) {
  try {
    return build();
  } catch (const json::exception& e) {
    fail_input("{}: \"{}\": {}", where, name, e.what());
  }
}

std::unique_ptr<Model> make_model(const json& m, TokenizerFile& f, const std::string& where, std::string& type_out) {
  if (!m.is_object()) fail_input("{}: \"model\" must be an object", where);
  std::string type;
  if (m.contains("type") && m["type"].is_string()) {
    type = m["type"].get<std::string>();
  } else if (f.has_merges) {
    type = "BPE";
  } else {
    fail_input("{}: \"model\" has no \"type\"", where);
  }
  type_out = type;
  if (type == "BPE") return std::make_unique<BpeModel>(m, f, where);
  if (type == "WordLevel") return std::make_unique<WordLevelModel>(m, f, where);
  fail_input("{}: unsupported tokenizer feature: model type \"{}\" (supported: BPE, WordLevel)", where, type);
}

}  // namespace

Components build_components(TokenizerFile& f, const json& config, const std::string& where) {
  const json& tj = f.rest;
  if (!tj.is_object()) fail_input("{}: a tokenizer.json must be a JSON object", where);
  if (!tj.contains("model")) fail_input("{}: no \"model\" (is this a Hugging Face tokenizer.json?)", where);
  for (const char* key : {"truncation", "padding"})
    if (tj.contains(key) && !tj[key].is_null())
      fail_input("{}: unsupported tokenizer feature: \"{}\" is set ({}); moetrace never truncates or pads", where, key,
                 json_for_message(tj[key]));
  Components c;
  c.normalizer = component("normalizer", where, [&] { return make_normalizer(tj.value("normalizer", json()), where); });
  c.pre_tokenizer =
      component("pre_tokenizer", where, [&] { return make_pre_tokenizer(tj.value("pre_tokenizer", json()), where); });
  c.model = component("model", where, [&] { return make_model(tj["model"], f, where, c.model_type); });
  c.post_processor =
      component("post_processor", where, [&] { return make_post_processor(tj.value("post_processor", json()), where); });
  c.decoder = component("decoder", where, [&] { return make_decoder(tj.value("decoder", json()), where); });

  const json added = tj.value("added_tokens", json::array());
  if (!added.is_array()) fail_input("{}: \"added_tokens\" must be an array", where);
  // Added tokens usually extend the model's vocabulary; their ids are bounded like its ids.
  const std::int64_t max_id = static_cast<std::int64_t>(c.model->vocab_size() + added.size()) + kMaxVocabIdGap;
  for (std::size_t i = 0; i < added.size(); ++i) {
    const json& a = added[i];
    const std::string field = fmt::format("added_tokens[{}]", i);
    if (!a.is_object() || !a.contains("id") || !a.contains("content"))
      fail_input("{}: {} needs an integer \"id\" and a string \"content\", got {}", where, field, json_for_message(a));
    auto flag = [&](const char* key, bool fallback) {
      return a.contains(key) && !a[key].is_null() ? json_bool(a[key], where, field + "." + key) : fallback;
    };
    AddedToken t;
    t.id = static_cast<std::int32_t>(json_integer(a["id"], 0, std::min<std::int64_t>(max_id, INT32_MAX), where, field + ".id"));
    t.content = json_string(a["content"], where, field + ".content");
    t.single_word = flag("single_word", false);
    t.lstrip = flag("lstrip", false);
    t.rstrip = flag("rstrip", false);
    t.special = flag("special", false);
    t.normalized = flag("normalized", !t.special);
    if (t.normalized && c.normalizer && c.normalizer->normalize_text(t.content) != t.content)
      fail_input("{}: unsupported tokenizer feature: added token \"{}\" is \"normalized\": true and the normalizer "
                 "changes it; matching added tokens in normalised text is not implemented",
                 where, truncate_for_message(t.content));
    c.added.add(t);
  }
  if (config.is_object()) {
    const json& cu = config.value("clean_up_tokenization_spaces", json());
    if (cu.is_boolean()) c.clean_up_tokenization_spaces = cu.get<bool>();
  }
  return c;
}

}  // namespace moetrace::tok
