// Hostile tokenizer.json / tokenizer_config.json inputs (issue 12): every one is an InputError that
// names the file and the field, never a truncated number, an internal error, a huge allocation or
// a blocked read (a blocking open would hang the test until ctest's timeout).
#include <sys/stat.h>

#include <filesystem>
#include <fstream>

#include <boost/test/unit_test.hpp>

#include "support/test_paths.h"
#include "tokenizer_fixtures.h"
#include "util/error.h"

using namespace moetrace;
using namespace moetrace::test_tok;
namespace fs = std::filesystem;

namespace {

// The InputError message of f (a test failure when f does not throw one).
template <typename F>
std::string error_of(F&& f) {
  try {
    f();
  } catch (const InputError& e) {
    return e.what();
  } catch (const std::exception& e) {
    BOOST_ERROR("expected an InputError, got: " << e.what());
    return {};
  }
  BOOST_ERROR("expected an InputError, but the input was accepted");
  return {};
}

void expect_mentions(const std::string& msg, std::initializer_list<std::string> needles) {
  BOOST_TEST_MESSAGE(msg);
  for (const auto& n : needles) BOOST_TEST(msg.find(n) != std::string::npos, "'" << msg << "' lacks '" << n << "'");
}

Tokenizer from_text(const std::string& text) { return Tokenizer::from_json_text(text, "", "tok.json"); }

void write_file(const fs::path& p, const std::string& text) {
  std::ofstream out(p, std::ios::binary | std::ios::trunc);
  out << text;
}

}  // namespace

BOOST_AUTO_TEST_SUITE(hostile_inputs)

BOOST_AUTO_TEST_CASE(added_token_ids_out_of_range_are_refused_not_truncated) {
  for (const json& id : {json(std::int64_t{1} << 40), json(-7), json(std::int64_t{1} << 32), json(1.5), json("3")}) {
    json j = sentencepiece_json();
    j["added_tokens"][0]["id"] = id;
    BOOST_TEST_CONTEXT("id " << id.dump()) {
      expect_mentions(error_of([&] { make(j, "tok.json"); }), {"tok.json", "added_tokens[0].id"});
    }
  }
}

BOOST_AUTO_TEST_CASE(added_token_flags_of_the_wrong_type_name_the_field) {
  for (const char* flag : {"lstrip", "rstrip", "single_word", "normalized", "special"}) {
    json j = sentencepiece_json();
    j["added_tokens"][0][flag] = "yes";
    BOOST_TEST_CONTEXT(flag) {
      expect_mentions(error_of([&] { make(j, "tok.json"); }), {"tok.json", std::string("added_tokens[0].") + flag});
    }
  }
  json j = sentencepiece_json();
  j["added_tokens"][0]["content"] = 5;
  expect_mentions(error_of([&] { make(j, "tok.json"); }), {"tok.json", "added_tokens[0].content"});
}

// An id of 2^31-1 once allocated 2^31 strings (~64 GiB); 1e8 took 3 GB. Ids are bounded by the
// number of vocabulary entries, so these fail at once with a message naming the entry.
BOOST_AUTO_TEST_CASE(vocab_ids_far_beyond_the_vocabulary_are_refused_before_allocating) {
  for (const std::int64_t id : {std::int64_t{2147483647}, std::int64_t{100000000}, std::int64_t{-1},
                                std::int64_t{1} << 40}) {
    json j = wordlevel_json();
    j["model"]["vocab"]["far"] = id;
    BOOST_TEST_CONTEXT("id " << id) {
      expect_mentions(error_of([&] { make(j, "tok.json"); }), {"tok.json", "\"far\"", std::to_string(id)});
    }
  }
  // A vocabulary with a few holes is still accepted.
  json j = wordlevel_json();
  j["model"]["vocab"]["later"] = static_cast<std::int64_t>(j["model"]["vocab"].size()) + 100;
  BOOST_CHECK_NO_THROW(make(j));
}

BOOST_AUTO_TEST_CASE(numbers_json_cannot_hold_are_input_errors_naming_the_file) {
  const std::string base = sentencepiece_json().dump();
  for (const std::string& number : std::vector<std::string>{"1e400", "-1e400", std::string(400, '9')}) {
    // Appended as an extra top-level member, and as a vocab id.
    std::string text = base;
    text.insert(text.rfind('}'), ", \"extra\": " + number);
    BOOST_TEST_CONTEXT(number.substr(0, 10)) {
      expect_mentions(error_of([&] { from_text(text); }), {"tok.json"});
    }
  }
}

BOOST_AUTO_TEST_CASE(component_fields_of_the_wrong_type_name_the_component) {
  json strip = neox_json();
  strip["normalizer"] = {{"type", "Strip"}, {"strip_left", "yes"}, {"strip_right", true}};
  expect_mentions(error_of([&] { make(strip, "tok.json"); }), {"tok.json", "normalizer"});
  json bl = neox_json();
  bl["pre_tokenizer"] = {{"type", "ByteLevel"}, {"add_prefix_space", 1}};
  expect_mentions(error_of([&] { make(bl, "tok.json"); }), {"tok.json", "pre_tokenizer"});
  json dec = neox_json();
  dec["decoder"] = {{"type", "Strip"}, {"content", " "}, {"start", std::int64_t{1} << 40}, {"stop", 0}};
  expect_mentions(error_of([&] { make(dec, "tok.json"); }), {"tok.json", "decoder.start"});
  json bf = neox_json();
  bf["model"]["byte_fallback"] = "no";
  expect_mentions(error_of([&] { make(bf, "tok.json"); }), {"tok.json", "model"});
}

BOOST_AUTO_TEST_CASE(post_processor_special_token_ids_are_range_checked) {
  json j = neox_json();
  j["post_processor"] = {{"type", "TemplateProcessing"},
                         {"single", json::array({{{"SpecialToken", {{"id", "<s>"}, {"type_id", 0}}}},
                                                 {{"Sequence", {{"id", "A"}, {"type_id", 0}}}}})},
                         {"special_tokens", {{"<s>", {{"id", "<s>"}, {"ids", {std::int64_t{1} << 40}}, {"tokens", {"<s>"}}}}}}};
  expect_mentions(error_of([&] { make(j, "tok.json"); }), {"tok.json", "ids"});
}

// Components are built recursively (a Sequence of Sequences ...): deep nesting is refused before
// it can exhaust the stack.
BOOST_AUTO_TEST_CASE(deeply_nested_json_is_refused) {
  std::string decoder;
  for (int i = 0; i < 100000; ++i) decoder += R"({"type": "Sequence", "decoders": [)";
  decoder += R"({"type": "Fuse"})";
  for (int i = 0; i < 100000; ++i) decoder += "]}";
  std::string text = neox_json().dump();
  text.insert(text.rfind('}'), ", \"extra_decoder\": " + decoder);
  expect_mentions(error_of([&] { from_text(text); }), {"tok.json", "nested deeper"});
}

BOOST_AUTO_TEST_CASE(long_values_are_truncated_in_messages) {
  const std::string huge(100000, 'x');
  json j = wordlevel_json();
  j["model"]["vocab"][huge] = std::int64_t{1} << 40;
  const std::string msg = error_of([&] { make(j, "tok.json"); });
  expect_mentions(msg, {"tok.json", "100000 bytes"});
  BOOST_TEST(msg.size() < 1000u);
}

BOOST_AUTO_TEST_CASE(duplicate_keys_in_tokenizer_config_are_an_error) {
  const std::string cfg = R"({"clean_up_tokenization_spaces": true, "clean_up_tokenization_spaces": false})";
  expect_mentions(error_of([&] { Tokenizer::from_json_text(sentencepiece_json().dump(), cfg, "tok.json"); }),
                  {"tok.json", "clean_up_tokenization_spaces", "twice"});
}

// A FIFO named tokenizer.json must not block; a directory, a symlink loop or a device where the
// file belongs are named.
BOOST_AUTO_TEST_CASE(only_regular_files_are_read) {
  const fs::path dir = test::fresh_temp_dir("tok-hostile");
  {
    const fs::path d = dir / "fifo";
    fs::create_directories(d);
    BOOST_TEST_REQUIRE(::mkfifo((d / "tokenizer.json").c_str(), 0600) == 0);
    expect_mentions(error_of([&] { Tokenizer::from_path(d); }), {(d / "tokenizer.json").string(), "FIFO"});
  }
  {
    const fs::path d = dir / "directory";
    fs::create_directories(d / "tokenizer.json");
    expect_mentions(error_of([&] { Tokenizer::from_path(d); }), {(d / "tokenizer.json").string(), "directory"});
  }
  {
    const fs::path d = dir / "loop";
    fs::create_directories(d);
    fs::create_symlink(d / "tokenizer.json", d / "tokenizer.json");
    expect_mentions(error_of([&] { Tokenizer::from_path(d); }), {(d / "tokenizer.json").string(), "symbolic links"});
    expect_mentions(error_of([&] { Tokenizer::from_path(d / "tokenizer.json"); }), {(d / "tokenizer.json").string()});
  }
  {
    const fs::path d = dir / "config-fifo";
    fs::create_directories(d);
    write_file(d / "tokenizer.json", sentencepiece_json().dump());
    BOOST_TEST_REQUIRE(::mkfifo((d / "tokenizer_config.json").c_str(), 0600) == 0);
    expect_mentions(error_of([&] { Tokenizer::from_path(d); }), {(d / "tokenizer_config.json").string(), "FIFO"});
  }
  expect_mentions(error_of([&] { Tokenizer::from_path("/dev/zero"); }), {"/dev/zero", "character device"});
  fs::remove_all(dir);
}

BOOST_AUTO_TEST_SUITE_END()
