// Hostile checkpoints and configs (issue 12): the safetensors data-section rules of the reference
// implementation, checked integers and floats in config.json, checked size arithmetic, NaN/Inf
// weights, and files that are not regular files. Every case is an InputError naming the file and
// the tensor or field; none loads a silently different model.
#define BOOST_TEST_MODULE model_hostile_inputs
#include <boost/test/unit_test.hpp>

#include <sys/stat.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <functional>
#include <limits>
#include <string>

#include <nlohmann/json.hpp>

#include "model/model_weights.h"
#include "support/input_error.h"
#include "support/safetensors_writer.h"
#include "support/test_paths.h"
#include "util/error.h"

namespace fs = std::filesystem;
using namespace moetrace;
using test::ModelFolder;
using test::WriteOptions;
using nlohmann::json;

namespace {

fs::path fixture(const std::string& m) { return test::fixtures_dir() / m; }

fs::path variant_dir(const std::string& name) {
  static const fs::path root = test::fresh_temp_dir("model-hostile");
  static int counter = 0;
  return root / (std::to_string(counter++) + "-" + name);
}

using test::input_error_of;

void expect_mentions(const std::string& msg, std::initializer_list<std::string> parts) {
  BOOST_TEST_MESSAGE(msg);
  for (const std::string& p : parts)
    BOOST_TEST(msg.find(p) != std::string::npos, "message '" << msg << "' should mention '" << p << "'");
}

void expect_load_error(const fs::path& dir, std::initializer_list<std::string> parts) {
  expect_mentions(input_error_of([&] { (void)load_model(dir); }), parts);
}

std::string st_file(const fs::path& dir) { return (dir / "model.safetensors").string(); }
std::string config_file(const fs::path& dir) { return (dir / "config.json").string(); }

// The data_offsets write_safetensors gives `name` (tensors are written in folder order).
std::pair<std::uint64_t, std::uint64_t> offsets_of(const ModelFolder& f, const std::string& name) {
  std::uint64_t at = 0;
  for (const auto& t : f.tensors) {
    if (t.name == name) return {at, at + t.data.size()};
    at += t.data.size();
  }
  throw std::runtime_error("no tensor " + name);
}

void write_text(const fs::path& p, const std::string& text) {
  std::ofstream out(p, std::ios::binary | std::ios::trunc);
  out << text;
}

// A copy of a fixture whose config.json text is `edit(text)`.
fs::path with_config_text(const std::string& m, const std::function<std::string(std::string)>& edit) {
  ModelFolder f = ModelFolder::read(fixture(m));
  const fs::path dir = f.write(variant_dir(m + "-text"));
  write_text(dir / "config.json", edit(f.config.dump(2)));
  return dir;
}

fs::path with_config(const std::string& m, const std::function<void(json&)>& edit) {
  ModelFolder f = ModelFolder::read(fixture(m));
  edit(f.config);
  return f.write(variant_dir(m + "-config"));
}

// Replaces the first occurrence of `from` by `to` (the test fails when there is none).
std::string replace(std::string s, const std::string& from, const std::string& to) {
  const auto at = s.find(from);
  BOOST_TEST_REQUIRE(at != std::string::npos, "'" << from << "' not found");
  return s.replace(at, from.size(), to);
}

}  // namespace

// ---------------------------------------------------------------------------------------------
BOOST_AUTO_TEST_SUITE(safetensors_data_section)

BOOST_AUTO_TEST_CASE(overlapping_data_offsets_are_refused) {
  // The embedding reading lm_head's bytes (same byte count, so the per-tensor size check passes).
  ModelFolder f = ModelFolder::read(fixture("mixtral-tiny"));
  WriteOptions o;
  o.data_offsets["model.embed_tokens.weight"] = offsets_of(f, "lm_head.weight");
  const fs::path dir = f.write(variant_dir("embed-on-lm-head"), 1, o);
  const std::string msg = input_error_of([&] { (void)load_model(dir); });
  expect_mentions(msg, {st_file(dir), "data_offsets"});
  BOOST_TEST((msg.find("overlaps") != std::string::npos || msg.find("hole") != std::string::npos), msg);

  // A pure overlap: the second tensor starts two bytes early (and leaves two bytes at the end).
  ModelFolder g = ModelFolder::read(fixture("olmoe-tiny"));
  const std::string second = g.tensors.at(1).name;
  auto [b, e] = offsets_of(g, second);
  WriteOptions p;
  p.data_offsets[second] = {b - 2, e - 2};
  const fs::path dir2 = g.write(variant_dir("overlap"), 1, p);
  expect_load_error(dir2, {st_file(dir2), "'" + second + "'", "overlaps", "'" + g.tensors.at(0).name + "'"});
}

BOOST_AUTO_TEST_CASE(a_hole_between_tensors_is_refused) {
  ModelFolder f = ModelFolder::read(fixture("olmoe-tiny"));
  const std::string last = f.tensors.back().name;
  auto [b, e] = offsets_of(f, last);
  WriteOptions o;
  o.data_offsets[last] = {b + 4, e + 4};
  o.trailing_bytes = 4;  // the file still ends where the last tensor does
  const fs::path dir = f.write(variant_dir("hole"), 1, o);
  expect_load_error(dir, {st_file(dir), "hole of 4 bytes", "'" + last + "'"});
}

BOOST_AUTO_TEST_CASE(bytes_after_the_last_tensor_are_refused) {
  ModelFolder f = ModelFolder::read(fixture("qwen3moe-tiny"));
  WriteOptions o;
  o.trailing_bytes = 8;
  const fs::path dir = f.write(variant_dir("trailing"), 1, o);
  expect_load_error(dir, {st_file(dir), "8 bytes follow the last tensor"});
}

// The length prefix lowered into the header's padding: the JSON still parses, and every tensor
// would be read 8 bytes early (finite but shifted weights, exit 0 before the fix).
BOOST_AUTO_TEST_CASE(a_header_length_lowered_into_the_padding_is_refused) {
  for (const std::string m : {"mixtral-tiny", "olmoe-tiny"}) {
    ModelFolder f = ModelFolder::read(fixture(m));
    WriteOptions o;
    o.extra_padding = 8;
    o.header_length_delta = -8;
    const fs::path dir = f.write(variant_dir("lowered"), 1, o);
    BOOST_TEST_CONTEXT(m) { expect_load_error(dir, {st_file(dir), "follow the last tensor"}); }
  }
}

BOOST_AUTO_TEST_CASE(duplicate_tensor_names_are_refused) {
  ModelFolder f = ModelFolder::read(fixture("mixtral-tiny"));
  WriteOptions o;
  o.duplicate_names = {"model.norm.weight"};
  const fs::path dir = f.write(variant_dir("duplicate"), 1, o);
  expect_load_error(dir, {st_file(dir), "model.norm.weight", "twice"});
}

BOOST_AUTO_TEST_CASE(a_header_length_over_the_format_limit_is_refused) {
  ModelFolder f = ModelFolder::read(fixture("olmoe-tiny"));
  WriteOptions o;
  o.header_length = 100'000'001;
  const fs::path dir = f.write(variant_dir("huge-header"), 1, o);
  expect_load_error(dir, {st_file(dir), "100000001", "limit"});
}

BOOST_AUTO_TEST_CASE(a_shape_whose_byte_count_overflows_is_refused) {
  // [2^62, 2] BF16 is 2^64 bytes, which wrapped to 0 and matched an empty data range.
  for (const std::vector<std::int64_t>& shape :
       {std::vector<std::int64_t>{std::int64_t{1} << 62, 2}, std::vector<std::int64_t>{std::int64_t{1} << 62, 4, 4},
        std::vector<std::int64_t>{std::numeric_limits<std::int64_t>::max(), 2}}) {
    ModelFolder f = ModelFolder::read(fixture("olmoe-tiny"));
    f.add(test::StTensor{"huge", "BF16", shape, {}});
    const fs::path dir = f.write(variant_dir("overflow"));
    BOOST_TEST_CONTEXT(shape[0] << " x ...") { expect_load_error(dir, {st_file(dir), "'huge'", "overflows"}); }
  }
  TensorView v;
  v.name = "t";
  v.file = "f.safetensors";
  v.shape = {std::int64_t{1} << 62, 2};
  expect_mentions(input_error_of([&] { (void)v.numel(); }), {"f.safetensors", "'t'", "overflows"});
}

// Found by fuzz_safetensors: converting a zero-element tensor passed null to memcpy (UBSan).
BOOST_AUTO_TEST_CASE(a_zero_element_tensor_converts_to_nothing) {
  const fs::path dir = variant_dir("empty-tensor");
  fs::create_directories(dir);
  test::write_safetensors(dir / "t.safetensors", {test::StTensor{"empty", "F32", {0, 7}, {}},
                                                  test::StTensor::from_float("one", "BF16", {}, {1.5f})});
  SafetensorsFile f(dir / "t.safetensors");
  BOOST_TEST(f.tensors().at("empty").to_float().empty());
  BOOST_TEST(f.tensors().at("one").to_float() == std::vector<float>{1.5f});
  BOOST_TEST(!first_nonfinite(f.tensors().at("empty")).has_value());
}

BOOST_AUTO_TEST_CASE(non_finite_weights_are_reported_unless_allowed) {
  struct Case {
    float value;
    std::string dtype;
  };
  for (const Case& c : {Case{std::nanf(""), "BF16"}, Case{INFINITY, "BF16"}, Case{-INFINITY, "F32"},
                        Case{std::nanf(""), "F16"}}) {
    ModelFolder f = ModelFolder::read(fixture("qwen3moe-tiny"));
    if (c.dtype != "BF16") f.convert_dtype(c.dtype);
    test::StTensor& t = f.at("model.layers.1.mlp.experts.3.down_proj.weight");
    std::vector<float> v = t.to_float();
    v[17] = c.value;
    t = test::StTensor::from_float(t.name, t.dtype, t.shape, v);
    const fs::path dir = f.write(variant_dir("nonfinite"));
    BOOST_TEST_CONTEXT(c.value << " as " << c.dtype) {
      expect_load_error(dir, {st_file(dir), "'model.layers.1.mlp.experts.3.down_proj.weight'", "non-finite",
                              "element 17"});
      LoadOptions allow;
      allow.allow_nonfinite_weights = true;
      BOOST_CHECK_NO_THROW((void)load_model(dir, allow));
    }
  }
  BOOST_CHECK_NO_THROW((void)load_model(fixture("qwen3moe-tiny")));  // the fixtures themselves are finite
}

BOOST_AUTO_TEST_SUITE_END()

// ---------------------------------------------------------------------------------------------
BOOST_AUTO_TEST_SUITE(config_numbers)

BOOST_AUTO_TEST_CASE(integers_are_range_checked_before_narrowing) {
  struct Case {
    std::string model, field;
    json value;
    std::string expected;
  };
  const std::vector<Case> cases = {
      {"mixtral-tiny", "num_local_experts", std::int64_t{4294967304}, "4294967304"},  // once became 8
      {"mixtral-tiny", "num_experts_per_tok", 1.5, "integer"},                        // once became 1
      {"mixtral-tiny", "hidden_size", 64.0, "integer"},
      {"olmoe-tiny", "num_hidden_layers", std::uint64_t{1} << 63, "integer"},
      {"olmoe-tiny", "vocab_size", std::int64_t{1} << 31, "2147483648"},
      {"qwen3moe-tiny", "head_dim", std::int64_t{1} << 32, "4294967296"},
      {"qwen3moe-tiny", "bos_token_id", std::int64_t{1} << 40, "bos_token_id"},
      {"qwen3moe-tiny", "bos_token_id", -7, "bos_token_id"},
      {"qwen3moe-tiny", "decoder_sparse_step", 1.0, "integer"},
  };
  for (const Case& c : cases) {
    const fs::path dir = with_config(c.model, [&](json& j) { j[c.field] = c.value; });
    BOOST_TEST_CONTEXT(c.model << ": " << c.field << " = " << c.value.dump()) {
      expect_load_error(dir, {config_file(dir), "'" + c.field + "'", c.expected});
    }
  }
}

BOOST_AUTO_TEST_CASE(floats_are_finite_and_in_range) {
  for (const auto& [field, value] : std::vector<std::pair<std::string, json>>{
           {"rms_norm_eps", 0.0}, {"rms_norm_eps", 2.0}, {"rms_norm_eps", -1e-6}, {"rope_theta", -10000.0},
           {"rope_theta", 1e300}, {"rope_theta", "1e4"}}) {
    const fs::path dir = with_config("olmoe-tiny", [&](json& j) { j[field] = value; });
    BOOST_TEST_CONTEXT(field << " = " << value.dump()) { expect_load_error(dir, {config_file(dir), "'" + field + "'"}); }
  }
}

BOOST_AUTO_TEST_CASE(numbers_json_cannot_hold_name_the_file) {
  for (const std::string& number : std::vector<std::string>{"1e400", "-1e400", std::string(400, '7')}) {
    const fs::path dir = with_config_text("olmoe-tiny", [&](std::string t) {
      return replace(t, "\"rms_norm_eps\": ", "\"rms_norm_eps\": " + number + ", \"was_rms_norm_eps\": ");
    });
    BOOST_TEST_CONTEXT(number.substr(0, 8)) { expect_load_error(dir, {config_file(dir)}); }
  }
}

BOOST_AUTO_TEST_CASE(deeply_nested_values_are_refused) {
  const fs::path dir = with_config_text("olmoe-tiny", [](std::string t) {
    return replace(t, "{", "{\"deep\": " + std::string(100000, '[') + std::string(100000, ']') + ",");
  });
  expect_load_error(dir, {config_file(dir), "nested deeper"});
}

BOOST_AUTO_TEST_CASE(a_duplicate_key_is_an_error) {
  const fs::path dir = with_config_text("mixtral-tiny", [](std::string t) {
    return replace(t, "{", "{\"num_local_experts\": 4,");
  });
  expect_load_error(dir, {config_file(dir), "num_local_experts", "twice"});
}

BOOST_AUTO_TEST_CASE(sizes_derived_from_the_config_are_checked) {
  // 65536 heads of 65536: q_width overflowed an int.
  const fs::path dir = with_config("qwen3moe-tiny", [](json& j) {
    j["num_attention_heads"] = 65536;
    j["num_key_value_heads"] = 65536;
    j["head_dim"] = 65536;
  });
  expect_load_error(dir, {config_file(dir), "num_attention_heads x head_dim"});
  const fs::path wide = with_config("olmoe-tiny", [](json& j) { j["intermediate_size"] = 1 << 30; });
  expect_load_error(wide, {config_file(wide), "expert width"});
  ModelConfig c;
  c.num_heads = c.num_kv_heads = c.head_dim = 65536;
  expect_mentions(input_error_of([&] { (void)c.q_width(); }), {"overflows"});
  expect_mentions(input_error_of([&] { (void)c.kv_width(); }), {"overflows"});
}

BOOST_AUTO_TEST_CASE(fields_of_the_wrong_type_are_named_not_internal_errors) {
  for (const auto& [field, value] : std::vector<std::pair<std::string, json>>{
           {"tie_word_embeddings", "yes"}, {"attention_bias", 1}, {"hidden_act", 7}, {"rope_parameters", {{"rope_type", 3}}},
           {"rope_parameters", {{"rope_theta", "big"}}}}) {
    const fs::path dir = with_config("olmoe-tiny", [&](json& j) { j[field] = value; });
    BOOST_TEST_CONTEXT(field << " = " << value.dump()) { expect_load_error(dir, {config_file(dir)}); }
  }
}

BOOST_AUTO_TEST_SUITE_END()

// ---------------------------------------------------------------------------------------------
BOOST_AUTO_TEST_SUITE(index_json)

BOOST_AUTO_TEST_CASE(index_numbers_duplicates_and_types_are_input_errors) {
  ModelFolder f = ModelFolder::read(fixture("olmoe-tiny"));
  const fs::path dir = f.write(variant_dir("index"), 3);
  const fs::path index = dir / "model.safetensors.index.json";
  std::string text;
  {
    std::ifstream in(index);
    text.assign(std::istreambuf_iterator<char>(in), {});
  }
  const std::vector<std::pair<std::string, std::string>> edits = {
      {"\"total_size\": ", "\"total_size\": 1e400, \"was\": "},
      {"\"weight_map\": {", "\"weight_map\": {\"model.norm.weight\": \"x.safetensors\","},  // a duplicate key
      {"\"weight_map\": {", "\"weight_map\": {\"extra\": 5,"},
  };
  for (const auto& [from, to] : edits) {
    write_text(index, replace(text, from, to));
    BOOST_TEST_CONTEXT(to) { expect_load_error(dir, {index.string()}); }
  }
}

BOOST_AUTO_TEST_SUITE_END()

// ---------------------------------------------------------------------------------------------
BOOST_AUTO_TEST_SUITE(not_regular_files)

BOOST_AUTO_TEST_CASE(a_fifo_config_json_does_not_block) {
  const fs::path dir = ModelFolder::read(fixture("olmoe-tiny")).write(variant_dir("fifo"));
  fs::remove(dir / "config.json");
  BOOST_TEST_REQUIRE(::mkfifo((dir / "config.json").c_str(), 0600) == 0);
  expect_load_error(dir, {config_file(dir), "FIFO"});
}

BOOST_AUTO_TEST_CASE(a_symlink_loop_for_the_weights_is_named) {
  const fs::path dir = ModelFolder::read(fixture("olmoe-tiny")).write(variant_dir("loop"));
  fs::remove(dir / "model.safetensors");
  fs::create_symlink(dir / "model.safetensors", dir / "model.safetensors");
  expect_load_error(dir, {st_file(dir), "symbolic links"});
}

BOOST_AUTO_TEST_CASE(a_directory_where_a_file_belongs_is_named) {
  const fs::path single = ModelFolder::read(fixture("olmoe-tiny")).write(variant_dir("dir-weights"));
  fs::remove(single / "model.safetensors");
  fs::create_directory(single / "model.safetensors");
  expect_load_error(single, {st_file(single), "directory"});

  const fs::path sharded = ModelFolder::read(fixture("olmoe-tiny")).write(variant_dir("dir-index"), 2);
  fs::remove(sharded / "model.safetensors.index.json");
  fs::create_directory(sharded / "model.safetensors.index.json");
  expect_load_error(sharded, {(sharded / "model.safetensors.index.json").string(), "directory"});

  const fs::path cfg = ModelFolder::read(fixture("olmoe-tiny")).write(variant_dir("dir-config"));
  fs::remove(cfg / "config.json");
  fs::create_directory(cfg / "config.json");
  expect_load_error(cfg, {config_file(cfg), "directory"});
}

BOOST_AUTO_TEST_SUITE_END()
