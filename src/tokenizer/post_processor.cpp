#include "tokenizer/post_processor.h"

#include <algorithm>
#include <vector>

#include <nlohmann/json.hpp>

#include "tokenizer/utf8.h"
#include "util/error.h"
#include "util/json_input.h"
#include "util/message.h"

namespace moetrace::tok {
namespace {

using json = nlohmann::json;

class TemplateProcessor : public PostProcessor {
 public:
  struct Item {
    bool is_sequence;
    std::vector<std::int32_t> ids;
    std::vector<std::string> tokens;
  };
  explicit TemplateProcessor(std::vector<Item> items) : items_(std::move(items)) {}
  void process(Encoding& enc, bool add_special) const override {
    if (!add_special) return;
    Encoding out;
    for (const Item& it : items_) {
      if (it.is_sequence) {
        out.ids.insert(out.ids.end(), enc.ids.begin(), enc.ids.end());
        out.tokens.insert(out.tokens.end(), enc.tokens.begin(), enc.tokens.end());
        out.offsets.insert(out.offsets.end(), enc.offsets.begin(), enc.offsets.end());
        out.special.insert(out.special.end(), enc.special.begin(), enc.special.end());
      } else {
        for (std::size_t k = 0; k < it.ids.size(); ++k) {
          out.ids.push_back(it.ids[k]);
          out.tokens.push_back(it.tokens[k]);
          out.offsets.emplace_back(0, 0);
          out.special.push_back(1);
        }
      }
    }
    enc = std::move(out);
  }

 private:
  std::vector<Item> items_;
};

class ByteLevelProcessor : public PostProcessor {
 public:
  ByteLevelProcessor(bool trim_offsets, bool add_prefix_space)
      : trim_(trim_offsets), add_prefix_space_(add_prefix_space) {}
  void process(Encoding& enc, bool) const override {
    if (!trim_) return;
    for (std::size_t i = 0; i < enc.size(); ++i) {
      if (enc.special[i]) continue;
      const std::string& t = enc.tokens[i];
      std::vector<char32_t> cps;
      for (std::size_t p = 0; p < t.size();) cps.push_back(next_code_point(t, p));
      auto is_space = [](char32_t c) { return c == U'\u0120' || is_unicode_whitespace(c); };
      std::size_t lead = 0, trail = 0;
      while (lead < cps.size() && is_space(cps[lead])) ++lead;
      while (trail < cps.size() && is_space(cps[cps.size() - 1 - trail])) ++trail;
      auto& [b, e] = enc.offsets[i];
      if (lead > 0) {
        if ((i == 0 || b == 0) && add_prefix_space_ && lead == 1) lead = 0;
        b = std::min(b + lead, e);
      }
      if (trail > 0 && e >= trail) e = std::max(e - trail, b);
    }
  }

 private:
  bool trim_, add_prefix_space_;
};

class SequenceProcessor : public PostProcessor {
 public:
  explicit SequenceProcessor(std::vector<std::unique_ptr<PostProcessor>> parts) : parts_(std::move(parts)) {}
  void process(Encoding& enc, bool add_special) const override {
    for (const auto& p : parts_) p->process(enc, add_special);
  }

 private:
  std::vector<std::unique_ptr<PostProcessor>> parts_;
};

std::unique_ptr<PostProcessor> make_template(const json& j, const std::string& where) {
  if (!j.contains("single") || !j["single"].is_array())
    fail_input("{}: TemplateProcessing post_processor needs a \"single\" template array", where);
  const json specials = j.value("special_tokens", json::object());
  std::vector<TemplateProcessor::Item> items;
  for (const auto& el : j["single"]) {
    if (el.contains("Sequence")) {
      const std::string seq = el["Sequence"].value("id", std::string("A"));
      if (seq != "A")
        fail_input("{}: TemplateProcessing single template refers to sequence \"{}\"; only A exists", where, seq);
      items.push_back({true, {}, {}});
    } else if (el.contains("SpecialToken")) {
      const std::string name = el["SpecialToken"].value("id", std::string());
      if (!specials.contains(name))
        fail_input("{}: TemplateProcessing uses special token \"{}\" missing from \"special_tokens\"", where, name);
      const json& st = specials[name];
      TemplateProcessor::Item item{false, {}, {}};
      for (const auto& id : st.value("ids", json::array()))
        item.ids.push_back(static_cast<std::int32_t>(
            json_integer(id, 0, INT32_MAX, where, "post_processor.special_tokens." + truncate_for_message(name) + ".ids")));
      for (const auto& tk : st.value("tokens", json::array())) item.tokens.push_back(tk.get<std::string>());
      if (item.ids.size() != item.tokens.size())
        fail_input("{}: special token \"{}\" has {} ids but {} tokens", where, name, item.ids.size(), item.tokens.size());
      items.push_back(std::move(item));
    } else {
      fail_input("{}: TemplateProcessing item {} is neither Sequence nor SpecialToken", where, json_for_message(el));
    }
  }
  return std::make_unique<TemplateProcessor>(std::move(items));
}

}  // namespace

std::unique_ptr<PostProcessor> make_post_processor(const json& j, const std::string& where) {
  if (j.is_null()) return nullptr;
  if (!j.is_object() || !j.contains("type") || !j["type"].is_string())
    fail_input("{}: \"post_processor\" must be null or an object with a \"type\"", where);
  const std::string type = j["type"].get<std::string>();
  if (type == "TemplateProcessing") return make_template(j, where);
  if (type == "ByteLevel")
    return std::make_unique<ByteLevelProcessor>(j.value("trim_offsets", true), j.value("add_prefix_space", true));
  if (type == "Sequence") {
    if (!j.contains("processors") || !j["processors"].is_array())
      fail_input("{}: Sequence post_processor needs a \"processors\" array", where);
    std::vector<std::unique_ptr<PostProcessor>> parts;
    for (const auto& p : j["processors"]) {
      auto pp = make_post_processor(p, where);
      if (pp) parts.push_back(std::move(pp));
    }
    return std::make_unique<SequenceProcessor>(std::move(parts));
  }
  fail_input("{}: unsupported tokenizer feature: post_processor type \"{}\" (supported: TemplateProcessing, "
             "ByteLevel, Sequence)",
             where, type);
}

}  // namespace moetrace::tok
