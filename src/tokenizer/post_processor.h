#pragma once
// tokenizer.json "post_processor": TemplateProcessing (single-sequence template, e.g. Llama's
// "<s> $A"), ByteLevel (offset trimming only) and Sequence.
#include <memory>
#include <string>

#include <nlohmann/json_fwd.hpp>

#include "tokenizer/encoding.h"

namespace moetrace::tok {

class PostProcessor {
 public:
  virtual ~PostProcessor() = default;
  virtual void process(Encoding& enc, bool add_special_tokens) const = 0;
};

std::unique_ptr<PostProcessor> make_post_processor(const nlohmann::json& j, const std::string& where);

}  // namespace moetrace::tok
