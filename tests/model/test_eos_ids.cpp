// End-of-sequence token ids from the model's files (ModelConfig::eos_token_ids): "eos_token_id" of
// config.json as an integer or a list of integers, range-checked against the vocabulary,
// duplicates dropped; generation_config.json next to config.json takes precedence when it has the
// key; every malformed value is an InputError naming the file and the key.
#define BOOST_TEST_MODULE model_eos_ids
#include <boost/test/unit_test.hpp>

#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "model/model_config.h"
#include "model/model_weights.h"
#include "support/input_error.h"
#include "support/test_paths.h"
#include "util/error.h"

namespace fs = std::filesystem;
using namespace moetrace;
using nlohmann::json;

namespace {

const std::vector<std::string> kModels = {"mixtral-tiny", "qwen3moe-tiny", "olmoe-tiny"};

json fixture_config(const std::string& m) {
  std::ifstream in(test::fixtures_dir() / m / "config.json");
  return json::parse(in);
}

void write_text(const fs::path& p, const std::string& text) {
  std::ofstream out(p, std::ios::binary | std::ios::trunc);
  out << text;
}

// A folder holding only config.json (the fixture's, edited) and, when `generation` is given,
// generation_config.json with that text.
fs::path config_dir(const json& config, const std::string* generation = nullptr) {
  static const fs::path root = test::fresh_temp_dir("model-eos");
  static int counter = 0;
  const fs::path dir = root / std::to_string(counter++);
  fs::create_directories(dir);
  write_text(dir / "config.json", config.dump(2));
  if (generation) write_text(dir / "generation_config.json", *generation);
  return dir;
}

json with_eos(const json& value, const std::string& m = "qwen3moe-tiny") {
  json c = fixture_config(m);
  if (value.is_discarded()) c.erase("eos_token_id");
  else c["eos_token_id"] = value;
  return c;
}

void expect_error(const fs::path& dir, const std::vector<std::string>& parts) {
  const std::string msg = test::input_error_of([&] { (void)load_model_config(dir); });
  BOOST_TEST_MESSAGE(msg);
  BOOST_TEST(!msg.empty(), "no InputError");
  for (const std::string& p : parts)
    BOOST_TEST(msg.find(p) != std::string::npos, "message '" << msg << "' should mention '" << p << "'");
}

}  // namespace

BOOST_AUTO_TEST_CASE(the_fixtures_eos_id_is_read) {
  for (const std::string& m : kModels) {
    const json c = fixture_config(m);
    BOOST_TEST_REQUIRE(c.at("eos_token_id").is_number_integer());
    const std::vector<int> want = {c.at("eos_token_id").get<int>()};
    BOOST_TEST(load_model_config(test::fixtures_dir() / m).eos_token_ids == want, m);
    BOOST_TEST(load_model_config(test::fixtures_dir() / m / "config.json").eos_token_ids == want, m);
    BOOST_TEST(load_model(test::fixtures_dir() / m).config.eos_token_ids == want, m);
  }
}

BOOST_AUTO_TEST_CASE(an_integer_a_list_or_nothing) {
  const int V = fixture_config("qwen3moe-tiny").at("vocab_size").get<int>();
  BOOST_TEST(load_model_config(config_dir(with_eos(7))).eos_token_ids == std::vector<int>{7});
  BOOST_TEST(load_model_config(config_dir(with_eos(0))).eos_token_ids == std::vector<int>{0});
  BOOST_TEST(load_model_config(config_dir(with_eos(V - 1))).eos_token_ids == std::vector<int>{V - 1});
  // A list keeps file order and drops repeats.
  BOOST_TEST(load_model_config(config_dir(with_eos({9, 3, 9, 4}))).eos_token_ids == (std::vector<int>{9, 3, 4}));
  // Absent, null or an empty list: no EOS id.
  BOOST_TEST(load_model_config(config_dir(with_eos(json(json::value_t::discarded)))).eos_token_ids.empty());
  BOOST_TEST(load_model_config(config_dir(with_eos(nullptr))).eos_token_ids.empty());
  BOOST_TEST(load_model_config(config_dir(with_eos(json::array()))).eos_token_ids.empty());
  // The same through the text parser.
  BOOST_TEST(parse_model_config(with_eos({5, 6}).dump(), "c.json").eos_token_ids == (std::vector<int>{5, 6}));
}

BOOST_AUTO_TEST_CASE(bad_values_name_the_file_and_the_key) {
  const int V = fixture_config("qwen3moe-tiny").at("vocab_size").get<int>();
  struct Case {
    json value;
    std::vector<std::string> mentions;
  };
  const std::vector<Case> cases = {
      {V, {"'eos_token_id'", std::to_string(V)}},           // one past the vocabulary
      {-1, {"'eos_token_id'", "-1"}},
      {std::int64_t{1} << 40, {"'eos_token_id'"}},          // never narrowed to an int
      {1.5, {"'eos_token_id'", "integer"}},
      {"2", {"'eos_token_id'", "integer or a list of integers"}},
      {true, {"'eos_token_id'", "integer or a list of integers"}},
      {json{{"id", 2}}, {"'eos_token_id'", "integer or a list of integers"}},
      {{1, "x"}, {"'eos_token_id[1]'", "integer"}},
      {{1, 2.0}, {"'eos_token_id[1]'", "integer"}},
      {{3, V + 5}, {"'eos_token_id[1]'", std::to_string(V + 5)}},
      {json::parse("[[1]]"), {"'eos_token_id[0]'"}},
      {json::parse("[null]"), {"'eos_token_id[0]'"}},
  };
  for (const Case& c : cases) {
    const fs::path dir = config_dir(with_eos(c.value));
    BOOST_TEST_CONTEXT("eos_token_id = " << c.value.dump()) {
      std::vector<std::string> parts = c.mentions;
      parts.push_back((dir / "config.json").string());
      expect_error(dir, parts);
    }
  }
}

BOOST_AUTO_TEST_CASE(generation_config_takes_precedence) {
  const json config = with_eos(2);
  auto eos_with = [&](const std::string& generation) {
    return load_model_config(config_dir(config, &generation)).eos_token_ids;
  };
  BOOST_TEST(eos_with(R"({"eos_token_id": [11, 2], "do_sample": false})") == (std::vector<int>{11, 2}));
  BOOST_TEST(eos_with(R"({"eos_token_id": 12})") == std::vector<int>{12});
  // Without the key (or null) the config.json ids stand.
  BOOST_TEST(eos_with(R"({"bos_token_id": 1})") == std::vector<int>{2});
  BOOST_TEST(eos_with(R"({"eos_token_id": null})") == std::vector<int>{2});
  // An empty list in generation_config.json means no EOS id.
  BOOST_TEST(eos_with(R"({"eos_token_id": []})").empty());
  // config.json without an EOS id, generation_config.json with one.
  const std::string gen = R"({"eos_token_id": 4})";
  BOOST_TEST(load_model_config(config_dir(with_eos(nullptr), &gen)).eos_token_ids == std::vector<int>{4});
  // Given config.json itself, its sibling generation_config.json is still read.
  BOOST_TEST(load_model_config(config_dir(config, &gen) / "config.json").eos_token_ids == std::vector<int>{4});
  // The text parser alone.
  BOOST_TEST(parse_generation_eos_ids(R"({"eos_token_id": [1, 1]})", 5, "g.json").value() == std::vector<int>{1});
  BOOST_TEST(!parse_generation_eos_ids(R"({"temperature": 0.6})", 5, "g.json").has_value());
}

BOOST_AUTO_TEST_CASE(a_bad_generation_config_names_the_file) {
  const int V = fixture_config("qwen3moe-tiny").at("vocab_size").get<int>();
  const json config = with_eos(2);
  struct Case {
    std::string text;
    std::vector<std::string> mentions;
  };
  const std::vector<Case> cases = {
      {R"({"eos_token_id": )" + std::to_string(V) + "}", {"'eos_token_id'", std::to_string(V)}},
      {R"({"eos_token_id": [1, -3]})", {"'eos_token_id[1]'"}},
      {R"({"eos_token_id": "</s>"})", {"'eos_token_id'"}},
      {R"([{"eos_token_id": 1}])", {"JSON object"}},
      {R"({"eos_token_id": 1)", {}},  // not JSON
      {R"({"eos_token_id": 1, "eos_token_id": 2})", {"eos_token_id", "twice"}},
      {"", {}},
  };
  for (const Case& c : cases) {
    const fs::path dir = config_dir(config, &c.text);
    BOOST_TEST_CONTEXT(c.text) {
      std::vector<std::string> parts = c.mentions;
      parts.push_back((dir / "generation_config.json").string());
      expect_error(dir, parts);
    }
  }
  // Not a regular file.
  const fs::path dir = config_dir(config);
  fs::create_directory(dir / "generation_config.json");
  expect_error(dir, {(dir / "generation_config.json").string(), "directory"});
  // The text parser names its origin.
  const std::string msg = test::input_error_of([] { (void)parse_generation_eos_ids(R"({"eos_token_id": 9})", 5, "g.json"); });
  BOOST_TEST(msg.find("g.json") != std::string::npos, msg);
}
