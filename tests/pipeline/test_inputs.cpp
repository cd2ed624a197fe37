// Bad input to `moetrace run` gets a clear error naming what and where: config keys, CounterFact
// files and records, case-id files.
#define BOOST_TEST_MODULE pipeline_inputs
#include <boost/test/unit_test.hpp>

#include <fstream>

#include "protocols/counterfact.h"
#include "protocols/run_config.h"
#include "protocols/tokenized_case_builder.h"
#include "model/model_config.h"
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
  expect_error([] { parse_run_config(kMinimal + "[cases]\nn = -1\n", "a.toml"); }, {"[cases] n", "must lie in [0,"});
  expect_error([] { parse_run_config(kMinimal + "[cases]\nfilter = \"loose\"\n", "a.toml"); }, {"[cases] filter", "strict"});
  expect_error([] { parse_run_config(kMinimal + "[layer_sweep]\nsite = \"mlp\"\n", "a.toml"); }, {"[layer_sweep] site", "moe"});
  expect_error([] { parse_run_config(kMinimal + "[coalitions]\nsets = [\"union\", \"all\"]\n", "a.toml"); }, {"[coalitions] sets", "clean_topk"});
  expect_error([] { parse_run_config(kMinimal + "[run]\nchunk_tokens = 0\n", "a.toml"); }, {"[run] chunk_tokens", "must lie in [1,"});
  expect_error([] { parse_run_config(kMinimal + "[bogus]\nx = 1\n", "a.toml"); }, {"unknown section [bogus]"});
  expect_error([] { parse_run_config("[data]\ncounterfact = \"x\"\n", "a.toml"); }, {"[model] path is required"});
  expect_error([] { parse_run_config("[model]\npath = \"m\"\n", "a.toml"); }, {"[data] counterfact is required"});
  expect_error([] { parse_run_config("[model\npath = 1", "a.toml"); }, {"a.toml", "invalid TOML"});
  expect_error([] { parse_run_config(kMinimal + "[robustness]\ncandidate_thresholds = [64]\n", "a.toml"); }, {"candidate_thresholds", "[0, 1]"});
  expect_error([] { load_run_config("/nonexistent/run.toml"); }, {"config file", "/nonexistent/run.toml", "does not exist"});
}

BOOST_AUTO_TEST_CASE(config_integers_are_range_checked_before_narrowing_and_nan_never_passes) {
  // Each once wrapped or passed silently (issue 12).
  expect_error([] { parse_run_config(kMinimal + "[statistics]\nbootstrap = 4294967346\n", "a.toml"); }, {"[statistics] bootstrap", "4294967346"});
  expect_error([] { parse_run_config(kMinimal + "[cases]\nn = 2147483648\n", "a.toml"); }, {"[cases] n", "2147483648"});
  expect_error([] { parse_run_config(kMinimal + "[noise]\nmultiplier = nan\n", "a.toml"); }, {"[noise] multiplier", "nan"});
  expect_error([] { parse_run_config(kMinimal + "[experts]\ncandidate_threshold = nan\n", "a.toml"); }, {"[experts] candidate_threshold"});
  expect_error([] { parse_run_config(kMinimal + "[noise]\nmultiplier = inf\n", "a.toml"); }, {"[noise] multiplier"});
  expect_error([] { parse_run_config(kMinimal + "[noise]\nsamples = 1000000000\n", "a.toml"); }, {"[noise] samples", "1000"});
  expect_error([] { parse_run_config(kMinimal + "[statistics]\nsign_flips = 99999999999\n", "a.toml"); }, {"[statistics] sign_flips"});
  expect_error([] { parse_run_config(kMinimal + "[robustness]\ncandidate_thresholds = [nan]\n", "a.toml"); }, {"candidate_thresholds"});
  expect_error([] { parse_run_config(kMinimal + "[robustness]\nsplit_seeds = [1, -1]\n", "a.toml"); }, {"split_seeds"});
  expect_error([] { parse_run_config(kMinimal + "[run]\nbatch_rows = 4294967297\n", "a.toml"); }, {"[run] batch_rows"});
  // The largest documented values are accepted.
  const RunConfig c = parse_run_config(kMinimal + "[statistics]\nbootstrap = 1000000\n[noise]\nsamples = 1000\n", "a.toml");
  BOOST_TEST(c.bootstrap_resamples == 1000000);
  BOOST_TEST(c.noise_samples == 1000);
  // Long values are shortened in messages.
  try {
    parse_run_config(kMinimal + "[layer_sweep]\nsite = \"" + std::string(1 << 20, 'y') + "\"\n", "a.toml");
    BOOST_ERROR("no error");
  } catch (const InputError& e) {
    BOOST_TEST(std::string(e.what()).size() < 1000u);
  }
}

BOOST_AUTO_TEST_CASE(counterfact_errors_name_file_record_and_field) {
  const fs::path dir = test::fresh_temp_dir("cf");
  expect_error([&] { read_counterfact(dir / "missing.json"); }, {"missing.json", "does not exist"});
  expect_error([&] { read_counterfact(write(dir, "bad.json", "[{\"case_id\": 1,")); }, {"bad.json", "not valid JSON"});
  expect_error([&] { read_counterfact(write(dir, "obj.json", "{\"case_id\": 1}")); }, {"obj.json", "JSON list"});
  expect_error([&] { read_counterfact(write(dir, "nofield.json", "[{\"case_id\": 7, \"requested_rewrite\": {\"prompt\": \"{} is\", \"subject\": \"A\", \"target_true\": {\"str\": \"B\"}}}]")); },
               {"nofield.json", "record 0", "case_id 7", "target_new"});
  expect_error([&] { read_counterfact(write(dir, "noid.json", "[{\"requested_rewrite\": {}}]")); }, {"record 0", "case_id"});
  expect_error([&] { read_counterfact(write(dir, "dup.json", "[{\"case_id\": 1, \"requested_rewrite\": {\"prompt\": \"{} is\", \"subject\": \"A\", \"target_true\": {\"str\": \"B\"}, \"target_new\": {\"str\": \"C\"}}}, {\"case_id\": 1, \"requested_rewrite\": {\"prompt\": \"{} is\", \"subject\": \"A\", \"target_true\": {\"str\": \"B\"}, \"target_new\": {\"str\": \"C\"}}}]")); },
               {"record 1", "duplicate case_id"});
  // Bounded fields and ids, library exceptions as InputErrors (issue 12).
  expect_error([&] { read_counterfact(write(dir, "long.json", "[{\"case_id\": 3, \"requested_rewrite\": {\"prompt\": \"{} " + std::string(100000, 'w') + "\", \"subject\": \"A\", \"target_true\": {\"str\": \"B\"}, \"target_new\": {\"str\": \"C\"}}}]")); },
               {"long.json", "record 0", "prompt", "bytes"});
  expect_error([&] { read_counterfact(write(dir, "huge_id.json", "[{\"case_id\": 18446744073709551615}]")); }, {"huge_id.json", "case_id"});
  expect_error([&] { read_counterfact(write(dir, "e400.json", "[{\"case_id\": 1e400}]")); }, {"e400.json"});
  expect_error([&] { read_counterfact(write(dir, "dupkey.json", "[{\"case_id\": 1, \"case_id\": 2}]")); }, {"dupkey.json", "twice"});
  expect_error([&] { read_counterfact(dir); }, {"directory"});
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

BOOST_AUTO_TEST_CASE(prompts_longer_than_the_models_positions_are_skipped) {
  // The demo's tokenizer, a model whose config.json allows 12 positions: a prompt of more tokens is
  // skipped with the model's limit as the reason (never a forward past the model's positions), a
  // short one is built.
  RunConfig config;
  config.tokenizer_path = test::source_dir() / "demo" / "model";
  config.object_rule = ObjectRule::LeadingSpace;
  ModelConfig model = load_model_config(test::source_dir() / "demo" / "model" / "config.json");
  model.max_position_embeddings = 12;
  const TokenizedCaseBuilder builder(config, model);
  CounterFactRecord r = read_counterfact(test::source_dir() / "demo" / "counterfact_demo.json").at(0);
  const BuiltCase ok = builder.build(r);
  BOOST_TEST(ok.skip_reason.empty(), ok.skip_reason);
  r.prompt_template = "The official language of the official language of the official language of {} is";
  const BuiltCase skipped = builder.build(r);
  BOOST_TEST(skipped.skip_reason == "prompt longer than 12 tokens (the model's max_position_embeddings)",
             skipped.skip_reason);
}

BOOST_AUTO_TEST_CASE(the_tie_tolerance_is_range_checked_and_trace_without_rescue_is_a_boolean) {
  const RunConfig d = parse_run_config(kMinimal, "a.toml");
  BOOST_TEST(d.tie_tolerance == 1e-6);
  BOOST_TEST(!d.trace_without_rescue);
  const RunConfig c =
      parse_run_config(kMinimal + "[layer_sweep]\ntie_tolerance = 0.1\n[experts]\ntrace_without_rescue = true\n", "a.toml");
  BOOST_TEST(c.tie_tolerance == 0.1);
  BOOST_TEST(c.trace_without_rescue);
  BOOST_TEST(parse_run_config(kMinimal + "[layer_sweep]\ntie_tolerance = 0\n", "a.toml").tie_tolerance == 0.0);
  expect_error([] { parse_run_config(kMinimal + "[layer_sweep]\ntie_tolerance = 0.5\n", "a.toml"); }, {"[layer_sweep] tie_tolerance", "0.5"});
  expect_error([] { parse_run_config(kMinimal + "[layer_sweep]\ntie_tolerance = -1e-9\n", "a.toml"); }, {"[layer_sweep] tie_tolerance"});
  expect_error([] { parse_run_config(kMinimal + "[layer_sweep]\ntie_tolerance = nan\n", "a.toml"); }, {"[layer_sweep] tie_tolerance"});
  expect_error([] { parse_run_config(kMinimal + "[experts]\ntrace_without_rescue = 1\n", "a.toml"); }, {"[experts] trace_without_rescue", "true or false"});
  expect_error([] { parse_run_config(kMinimal + "[experts]\ntrace_without_rescu = true\n", "a.toml"); }, {"unknown key 'trace_without_rescu'"});
}
