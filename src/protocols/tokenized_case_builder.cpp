#include "protocols/tokenized_case_builder.h"

#include <algorithm>
#include <cstdint>
#include <optional>
#include <string>

#include "tokenizer/protocol_tokens.h"
#include "tokenizer/tokenizer.h"
#include "util/error.h"

namespace moetrace {

TokenizedCaseBuilder::TokenizedCaseBuilder(const RunConfig& config, const ModelConfig& model)
    : config_(config),
      vocab_size_(model.vocab_size),
      max_prompt_tokens_(model.max_position_embeddings > 0
                             ? static_cast<int>(std::min<std::int64_t>(limits::kMaxPromptTokens, model.max_position_embeddings))
                             : static_cast<int>(limits::kMaxPromptTokens)),
      tokenizer_(std::make_unique<Tokenizer>(Tokenizer::from_path(config.tokenizer_path))) {}

TokenizedCaseBuilder::~TokenizedCaseBuilder() = default;

std::vector<std::string> TokenizedCaseBuilder::token_texts(const std::vector<int>& ids) const {
  std::vector<std::string> out;
  for (int id : ids) out.push_back(tokenizer_->decode(std::vector<std::int32_t>{id}, false));
  return out;
}

namespace {

// Why the case's true and foil objects cannot be contrasted, or "" when they can.
std::string objects_skip_reason(const ObjectToken& truth, const ObjectToken& foil, std::optional<std::int32_t> unk) {
  if (!truth.single) return "multi-token true object";
  if (!foil.single) return "multi-token foil object";
  // An unknown word becomes the model's unk token: such an object is not a real token.
  if (unk && (truth.id == *unk || foil.id == *unk)) return "object outside the vocabulary";
  if (truth.id == foil.id) return "true and foil objects are the same token";
  return "";
}

// A token outside the model's vocabulary is a tokenizer that does not match the model: bad input, not a skip.
void require_in_vocabulary(const Tokenizer& tokenizer, int vocab_size, const std::vector<std::int32_t>& ids,
                           std::int32_t true_id, std::int32_t foil_id, std::int64_t case_id) {
  for (std::int32_t id : ids)
    if (id < 0 || id >= vocab_size)
      fail_input("{}: token id {} of case {} is outside the model's vocabulary of {} (tokenizer and model do not match)",
                 tokenizer.source(), id, case_id, vocab_size);
  if (true_id >= vocab_size || foil_id >= vocab_size)
    fail_input("{}: object token of case {} is outside the model's vocabulary of {} (tokenizer and model do not match)",
               tokenizer.source(), case_id, vocab_size);
}

}  // namespace

BuiltCase TokenizedCaseBuilder::build(const CounterFactRecord& r) const {
  BuiltCase out;
  // Unusable records are counted under a reason rather than stopping the run: CounterFact has
  // many multi-token objects, and the protocol skips them by design.
  if (r.prompt_template.find("{}") == std::string::npos) {
    out.skip_reason = "prompt without {}";
    return out;
  }
  if (r.subject.empty()) {
    out.skip_reason = "empty subject";
    return out;
  }
  FormattedPrompt formatted;
  try {
    formatted = format_prompt(r.prompt_template, r.subject);
  } catch (const InputError&) {
    out.skip_reason = "malformed prompt template";
    return out;
  }
  const Encoding enc = tokenizer_->encode(formatted.text, config_.add_bos);
  if (enc.ids.size() > static_cast<std::size_t>(max_prompt_tokens_)) {
    out.skip_reason = fmt::format("prompt longer than {} tokens{}", max_prompt_tokens_,
                                  max_prompt_tokens_ < limits::kMaxPromptTokens ? " (the model's max_position_embeddings)" : "");
    return out;
  }
  TokenSpan span;
  try {
    span = find_subject_span(enc, formatted.subject_begin, formatted.subject_end);
  } catch (const InputError&) {
    out.skip_reason = "subject not found in prompt";
    return out;
  }
  if (r.true_object.empty() || r.foil_object.empty()) {
    out.skip_reason = "empty object";
    return out;
  }
  const ObjectToken truth = object_token(*tokenizer_, r.true_object, config_.object_rule);
  const ObjectToken foil = object_token(*tokenizer_, r.foil_object, config_.object_rule);
  out.skip_reason = objects_skip_reason(truth, foil, tokenizer_->unk_id());
  if (!out.skip_reason.empty()) return out;
  require_in_vocabulary(*tokenizer_, vocab_size_, enc.ids, truth.id, foil.id, r.case_id);
  out.prompt_text = formatted.text;
  out.prompt.ids.assign(enc.ids.begin(), enc.ids.end());
  out.prompt.subject_begin = static_cast<int>(span.first);
  out.prompt.subject_end = static_cast<int>(span.last);
  out.prompt.true_id = truth.id;
  out.prompt.foil_id = foil.id;
  return out;
}

}  // namespace moetrace
