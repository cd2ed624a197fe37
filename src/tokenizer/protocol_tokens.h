#pragma once
// The protocol's text rules (PROTOCOL.md): CounterFact prompts, the subject's token span found from
// the subject's characters, and the object-token rules.
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "tokenizer/encoding.h"
#include "tokenizer/tokenizer.h"

namespace moetrace {

// prompt.format(subject) for a CounterFact template with one "{}" field ("{{" and "}}" are
// literal braces). Records where the subject landed: byte offsets into `text`.
struct FormattedPrompt {
  std::string text;
  std::size_t subject_begin = 0, subject_end = 0;  // byte offsets into text
};
FormattedPrompt format_prompt(std::string_view prompt_template, std::string_view subject);

// Tokens [first, last) whose byte offsets overlap the byte range [begin, end) of the encoded text.
// Throws InputError when no token overlaps (e.g. an empty range).
struct TokenSpan {
  std::size_t first = 0, last = 0;
  std::size_t size() const { return last - first; }
};
TokenSpan find_subject_span(const Encoding& enc, std::size_t begin, std::size_t end);

// Encodes a formatted prompt without special tokens (protocol runs use no BOS) and returns the ids
// and the subject's token span.
struct PromptTokens {
  std::vector<std::int32_t> ids;
  TokenSpan subject;
};
PromptTokens tokenize_prompt(const Tokenizer& tok, std::string_view prompt_template, std::string_view subject);

// Object-token rules. leading_space: tokenise " " + object. bare_then_space (the paper's default):
// the bare object if it is one token, else " " + object.
enum class ObjectRule { LeadingSpace, BareThenSpace };
ObjectRule parse_object_rule(std::string_view name);  // "leading_space" | "bare_then_space"
const char* to_string(ObjectRule rule);

struct ObjectToken {
  bool single = false;            // true when the chosen text is exactly one token
  std::int32_t id = -1;           // the token when single
  std::vector<std::int32_t> ids;  // tokens of the chosen text (several when !single)
  std::string text;               // the text that was tokenised (object or " " + object)
};
ObjectToken object_token(const Tokenizer& tok, std::string_view object, ObjectRule rule);

}  // namespace moetrace
