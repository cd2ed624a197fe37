// Unsupported features and malformed files give clear errors that name the feature or the file.
#include <fstream>

#include <boost/test/unit_test.hpp>

#include "support/test_paths.h"
#include "tokenizer_fixtures.h"
#include "util/error.h"

using namespace moetrace;
using namespace moetrace::test_tok;

namespace {
// Runs f and checks that it throws InputError whose message contains every needle.
template <typename F>
void expect_error(F&& f, std::initializer_list<std::string> needles) {
  try {
    f();
    BOOST_ERROR("no InputError thrown; expected one mentioning " << *needles.begin());
  } catch (const InputError& e) {
    const std::string msg = e.what();
    for (const auto& n : needles) BOOST_TEST(msg.find(n) != std::string::npos, "'" << msg << "' lacks '" << n << "'");
  }
}
}  // namespace

BOOST_AUTO_TEST_SUITE(errors)

BOOST_AUTO_TEST_CASE(unsupported_features_are_named) {
  auto with = [](const char* key, const json& value) {
    json j = neox_json();
    j[key] = value;
    return j;
  };
  expect_error([&] { make(with("normalizer", {{"type", "BertNormalizer"}})); }, {"unsupported", "BertNormalizer"});
  expect_error([&] { make(with("normalizer", {{"type", "Precompiled"}, {"precompiled_charsmap", "x"}})); }, {"Precompiled"});
  expect_error([&] { make(with("pre_tokenizer", {{"type", "BertPreTokenizer"}})); }, {"unsupported", "BertPreTokenizer"});
  expect_error([&] { make(with("decoder", {{"type", "WordPiece"}})); }, {"unsupported", "WordPiece"});
  expect_error([&] { make(with("post_processor", {{"type", "RobertaProcessing"}})); }, {"unsupported", "RobertaProcessing"});
  expect_error([&] { make(with("truncation", {{"max_length", 512}})); }, {"truncation"});
  expect_error([&] { make(with("padding", {{"strategy", "BatchLongest"}})); }, {"padding"});
  json unigram = neox_json();
  unigram["model"] = {{"type", "Unigram"}, {"vocab", json::array({json::array({"a", -1.0})})}};
  expect_error([&] { make(unigram); }, {"unsupported", "Unigram"});
  json wp = neox_json();
  wp["model"] = {{"type", "WordPiece"}, {"vocab", {{"a", 0}}}};
  expect_error([&] { make(wp); }, {"WordPiece"});
  json dropout = neox_json();
  dropout["model"]["dropout"] = 0.1;
  expect_error([&] { make(dropout); }, {"dropout"});
  json suffix = neox_json();
  suffix["model"]["end_of_word_suffix"] = "</w>";
  expect_error([&] { make(suffix); }, {"end_of_word_suffix"});
  json normalized = sentencepiece_json();
  normalized["added_tokens"][1]["normalized"] = true;
  expect_error([&] { make(normalized); }, {"normalized", "<s>"});
}

BOOST_AUTO_TEST_CASE(malformed_models) {
  json bad_merge = neox_json();
  bad_merge["model"]["merges"].push_back(json::array({"q", "zz-not-in-vocab"}));
  expect_error([&] { make(bad_merge, "bad.json"); }, {"bad.json", "merge", "zz-not-in-vocab"});
  json spaced = neox_json();
  spaced["model"]["merges"] = json::array({"t h e"});
  expect_error([&] { make(spaced); }, {"merge #0"});
  json no_merges = neox_json();
  no_merges["model"].erase("merges");
  expect_error([&] { make(no_merges); }, {"merges"});
  json bad_vocab = neox_json();
  bad_vocab["model"]["vocab"] = json::array({1, 2});
  expect_error([&] { make(bad_vocab); }, {"vocab"});
  json no_model = neox_json();
  no_model.erase("model");
  expect_error([&] { make(no_model); }, {"model"});
  expect_error([&] { Tokenizer::from_json_text("{\"model\": ", "", "broken.json"); }, {"broken.json", "JSON"});
  json wl = wordlevel_json();
  wl["model"].erase("unk_token");
  const Tokenizer t = make(wl);
  expect_error([&] { t.encode("dog"); }, {"dog", "vocabulary"});
}

BOOST_AUTO_TEST_CASE(files_and_inputs) {
  const auto dir = test::fresh_temp_dir("tokenizer-errors");
  expect_error([&] { Tokenizer::from_path(dir / "missing.json"); }, {"missing.json"});
  expect_error([&] { Tokenizer::from_path(dir); }, {"tokenizer.json", dir.string()});
  std::ofstream(dir / "tokenizer.json") << "{ not json";
  expect_error([&] { Tokenizer::from_path(dir); }, {"tokenizer.json", "JSON"});
  std::ofstream(dir / "tokenizer.json") << neox_json().dump();
  std::ofstream(dir / "tokenizer_config.json") << R"({"clean_up_tokenization_spaces": true})";
  const Tokenizer t = Tokenizer::from_path(dir);
  BOOST_TEST(t.decode(t.encode_ids("the cat .")) == "the cat.");  // clean-up from tokenizer_config.json
  expect_error([&] { t.encode(std::string("bad \xff utf8")); }, {"UTF-8", "byte 4"});
  expect_error([&] { t.decode({5000}); }, {"5000"});
  std::filesystem::remove_all(dir);
}

BOOST_AUTO_TEST_SUITE_END()
