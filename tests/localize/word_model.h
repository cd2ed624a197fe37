#pragma once
// What the asking and protocol suites share: a WordLevel tokenizer over a fixture model's ids
// ("w<i>"; id 2 the special EOS "</s>"; `newline`, when >= 0, a line feed) and a fixture model on
// the CPU backend with its engine and such a tokenizer.
#include <memory>
#include <string>

#include <nlohmann/json.hpp>

#include "backend/backend.h"
#include "engine/device_model.h"
#include "engine/forward.h"
#include "model/model_weights.h"
#include "support/test_paths.h"
#include "tokenizer/tokenizer.h"

namespace moetrace::test {

inline constexpr int kWordEos = 2;

inline Tokenizer word_tokenizer(int vocab, int newline) {
  nlohmann::json v = nlohmann::json::object();
  for (int i = 0; i < vocab; ++i) v[i == kWordEos ? "</s>" : i == newline ? "\n" : "w" + std::to_string(i)] = i;
  auto added = [](int id, const std::string& content, bool special) {
    return nlohmann::json{{"id", id}, {"content", content}, {"special", special}, {"normalized", false},
                          {"lstrip", false}, {"rstrip", false}, {"single_word", false}};
  };
  nlohmann::json tokens = nlohmann::json::array({added(kWordEos, "</s>", true)});
  if (newline >= 0) tokens.push_back(added(newline, "\n", false));
  nlohmann::json j = {{"version", "1.0"}, {"truncation", nullptr}, {"padding", nullptr},
                      {"added_tokens", tokens}, {"normalizer", nullptr}, {"pre_tokenizer", {{"type", "Whitespace"}}},
                      {"post_processor", nullptr}, {"decoder", nullptr},
                      {"model", {{"type", "WordLevel"}, {"vocab", v}, {"unk_token", "w0"}}}};
  return Tokenizer::from_json_text(j.dump(), "", "test word tokenizer");
}

struct WordModel {
  ModelWeights weights;
  std::unique_ptr<Backend> backend;
  DeviceModel model;
  std::unique_ptr<Engine> engine;
  Tokenizer tok;
  WordModel(const std::string& fixture, int newline)
      : weights(load_model(fixtures_dir() / fixture)), backend(make_cpu_backend()),
        model(upload_model(weights, *backend)), engine(std::make_unique<Engine>(model, *backend)),
        tok(word_tokenizer(weights.config.vocab_size, newline)) {}
};

}  // namespace moetrace::test
