#pragma once
// Reads Hugging Face tokenizer.json (and tokenizer_config.json where present) into the pipeline
// stages. Anything the pipeline does not implement is refused with an InputError that names the
// file and the feature; nothing is approximated.
#include <filesystem>
#include <memory>
#include <string>

#include <nlohmann/json.hpp>

#include "tokenizer/added_vocabulary.h"
#include "tokenizer/decoders.h"
#include "tokenizer/json_reader.h"
#include "tokenizer/model.h"
#include "tokenizer/normalizers.h"
#include "tokenizer/post_processor.h"
#include "tokenizer/pre_tokenizers.h"

namespace moetrace::tok {

struct Components {
  std::unique_ptr<Normalizer> normalizer;
  std::unique_ptr<PreTokenizer> pre_tokenizer;
  std::unique_ptr<Model> model;
  std::unique_ptr<PostProcessor> post_processor;
  std::unique_ptr<Decoder> decoder;
  AddedVocabulary added;
  std::string model_type;               // "BPE" or "WordLevel"
  bool clean_up_tokenization_spaces = false;  // from tokenizer_config.json
};

// `config` may be null (no tokenizer_config.json). `where` names the source in error messages.
Components build_components(TokenizerFile& tokenizer, const nlohmann::json& config, const std::string& where);

// Parses a JSON file; InputError naming the file when it is missing or malformed.
nlohmann::json read_json_file(const std::filesystem::path& path);

}  // namespace moetrace::tok
