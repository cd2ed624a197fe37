#include "tokenizer/tokenizer_json.h"

#include <fstream>
#include <sstream>

#include "tokenizer/bpe_model.h"
#include "tokenizer/wordlevel_model.h"
#include "util/error.h"

namespace moetrace::tok {

using json = nlohmann::json;

json read_json_file(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) fail_input("cannot open {}", path.string());
  std::stringstream ss;
  ss << in.rdbuf();
  const std::string text = ss.str();
  try {
    return json::parse(text);
  } catch (const json::parse_error& e) {
    fail_input("{} is not valid JSON: {}", path.string(), e.what());
  }
}

namespace {

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
                 tj[key].dump());
  Components c;
  c.normalizer = make_normalizer(tj.value("normalizer", json()), where);
  c.pre_tokenizer = make_pre_tokenizer(tj.value("pre_tokenizer", json()), where);
  c.model = make_model(tj["model"], f, where, c.model_type);
  c.post_processor = make_post_processor(tj.value("post_processor", json()), where);
  c.decoder = make_decoder(tj.value("decoder", json()), where);

  const json added = tj.value("added_tokens", json::array());
  if (!added.is_array()) fail_input("{}: \"added_tokens\" must be an array", where);
  for (const auto& a : added) {
    if (!a.is_object() || !a.contains("id") || !a["id"].is_number_integer() || !a.contains("content") ||
        !a["content"].is_string())
      fail_input("{}: added token {} needs an integer \"id\" and a string \"content\"", where, a.dump());
    AddedToken t;
    t.id = a["id"].get<std::int32_t>();
    t.content = a["content"].get<std::string>();
    t.single_word = a.value("single_word", false);
    t.lstrip = a.value("lstrip", false);
    t.rstrip = a.value("rstrip", false);
    t.normalized = a.value("normalized", !a.value("special", false));
    t.special = a.value("special", false);
    if (t.normalized && c.normalizer && c.normalizer->normalize_text(t.content) != t.content)
      fail_input("{}: unsupported tokenizer feature: added token \"{}\" is \"normalized\": true and the normalizer "
                 "changes it; matching added tokens in normalised text is not implemented",
                 where, t.content);
    c.added.add(t);
  }
  if (config.is_object()) {
    const json& cu = config.value("clean_up_tokenization_spaces", json());
    if (cu.is_boolean()) c.clean_up_tokenization_spaces = cu.get<bool>();
  }
  return c;
}

}  // namespace moetrace::tok
