// `moetrace tokenize`: token ids of strings, with the model's own tokenizer.json.
#include <cstdio>

#include <nlohmann/json.hpp>

#include "cli/commands.h"
#include "tokenizer/tokenizer.h"
#include "util/error.h"
#include "util/input_file.h"

namespace moetrace::cli {

namespace {

std::vector<std::string> read_strings(const std::string& path) {
  const std::string text = read_input_file(path, "--input", std::uint64_t{1} << 30);
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(text);
  } catch (const nlohmann::json::exception& e) {
    fail_input("{} is not valid JSON: {}", path, e.what());
  }
  if (!j.is_array()) fail_input("{} must hold a JSON array of strings, e.g. [\"The Eiffel Tower is in\"]", path);
  std::vector<std::string> out;
  out.reserve(j.size());
  for (std::size_t i = 0; i < j.size(); ++i) {
    if (!j[i].is_string()) fail_input("{}: element {} is {}, not a string", path, i, shorten(j[i].dump()));
    out.push_back(j[i].get<std::string>());
  }
  return out;
}

}  // namespace

void register_tokenize_command(CLI::App& app) {
  struct Options {
    std::string tokenizer, input;
    bool no_special = false;
  };
  auto opts = std::make_shared<Options>();
  CLI::App* cmd = app.add_subcommand(
      "tokenize",
      "Print the token ids of strings, using a Hugging Face tokenizer.json.\n"
      "Input: a JSON file holding an array of strings. Output (stdout): a JSON array with one array of\n"
      "token ids per input string, in the same order. By default the post-processor's special tokens are\n"
      "added (Mixtral's BOS <s> = 1; Qwen3 and OLMoE add none); --no-special leaves them out, as protocol\n"
      "runs do.\n\n"
      "Example:\n"
      "  echo '[\"The Eiffel Tower is in\", \" Paris\"]' > strings.json\n"
      "  moetrace tokenize --tokenizer path/to/Mixtral-8x7B-v0.1 --input strings.json\n"
      "  [[1,415,413,2728,301,19895,349,297],[1,28705,5465]]\n"
      "Supported tokenizers: byte-level BPE (Qwen3, GPT-NeoX/OLMoE), SentencePiece-style BPE with byte\n"
      "fallback (Llama, Mixtral) and WordLevel; see docs/tokenizer.md.");
  cmd->add_option("--tokenizer", opts->tokenizer,
                  "tokenizer.json, or a model folder that holds one (tokenizer_config.json beside it is read too)")
      ->required();
  cmd->add_option("--input", opts->input, "JSON file with an array of strings, e.g. [\"a\", \"b c\"]")->required();
  cmd->add_flag("--no-special", opts->no_special, "do not add the post-processor's special tokens (BOS)");
  cmd->callback([opts] {
    require_file_or_directory(opts->tokenizer, "--tokenizer");
    require_regular_file(opts->input, "--input");
    const Tokenizer tok = Tokenizer::from_path(opts->tokenizer);
    const std::vector<std::string> strings = read_strings(opts->input);
    std::string out = "[";
    for (std::size_t i = 0; i < strings.size(); ++i) {
      if (i) out += ',';
      out += '[';
      std::vector<std::int32_t> ids;
      try {
        ids = tok.encode_ids(strings[i], !opts->no_special);
      } catch (const InputError& e) {
        fail_input("{}: string {}: {}", opts->input, i, e.what());
      }
      for (std::size_t k = 0; k < ids.size(); ++k) {
        if (k) out += ',';
        out += std::to_string(ids[k]);
      }
      out += ']';
    }
    out += "]\n";
    std::fwrite(out.data(), 1, out.size(), stdout);
  });
}

}  // namespace moetrace::cli
