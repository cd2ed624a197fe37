#pragma once
// The inputs of a `moetrace localize` run as the command reads them, shared with `moetrace plan`:
// the question files (loaded with the config's languages, strictness and templates, then screened
// against the model and tokenizer) and the protocol options the config sets.
#include <filesystem>

#include "localize/localize_data.h"
#include "model/model_config.h"
#include "protocols/localize_config.h"
#include "protocols/localize_protocol.h"
#include "tokenizer/tokenizer.h"

namespace moetrace {

// Reads a question file with the config's languages, strict flag and templates; `key` ("questions"
// or "unrelated") names the [data] key in file-level messages.
localize::QuestionSet read_localize_questions(const LocalizeConfig& config, const std::filesystem::path& path, const char* key);

// Questions the model cannot ask (no prompt token, a prompt too long for its positions, an answer
// of no token) are skipped and counted, or with strict = true an InputError naming the file and record;
// an InputError too when no question is left. `config` must have passed fit_localize_config_to_model.
void screen_localize_questions(const LocalizeConfig& config, const ModelConfig& model, const Tokenizer& tokenizer,
                               localize::QuestionSet& questions, const std::filesystem::path& path);

// The protocol options of the config (LocalizeOptions::unrelated left null).
localize::LocalizeOptions localize_options(const LocalizeConfig& config, const ModelConfig& model);

}  // namespace moetrace
