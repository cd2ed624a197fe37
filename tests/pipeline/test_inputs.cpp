// Bad input to `moetrace run` gets a clear error naming what and where: config keys, CounterFact
// files and records, case-id files.
#define BOOST_TEST_MODULE pipeline_inputs
#include <boost/test/unit_test.hpp>

#include <fstream>

#include "protocols/counterfact.h"
#include "protocols/run_config.h"
#include "support/test_paths.h"
#include "util/error.h"

using namespace moetrace;
namespace fs = std::filesystem;

namespace {

// Runs f and checks it throws InputError whose message contains every fragment.
template <typename F>
void expect_error(F f, std::initializer_list<std::string> fragments) {
  try {
    f();
  } catch (const InputError& e) {
    const std::string msg = e.what();
    for (const auto& frag : fragments) BOOST_TEST(msg.find(frag) != std::string::npos, "'" << frag << "' not in: " << msg);
    return;
  }
  BOOST_ERROR("no InputError thrown");
}

const std::string kMinimal = "[model]\npath = \"m\"\n[data]\ncounterfact = \"cf.json\"\n";

fs::path write(const fs::path& dir, const std::string& name, const std::string& text) {
  std::ofstream(dir / name) << text;
  return dir / name;
}

}  // namespace

BOOST_AUTO_TEST_CASE(defaults_are_the_paper_settings_and_paths_resolve_against_the_config) {
  const RunConfig c = parse_run_config(kMinimal, "/cfg/dir/run.toml");
  BOOST_TEST(c.model_path == fs::path("/cfg/dir/m"));
  BOOST_TEST(c.tokenizer_path == c.model_path);
  BOOST_TEST(c.num_cases == 256);
  BOOST_TEST(c.noise_multiplier == 3.0);
  BOOST_TEST((c.object_rule == ObjectRule::BareThenSpace));
  BOOST_TEST((c.filter == FilterKind::Strict));
  BOOST_TEST((c.sweep_site == Site::Moe));
  BOOST_TEST((c.coalitions == std::vector<CoalitionSet>{CoalitionSet::CleanTopk, CoalitionSet::Union}));
  BOOST_TEST(c.chunk_tokens == 1024);
  BOOST_TEST(c.candidate_threshold == 0.5);
  BOOST_TEST(c.bootstrap_resamples == 5000);
  BOOST_TEST(c.sign_flips == 10000);
  BOOST_TEST(!c.add_bos);
}

BOOST_AUTO_TEST_CASE(config_errors_name_the_key) {
  expect_error([] { parse_run_config(kMinimal + "[noise]\nmultipler = 3\n", "a.toml"); }, {"a.toml", "unknown key 'multipler'", "[noise]"});
  expect_error([] { parse_run_config(kMinimal + "[noise]\nmultiplier = \"three\"\n", "a.toml"); }, {"[noise] multiplier", "must be a number"});
  expect_error([] { parse_run_config(kMinimal + "[cases]\nn = -1\n", "a.toml"); }, {"[cases] n", "at least 0"});
  expect_error([] { parse_run_config(kMinimal + "[cases]\nfilter = \"loose\"\n", "a.toml"); }, {"[cases] filter", "strict"});
  expect_error([] { parse_run_config(kMinimal + "[layer_sweep]\nsite = \"mlp\"\n", "a.toml"); }, {"[layer_sweep] site", "moe"});
  expect_error([] { parse_run_config(kMinimal + "[coalitions]\nsets = [\"union\", \"all\"]\n", "a.toml"); }, {"[coalitions] sets", "clean_topk"});
  expect_error([] { parse_run_config(kMinimal + "[run]\nchunk_tokens = 0\n", "a.toml"); }, {"[run] chunk_tokens", "at least 1"});
  expect_error([] { parse_run_config(kMinimal + "[bogus]\nx = 1\n", "a.toml"); }, {"unknown section [bogus]"});
  expect_error([] { parse_run_config("[data]\ncounterfact = \"x\"\n", "a.toml"); }, {"[model] path is required"});
  expect_error([] { parse_run_config("[model]\npath = \"m\"\n", "a.toml"); }, {"[data] counterfact is required"});
  expect_error([] { parse_run_config("[model\npath = 1", "a.toml"); }, {"a.toml", "invalid TOML"});
  expect_error([] { parse_run_config(kMinimal + "[robustness]\ncandidate_thresholds = [64]\n", "a.toml"); }, {"candidate_thresholds", "fractions"});
  expect_error([] { load_run_config("/nonexistent/run.toml"); }, {"cannot open config file", "/nonexistent/run.toml"});
}

BOOST_AUTO_TEST_CASE(counterfact_errors_name_file_record_and_field) {
  const fs::path dir = test::fresh_temp_dir("cf");
  expect_error([&] { read_counterfact(dir / "missing.json"); }, {"missing.json", "cannot open"});
  expect_error([&] { read_counterfact(write(dir, "bad.json", "[{\"case_id\": 1,")); }, {"bad.json", "malformed JSON"});
  expect_error([&] { read_counterfact(write(dir, "obj.json", "{\"case_id\": 1}")); }, {"obj.json", "JSON list"});
  expect_error([&] { read_counterfact(write(dir, "nofield.json", "[{\"case_id\": 7, \"requested_rewrite\": {\"prompt\": \"{} is\", \"subject\": \"A\", \"target_true\": {\"str\": \"B\"}}}]")); },
               {"nofield.json", "record 0", "case_id 7", "target_new"});
  expect_error([&] { read_counterfact(write(dir, "noid.json", "[{\"requested_rewrite\": {}}]")); }, {"record 0", "case_id"});
  expect_error([&] { read_counterfact(write(dir, "dup.json", "[{\"case_id\": 1, \"requested_rewrite\": {\"prompt\": \"{} is\", \"subject\": \"A\", \"target_true\": {\"str\": \"B\"}, \"target_new\": {\"str\": \"C\"}}}, {\"case_id\": 1, \"requested_rewrite\": {\"prompt\": \"{} is\", \"subject\": \"A\", \"target_true\": {\"str\": \"B\"}, \"target_new\": {\"str\": \"C\"}}}]")); },
               {"record 1", "duplicate case_id"});
  // The real schema (shared/data) parses.
  const auto records = read_counterfact(test::fixtures_dir() / ".." / "data" / "counterfact_schema_example.json");
  BOOST_TEST_REQUIRE(records.size() == 1u);
  BOOST_TEST(records[0].subject == "Danielle Darrieux");
  BOOST_TEST(records[0].true_object == "French");
  BOOST_TEST(records[0].foil_object == "English");
  BOOST_TEST(records[0].prompt_template == "The mother tongue of {} is");
  fs::remove_all(dir);
}

BOOST_AUTO_TEST_CASE(case_id_files_match_the_paper_layout) {
  const auto split = read_case_id_split(test::source_dir() / "configs" / "paper_case_ids.json", "Qwen3");
  BOOST_TEST(split.discovery.size() == 128u);
  BOOST_TEST(split.validation.size() == 128u);
  expect_error([] { read_case_id_split(test::source_dir() / "configs" / "paper_case_ids.json", "Llama"); }, {"no entry 'Llama'"});
}
