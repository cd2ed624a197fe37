#pragma once
// CounterFact records to token ids with the model's tokenizer: prompt = template with the subject,
// subject span from character offsets (never by re-tokenising a substring), object tokens by the
// configured rule, and a named reason for every record that cannot be used.
#include <memory>

#include "model/model_config.h"
#include "protocols/case_scan.h"

namespace moetrace {

class Tokenizer;

class TokenizedCaseBuilder final : public CaseBuilder {
 public:
  TokenizedCaseBuilder(const RunConfig& config, const ModelConfig& model);
  ~TokenizedCaseBuilder() override;
  BuiltCase build(const CounterFactRecord& record) const override;
  std::vector<std::string> token_texts(const std::vector<int>& ids) const override;

 private:
  const RunConfig& config_;
  int vocab_size_;
  int max_prompt_tokens_;  // moetrace's bound, or the model's max_position_embeddings when smaller
  std::unique_ptr<Tokenizer> tokenizer_;
};

}  // namespace moetrace
