#include "tokenizer/protocol_tokens.h"

#include "util/error.h"

namespace moetrace {

FormattedPrompt format_prompt(std::string_view t, std::string_view subject) {
  FormattedPrompt p;
  int fields = 0;
  for (std::size_t i = 0; i < t.size(); ++i) {
    const char c = t[i];
    if (c == '{' && i + 1 < t.size() && t[i + 1] == '{') {
      p.text += '{';
      ++i;
    } else if (c == '}' && i + 1 < t.size() && t[i + 1] == '}') {
      p.text += '}';
      ++i;
    } else if (c == '{' && i + 1 < t.size() && t[i + 1] == '}') {
      if (++fields > 1) fail_input("prompt template \"{}\" has more than one {{}} field", std::string(t));
      p.subject_begin = p.text.size();
      p.text.append(subject);
      p.subject_end = p.text.size();
      ++i;
    } else if (c == '{' || c == '}') {
      fail_input("prompt template \"{}\" has a brace that is not {{}}, {{{{ or }}}} at byte {}", std::string(t), i);
    } else {
      p.text += c;
    }
  }
  if (fields != 1) fail_input("prompt template \"{}\" has no {{}} field for the subject", std::string(t));
  return p;
}

TokenSpan find_subject_span(const Encoding& enc, std::size_t begin, std::size_t end) {
  TokenSpan s{enc.size(), 0};
  for (std::size_t i = 0; i < enc.size(); ++i) {
    const auto [tb, te] = enc.offsets[i];
    if (te > tb && tb < end && begin < te) {
      s.first = std::min(s.first, i);
      s.last = i + 1;
    }
  }
  if (s.last == 0) fail_input("no token overlaps the subject's bytes [{}, {})", begin, end);
  return s;
}

PromptTokens tokenize_prompt(const Tokenizer& tok, std::string_view prompt_template, std::string_view subject) {
  if (subject.empty()) fail_input("empty subject for prompt template \"{}\"", std::string(prompt_template));
  const FormattedPrompt p = format_prompt(prompt_template, subject);
  Encoding enc = tok.encode(p.text, /*add_special_tokens=*/false);
  PromptTokens out;
  out.subject = find_subject_span(enc, p.subject_begin, p.subject_end);
  out.ids = std::move(enc.ids);
  return out;
}

ObjectRule parse_object_rule(std::string_view name) {
  if (name == "leading_space") return ObjectRule::LeadingSpace;
  if (name == "bare_then_space") return ObjectRule::BareThenSpace;
  fail_input("unknown object-token rule \"{}\" (expected leading_space or bare_then_space)", std::string(name));
}

const char* to_string(ObjectRule rule) {
  return rule == ObjectRule::LeadingSpace ? "leading_space" : "bare_then_space";
}

ObjectToken object_token(const Tokenizer& tok, std::string_view object, ObjectRule rule) {
  if (object.empty()) fail_input("empty object string");
  auto make = [&](std::string text) {
    ObjectToken o;
    o.ids = tok.encode_ids(text, /*add_special_tokens=*/false);
    o.text = std::move(text);
    o.single = o.ids.size() == 1;
    if (o.single) o.id = o.ids[0];
    return o;
  };
  if (rule == ObjectRule::BareThenSpace) {
    ObjectToken bare = make(std::string(object));
    if (bare.single) return bare;
  }
  std::string spaced;
  spaced.reserve(object.size() + 1);
  spaced.push_back(' ');
  spaced.append(object);
  return make(std::move(spaced));
}

}  // namespace moetrace
