// Model loading: every kind of bad input is an InputError naming the file and the tensor or field
// (never a crash, never a silently wrong model), and every accepted layout (one file, shards with an
// index, the fused transformers-5 experts, F32 / F16 weights) gives the same model as the fixture.
#define BOOST_TEST_MODULE model_loading
#include <boost/test/unit_test.hpp>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <functional>
#include <initializer_list>
#include <map>
#include <algorithm>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "backend/backend.h"
#include "engine/device_model.h"
#include "engine/forward.h"
#include "model/model_weights.h"
#include "results/fixture_io.h"
#include "support/input_error.h"
#include "support/safetensors_writer.h"
#include "support/test_paths.h"
#include "util/error.h"
#include "util/half_precision.h"

namespace fs = std::filesystem;
using namespace moetrace;
using test::Corruption;
using test::ModelFolder;
using nlohmann::json;

namespace {

const std::vector<std::string> kModels = {"mixtral-tiny", "qwen3moe-tiny", "olmoe-tiny"};

fs::path fixture(const std::string& m) { return test::fixtures_dir() / m; }

// A fresh, empty folder for one variant of a model (removed at the end of the process).
struct TempRoot {
  fs::path dir = test::fresh_temp_dir("model-loading");
  ~TempRoot() { fs::remove_all(dir); }
};
TempRoot& temp_root() {
  static TempRoot root;
  return root;
}
fs::path variant_dir(const std::string& name) {
  static int counter = 0;
  return temp_root().dir / (std::to_string(counter++) + "-" + name);
}

// Runs f, which must throw InputError; returns its message (empty when it did not throw one).
using test::input_error_of;

// Loading `dir` fails with an InputError whose message contains every one of `parts`.
void expect_load_error(const fs::path& dir, std::initializer_list<std::string> parts) {
  const std::string msg = input_error_of([&] { (void)load_model(dir); });
  BOOST_TEST_MESSAGE("load_model(" << dir.filename().string() << "): " << msg);
  for (const std::string& p : parts)
    BOOST_TEST(msg.find(p) != std::string::npos, "message '" << msg << "' should mention '" << p << "'");
}

std::string st_file(const fs::path& dir) { return (dir / "model.safetensors").string(); }
std::string config_file(const fs::path& dir) { return (dir / "config.json").string(); }

// The first facts of a fixture, as prompts.
std::vector<Prompt> fixture_prompts(const std::string& m, int hidden, std::size_t count = 2) {
  std::vector<Prompt> out;
  for (const FixtureFact& f : read_fixture_inputs((test::fixtures_dir() / (m + ".golden.h5")).string(), hidden)) {
    if (out.size() == count) break;
    out.push_back({f.ids, f.subject_begin, f.subject_end, f.true_id, f.foil_id});
  }
  return out;
}

// Clean logits at every position of every prompt, from the model in `dir`.
std::vector<float> clean_logits(const fs::path& dir, const std::vector<Prompt>& prompts) {
  ModelWeights w = load_model(dir);
  auto backend = make_cpu_backend();
  DeviceModel model = upload_model(w, *backend);
  Engine engine(model, *backend);
  std::vector<float> all;
  for (const Prompt& p : prompts) {
    StreamSpec s;
    s.prompt = &p;
    s.readout = Readout::AllLogits;
    std::vector<StreamOutput> o = engine.run({s});
    all.insert(all.end(), o[0].logits.begin(), o[0].logits.end());
  }
  return all;
}

// Logits of the unmodified fixture, computed once per model.
const std::vector<float>& reference_logits(const std::string& m) {
  static std::map<std::string, std::vector<float>> cache;
  auto it = cache.find(m);
  if (it == cache.end()) {
    const int H = load_model_config(fixture(m)).hidden_size;
    it = cache.emplace(m, clean_logits(fixture(m), fixture_prompts(m, H))).first;
  }
  return it->second;
}

void expect_identical_logits(const std::string& m, const fs::path& dir) {
  const int H = load_model_config(fixture(m)).hidden_size;
  const std::vector<float> got = clean_logits(dir, fixture_prompts(m, H));
  const std::vector<float>& want = reference_logits(m);
  BOOST_TEST_REQUIRE(got.size() == want.size());
  std::size_t differing = 0;
  for (std::size_t i = 0; i < got.size(); ++i) differing += got[i] != want[i];
  BOOST_TEST(differing == 0u, m << ": " << differing << " of " << got.size() << " logits differ");
}

double max_abs(const std::vector<float>& v) {
  double m = 0;
  for (float x : v) m = std::max(m, std::abs(static_cast<double>(x)));
  return m;
}

// A copy of the fixture whose config.json is replaced by `edit(config)`.
fs::path with_config(const std::string& m, const std::function<void(json&)>& edit) {
  ModelFolder f = ModelFolder::read(fixture(m));
  edit(f.config);
  return f.write(variant_dir(m + "-config"));
}

json read_json(const fs::path& p) {
  std::ifstream in(p);
  return json::parse(in);
}
void write_json(const fs::path& p, const json& j) {
  std::ofstream out(p, std::ios::trunc);
  out << j.dump(2);
}

}  // namespace

// ---------------------------------------------------------------------------------------------
BOOST_AUTO_TEST_SUITE(config_parsing)

BOOST_AUTO_TEST_CASE(every_supported_model_type_parses_with_the_hub_field_names) {
  ModelConfig mx = load_model_config(fixture("mixtral-tiny"));
  BOOST_TEST(mx.model_type == "mixtral");
  BOOST_TEST((mx.arch == Architecture::Mixtral));
  BOOST_TEST(mx.num_experts == 8);  // num_local_experts
  BOOST_TEST(mx.top_k == 2);
  BOOST_TEST(mx.expert_width == 96);  // intermediate_size
  BOOST_TEST(mx.head_dim == 16);      // hidden_size / num_attention_heads
  BOOST_TEST(mx.num_kv_heads == 2);
  BOOST_TEST(mx.norm_topk_prob);
  BOOST_TEST((mx.qk_norm == QkNorm::None));
  BOOST_TEST(mx.rope_theta == 1e6);
  BOOST_TEST(mx.bos_token_id == 1);

  ModelConfig qw = load_model_config(fixture("qwen3moe-tiny") / "config.json");
  BOOST_TEST(qw.model_type == "qwen3_moe");
  BOOST_TEST((qw.arch == Architecture::Qwen3Moe));
  BOOST_TEST(qw.num_experts == 16);  // num_experts
  BOOST_TEST(qw.top_k == 4);
  BOOST_TEST(qw.expert_width == 48);  // moe_intermediate_size, not intermediate_size (128)
  BOOST_TEST(qw.head_dim == 32);      // explicit head_dim: heads x head_dim != hidden
  BOOST_TEST(qw.q_width() == 128);
  BOOST_TEST(qw.norm_topk_prob);
  BOOST_TEST((qw.qk_norm == QkNorm::PerHead));
  BOOST_TEST(qw.rms_norm_eps == 1e-6);

  ModelConfig ol = load_model_config(fixture("olmoe-tiny"));
  BOOST_TEST(ol.model_type == "olmoe");
  BOOST_TEST((ol.arch == Architecture::Olmoe));
  BOOST_TEST(ol.num_experts == 16);
  BOOST_TEST(ol.top_k == 4);
  BOOST_TEST(ol.expert_width == 40);
  BOOST_TEST(ol.num_kv_heads == 4);
  BOOST_TEST(!ol.norm_topk_prob);
  BOOST_TEST((ol.qk_norm == QkNorm::WholeProjection));
  BOOST_TEST(ol.rope_theta == 1e4);
}

BOOST_AUTO_TEST_CASE(a_missing_required_field_is_named_with_the_config_file) {
  const std::map<std::string, std::vector<std::string>> required = {
      {"mixtral-tiny", {"num_local_experts", "intermediate_size"}},
      {"qwen3moe-tiny", {"num_experts", "moe_intermediate_size"}},
      {"olmoe-tiny", {"num_experts", "intermediate_size"}},
  };
  const std::vector<std::string> common = {"vocab_size",          "hidden_size", "num_hidden_layers",
                                           "num_attention_heads", "num_experts_per_tok", "rms_norm_eps",
                                           "model_type"};
  for (const auto& [m, own] : required) {
    std::vector<std::string> fields = own;
    fields.insert(fields.end(), common.begin(), common.end());
    for (const std::string& field : fields) {
      const fs::path dir = with_config(m, [&](json& c) { c.erase(field); });
      BOOST_TEST_CONTEXT(m << " without " << field) {
        expect_load_error(dir, {config_file(dir), "'" + field + "'", "missing"});
      }
    }
  }
}

BOOST_AUTO_TEST_CASE(a_null_required_field_counts_as_missing) {
  const fs::path dir = with_config("olmoe-tiny", [](json& c) { c["num_experts"] = nullptr; });
  expect_load_error(dir, {config_file(dir), "'num_experts'"});
}

BOOST_AUTO_TEST_CASE(a_field_of_the_wrong_type_is_named) {
  struct Case {
    std::string model, field;
    json value;
  };
  const std::vector<Case> cases = {
      {"mixtral-tiny", "hidden_size", "64"},
      {"mixtral-tiny", "num_local_experts", "8"},
      {"qwen3moe-tiny", "num_experts", json::array({16})},
      {"qwen3moe-tiny", "norm_topk_prob", "true"},
      {"olmoe-tiny", "rms_norm_eps", "1e-5"},
      {"olmoe-tiny", "num_key_value_heads", true},
      {"olmoe-tiny", "tie_word_embeddings", 0},
  };
  for (const Case& c : cases) {
    const fs::path dir = with_config(c.model, [&](json& j) { j[c.field] = c.value; });
    BOOST_TEST_CONTEXT(c.model << " with " << c.field << " = " << c.value.dump()) {
      expect_load_error(dir, {config_file(dir), "'" + c.field + "'", "must be"});
    }
  }
}

BOOST_AUTO_TEST_CASE(an_unsupported_model_type_is_named) {
  for (const std::string t : {"deepseek_v3", "qwen2_moe", "llama", ""}) {
    const fs::path dir = with_config("mixtral-tiny", [&](json& c) { c["model_type"] = t; });
    expect_load_error(dir, {config_file(dir), "unsupported model_type '" + t + "'"});
  }
  const fs::path dir = with_config("mixtral-tiny", [&](json& c) { c["model_type"] = 7; });
  expect_load_error(dir, {config_file(dir), "model_type"});
}

BOOST_AUTO_TEST_CASE(unsupported_variants_and_inconsistent_values_are_named) {
  struct Case {
    std::string model;
    std::function<void(json&)> edit;
    std::string expected;
  };
  const std::vector<Case> cases = {
      {"qwen3moe-tiny", [](json& c) { c["decoder_sparse_step"] = 2; }, "decoder_sparse_step"},
      {"qwen3moe-tiny", [](json& c) { c["mlp_only_layers"] = {1}; }, "mlp_only_layers"},
      {"olmoe-tiny", [](json& c) { c["clip_qkv"] = 8.0; }, "clip_qkv"},
      {"mixtral-tiny", [](json& c) { c["rope_scaling"] = {{"type", "linear"}, {"factor", 2.0}}; }, "rope_scaling"},
      {"mixtral-tiny", [](json& c) { c["hidden_act"] = "gelu"; }, "hidden_act"},
      {"mixtral-tiny", [](json& c) { c["attention_bias"] = true; }, "attention_bias"},
      {"mixtral-tiny", [](json& c) { c["num_experts_per_tok"] = 9; }, "num_experts_per_tok"},
      {"mixtral-tiny", [](json& c) { c["num_key_value_heads"] = 3; }, "num_key_value_heads"},
      {"mixtral-tiny", [](json& c) { c["hidden_size"] = 0; }, "hidden_size"},
      {"mixtral-tiny", [](json& c) { c["num_attention_heads"] = 0; }, "num_attention_heads"},
      {"olmoe-tiny", [](json& c) { c["num_experts"] = -4; }, "num_experts"},
      {"qwen3moe-tiny", [](json& c) { c["head_dim"] = 31; }, "head_dim"},
  };
  for (const Case& c : cases) {
    const fs::path dir = with_config(c.model, c.edit);
    BOOST_TEST_CONTEXT(c.model << ": " << c.expected) { expect_load_error(dir, {config_file(dir), c.expected}); }
  }
}

// A zero `moe_intermediate_size` of a Qwen3-MoE config must not be reported as 'intermediate_size'
// (a different field, present and valid there), nor `num_local_experts` of Mixtral as 'num_experts'.
BOOST_AUTO_TEST_CASE(a_non_positive_architecture_specific_field_is_named_as_spelled_in_the_file) {
  const fs::path qw = with_config("qwen3moe-tiny", [](json& c) { c["moe_intermediate_size"] = 0; });
  expect_load_error(qw, {config_file(qw), "'moe_intermediate_size'"});
  const fs::path mx = with_config("mixtral-tiny", [](json& c) { c["num_local_experts"] = 0; });
  expect_load_error(mx, {config_file(mx), "'num_local_experts'"});
}

// A model_type that is present but not a string is a type error, not a missing field.
BOOST_AUTO_TEST_CASE(a_model_type_of_the_wrong_type_is_not_called_missing) {
  const fs::path dir = with_config("mixtral-tiny", [&](json& c) { c["model_type"] = 7; });
  const std::string msg = input_error_of([&] { (void)load_model(dir); });
  BOOST_TEST(msg.find("missing") == std::string::npos, msg);
}

BOOST_AUTO_TEST_CASE(a_non_positive_architecture_specific_field_is_an_error) {
  for (const auto& [m, field] : std::vector<std::pair<std::string, std::string>>{
           {"qwen3moe-tiny", "moe_intermediate_size"}, {"mixtral-tiny", "num_local_experts"},
           {"olmoe-tiny", "intermediate_size"}}) {
    const fs::path dir = with_config(m, [&](json& c) { c[field] = 0; });
    expect_load_error(dir, {config_file(dir), "must be positive"});
  }
}

BOOST_AUTO_TEST_CASE(a_missing_or_malformed_config_file_is_named) {
  const fs::path dir = with_config("mixtral-tiny", [](json&) {});
  {
    std::ofstream out(dir / "config.json", std::ios::trunc);
    out << "{\"model_type\": \"mixtral\", ";  // cut off
  }
  expect_load_error(dir, {config_file(dir), "JSON"});
  write_json(dir / "config.json", json::array({1, 2}));
  expect_load_error(dir, {config_file(dir), "object"});
  fs::remove(dir / "config.json");
  expect_load_error(dir, {config_file(dir)});
  expect_load_error(variant_dir("does-not-exist"), {"does-not-exist"});
}

BOOST_AUTO_TEST_SUITE_END()

// ---------------------------------------------------------------------------------------------
BOOST_AUTO_TEST_SUITE(safetensors_errors)

BOOST_AUTO_TEST_CASE(an_unknown_dtype_names_the_file_the_tensor_and_the_dtype) {
  for (const std::string dtype : {"F64", "I8", "F8_E4M3", "bf16"}) {
    ModelFolder f = ModelFolder::read(fixture("qwen3moe-tiny"));
    f.at("model.layers.1.self_attn.k_norm.weight").dtype = dtype;
    const fs::path dir = f.write(variant_dir("dtype"));
    expect_load_error(dir, {st_file(dir), "'model.layers.1.self_attn.k_norm.weight'", "dtype " + dtype});
  }
}

BOOST_AUTO_TEST_CASE(a_corrupt_or_truncated_header_names_the_file) {
  struct Case {
    Corruption corruption;
    std::vector<std::string> expected;
  };
  const std::vector<Case> cases = {
      {Corruption::TinyFile, {"truncated"}},
      {Corruption::HeaderLengthTooLarge, {"corrupt safetensors header", "header length"}},
      {Corruption::HeaderNotJson, {"corrupt safetensors header", "JSON"}},
      {Corruption::HeaderNotObject, {"corrupt safetensors header", "object"}},
      {Corruption::TruncatedData, {"truncated", "'model.norm.weight'"}},
      {Corruption::WrongOffsets, {"'lm_head.weight'", "data_offsets"}},
      {Corruption::MissingDataOffsets, {"'lm_head.weight'", "data_offsets"}},
  };
  for (const Case& c : cases) {
    ModelFolder f = ModelFolder::read(fixture("mixtral-tiny"));
    // Known first and last tensors, so that messages can be checked for their names.
    std::stable_partition(f.tensors.begin(), f.tensors.end(),
                          [](const test::StTensor& t) { return t.name == "lm_head.weight"; });
    std::stable_partition(f.tensors.begin(), f.tensors.end(),
                          [](const test::StTensor& t) { return t.name != "model.norm.weight"; });
    const fs::path dir = f.write(variant_dir("corrupt"), 1, {c.corruption});
    BOOST_TEST_CONTEXT("corruption " << static_cast<int>(c.corruption)) {
      const std::string msg = input_error_of([&] { (void)load_model(dir); });
      BOOST_TEST_MESSAGE(msg);
      BOOST_TEST(msg.find(st_file(dir)) != std::string::npos, msg);
      for (const std::string& e : c.expected) BOOST_TEST(msg.find(e) != std::string::npos, msg << " lacks " << e);
    }
  }
}

BOOST_AUTO_TEST_CASE(a_file_truncated_at_any_length_is_an_error_not_a_crash) {
  ModelFolder f = ModelFolder::read(fixture("olmoe-tiny"));
  const fs::path dir = f.write(variant_dir("cut"));
  const auto full = fs::file_size(dir / "model.safetensors");
  for (std::uintmax_t size : {std::uintmax_t{0}, std::uintmax_t{7}, std::uintmax_t{8}, std::uintmax_t{100},
                              full / 3, full - 1}) {
    f.write(dir);
    fs::resize_file(dir / "model.safetensors", size);
    BOOST_TEST_CONTEXT("truncated to " << size << " bytes") { expect_load_error(dir, {st_file(dir)}); }
  }
}

BOOST_AUTO_TEST_CASE(a_malformed_shape_names_the_tensor) {
  const fs::path dir = ModelFolder::read(fixture("olmoe-tiny")).write(variant_dir("shape"));
  // Edit the header in place (same length): a negative dimension.
  std::string bytes;
  {
    std::ifstream in(dir / "model.safetensors", std::ios::binary);
    bytes.assign(std::istreambuf_iterator<char>(in), {});
  }
  const auto key = bytes.find("\"model.norm.weight\":{");
  BOOST_TEST_REQUIRE(key != std::string::npos);
  const auto shape_at = bytes.find("\"shape\":[64]", key);
  BOOST_TEST_REQUIRE(shape_at != std::string::npos);
  bytes.replace(shape_at, 12, "\"shape\":[-1]");
  {
    std::ofstream out(dir / "model.safetensors", std::ios::binary | std::ios::trunc);
    out << bytes;
  }
  expect_load_error(dir, {st_file(dir), "'model.norm.weight'", "shape"});
}

BOOST_AUTO_TEST_SUITE_END()

// ---------------------------------------------------------------------------------------------
BOOST_AUTO_TEST_SUITE(tensor_resolution_errors)

BOOST_AUTO_TEST_CASE(a_missing_tensor_is_named_with_the_model_folder) {
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"mixtral-tiny", "model.layers.2.block_sparse_moe.experts.5.w2.weight"},
      {"mixtral-tiny", "lm_head.weight"},
      {"mixtral-tiny", "model.layers.3.block_sparse_moe.gate.weight"},
      {"qwen3moe-tiny", "model.layers.3.self_attn.q_norm.weight"},
      {"qwen3moe-tiny", "model.layers.0.mlp.experts.15.up_proj.weight"},
      {"olmoe-tiny", "model.layers.1.self_attn.k_norm.weight"},
      {"olmoe-tiny", "model.norm.weight"},
      {"olmoe-tiny", "model.embed_tokens.weight"},
  };
  for (const auto& [m, name] : cases) {
    ModelFolder f = ModelFolder::read(fixture(m));
    f.drop(name);
    const fs::path dir = f.write(variant_dir("missing"));
    BOOST_TEST_CONTEXT(m << " without " << name) {
      expect_load_error(dir, {dir.string(), "missing tensor '" + name + "'"});
    }
  }
}

// The MoE block's name of a Mixtral checkpoint (`block_sparse_moe` on the hub, `mlp` in
// transformers 5) is decided from every tensor name. When layer 0's router is the tensor that is
// missing, the message must still name the tensor as the checkpoint spells it.
BOOST_AUTO_TEST_CASE(a_missing_layer0_router_of_a_hub_mixtral_is_named_as_the_hub_spells_it) {
  ModelFolder f = ModelFolder::read(fixture("mixtral-tiny"));
  f.drop("model.layers.0.block_sparse_moe.gate.weight");
  const fs::path dir = f.write(variant_dir("missing-router"));
  expect_load_error(dir, {dir.string(), "'model.layers.0.block_sparse_moe.gate.weight'"});
}

BOOST_AUTO_TEST_CASE(a_missing_layer0_router_is_an_error) {
  ModelFolder f = ModelFolder::read(fixture("mixtral-tiny"));
  f.drop("model.layers.0.block_sparse_moe.gate.weight");
  const fs::path dir = f.write(variant_dir("missing-router"));
  expect_load_error(dir, {dir.string(), "missing tensor", "model.layers.0."});
}

BOOST_AUTO_TEST_CASE(an_extra_tensor_names_the_file_and_the_tensor) {
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"mixtral-tiny", "model.layers.0.block_sparse_moe.experts.8.w1.weight"},  // a ninth expert
      {"qwen3moe-tiny", "model.layers.4.input_layernorm.weight"},               // a fifth layer
      {"olmoe-tiny", "model.layers.0.self_attn.q_proj.bias"},
      {"olmoe-tiny", "model.rotary_emb.inv_freq"},
  };
  for (const auto& [m, name] : cases) {
    ModelFolder f = ModelFolder::read(fixture(m));
    f.add(test::StTensor::from_float(name, "BF16", {64}, std::vector<float>(64, 0.5f)));
    const fs::path dir = f.write(variant_dir("extra"));
    BOOST_TEST_CONTEXT(m << " with " << name) {
      expect_load_error(dir, {st_file(dir), "unexpected tensor '" + name + "'"});
    }
  }
}

BOOST_AUTO_TEST_CASE(a_wrong_shape_names_the_file_the_tensor_and_both_shapes) {
  struct Case {
    std::string model, name;
    std::vector<std::int64_t> shape;
    std::string got, expected;
  };
  const std::vector<Case> cases = {
      {"mixtral-tiny", "model.layers.1.self_attn.q_proj.weight", {32, 128}, "[32, 128]", "[64, 64]"},
      {"mixtral-tiny", "model.layers.3.block_sparse_moe.experts.7.w2.weight", {96, 64}, "[96, 64]", "[64, 96]"},
      {"qwen3moe-tiny", "model.layers.0.self_attn.o_proj.weight", {128, 64}, "[128, 64]", "[64, 128]"},
      {"qwen3moe-tiny", "model.layers.2.mlp.gate.weight", {64, 16}, "[64, 16]", "[16, 64]"},
      {"olmoe-tiny", "model.embed_tokens.weight", {64, 500}, "[64, 500]", "[500, 64]"},
      {"olmoe-tiny", "model.norm.weight", {1, 64}, "[1, 64]", "[64]"},
      {"olmoe-tiny", "model.layers.0.self_attn.q_norm.weight", {4, 16}, "[4, 16]", "[64]"},
  };
  for (const Case& c : cases) {
    ModelFolder f = ModelFolder::read(fixture(c.model));
    f.reshape(c.name, c.shape);
    const fs::path dir = f.write(variant_dir("shape"));
    BOOST_TEST_CONTEXT(c.model << ": " << c.name) {
      expect_load_error(dir, {st_file(dir), "'" + c.name + "'", c.got, c.expected});
    }
  }
}

BOOST_AUTO_TEST_CASE(a_config_that_disagrees_with_the_tensors_is_an_error) {
  // Fewer experts in config.json than in the file: the router's shape no longer fits.
  expect_load_error(with_config("qwen3moe-tiny", [](json& c) { c["num_experts"] = 8; }),
                    {"'model.layers.0.mlp.gate.weight'", "[16, 64]", "[8, 64]"});
  // Fewer layers: layer 3's tensors are left over.
  expect_load_error(with_config("olmoe-tiny", [](json& c) { c["num_hidden_layers"] = 3; }),
                    {"unexpected tensor 'model.layers.3."});
  // More layers: layer 4 is missing.
  expect_load_error(with_config("olmoe-tiny", [](json& c) { c["num_hidden_layers"] = 5; }),
                    {"missing tensor 'model.layers.4."});
  // A different architecture: OLMoE's whole-projection q_norm is [64], Qwen3's per-head one [16].
  expect_load_error(with_config("olmoe-tiny", [](json& c) { c["model_type"] = "qwen3_moe"; c["moe_intermediate_size"] = 40; }),
                    {"'model.layers.0.self_attn.q_norm.weight'", "[64]", "[16]"});
  // Mixtral without q/k norms: OLMoE's norms are extra tensors.
  expect_load_error(with_config("olmoe-tiny", [](json& c) { c["model_type"] = "mixtral"; c["num_local_experts"] = 16; }),
                    {"unexpected tensor", "norm.weight'"});
  // Tied embeddings but the file still has lm_head.weight is fine; untied without it is not.
  ModelFolder f = ModelFolder::read(fixture("mixtral-tiny"));
  f.drop("lm_head.weight");
  expect_load_error(f.write(variant_dir("untied")), {"missing tensor 'lm_head.weight'"});
}

BOOST_AUTO_TEST_CASE(fused_layout_errors_name_the_fused_tensor) {
  {
    ModelFolder f = ModelFolder::read(fixture("qwen3moe-tiny"));
    f.fuse_experts();
    f.reshape("model.layers.2.mlp.experts.gate_up_proj", {16, 48, 128});  // [E, I, 2H]: the transposed layout
    const fs::path dir = f.write(variant_dir("fused-shape"));
    expect_load_error(dir, {st_file(dir), "'model.layers.2.mlp.experts.gate_up_proj'", "[16, 48, 128]", "[16, 96, 64]"});
  }
  {
    ModelFolder f = ModelFolder::read(fixture("olmoe-tiny"));
    f.fuse_experts();
    f.reshape("model.layers.0.mlp.experts.down_proj", {16, 40, 64});  // [E, I, H] instead of [E, H, I]
    const fs::path dir = f.write(variant_dir("fused-down"));
    expect_load_error(dir, {st_file(dir), "'model.layers.0.mlp.experts.down_proj'", "[16, 40, 64]", "[16, 64, 40]"});
  }
  {
    ModelFolder f = ModelFolder::read(fixture("mixtral-tiny"));
    f.fuse_experts();
    f.drop("model.layers.3.mlp.experts.down_proj");
    const fs::path dir = f.write(variant_dir("fused-missing"));
    expect_load_error(dir, {dir.string(), "missing tensor 'model.layers.3.mlp.experts.down_proj'"});
  }
  {
    // Half fused: layer 1 keeps its per-expert tensors.
    ModelFolder f = ModelFolder::read(fixture("qwen3moe-tiny"));
    ModelFolder fused = f;
    fused.fuse_experts();
    for (const test::StTensor& t : f.tensors)
      if (t.name.rfind("model.layers.1.mlp.experts.", 0) == 0) fused.add(t);
    fused.drop("model.layers.1.mlp.experts.gate_up_proj");
    const fs::path dir = fused.write(variant_dir("half-fused"));
    expect_load_error(dir, {"model.layers.1.mlp.experts.gate_up_proj"});
  }
}

BOOST_AUTO_TEST_SUITE_END()

// ---------------------------------------------------------------------------------------------
BOOST_AUTO_TEST_SUITE(sharded_checkpoints)

BOOST_AUTO_TEST_CASE(three_shards_give_bit_identical_logits) {
  for (const std::string& m : kModels) {
    const fs::path dir = ModelFolder::read(fixture(m)).write(variant_dir(m + "-sharded"), 3);
    BOOST_TEST(!fs::exists(dir / "model.safetensors"));
    Checkpoint ckpt(dir);
    BOOST_TEST(ckpt.files().size() == 3u);
    BOOST_TEST(ckpt.tensors().size() == Checkpoint(fixture(m)).tensors().size());
    expect_identical_logits(m, dir);
  }
}

BOOST_AUTO_TEST_CASE(the_index_wins_over_a_stale_single_file) {
  // Both present: the index is authoritative (a corrupt model.safetensors beside it is ignored).
  const fs::path dir = ModelFolder::read(fixture("olmoe-tiny")).write(variant_dir("both"), 2);
  test::write_safetensors(dir / "model.safetensors", {}, {Corruption::HeaderNotJson});
  expect_identical_logits("olmoe-tiny", dir);
}

BOOST_AUTO_TEST_CASE(a_missing_shard_names_the_index_and_the_shard) {
  const fs::path dir = ModelFolder::read(fixture("mixtral-tiny")).write(variant_dir("no-shard"), 3);
  fs::remove(dir / ModelFolder::shard_name(1, 3));
  expect_load_error(dir, {(dir / "model.safetensors.index.json").string(), ModelFolder::shard_name(1, 3), "missing"});
}

BOOST_AUTO_TEST_CASE(a_tensor_listed_in_the_wrong_shard_is_named) {
  const fs::path dir = ModelFolder::read(fixture("mixtral-tiny")).write(variant_dir("wrong-shard"), 3);
  const fs::path index = dir / "model.safetensors.index.json";
  json j = read_json(index);
  const std::string name = "lm_head.weight";  // first tensor: in shard 1
  BOOST_TEST_REQUIRE(j["weight_map"][name] == ModelFolder::shard_name(0, 3));
  j["weight_map"][name] = ModelFolder::shard_name(2, 3);
  write_json(index, j);
  expect_load_error(dir, {(dir / ModelFolder::shard_name(0, 3)).string(), "'" + name + "'",
                          ModelFolder::shard_name(2, 3)});
}

BOOST_AUTO_TEST_CASE(a_tensor_in_a_shard_but_not_in_the_index_is_named) {
  const fs::path dir = ModelFolder::read(fixture("qwen3moe-tiny")).write(variant_dir("unlisted"), 3);
  const fs::path index = dir / "model.safetensors.index.json";
  json j = read_json(index);
  const std::string name = "model.norm.weight";
  const std::string shard = j["weight_map"][name];
  j["weight_map"].erase(name);
  write_json(index, j);
  expect_load_error(dir, {(dir / shard).string(), "'" + name + "'", "not listed", index.string()});
}

BOOST_AUTO_TEST_CASE(a_tensor_in_the_index_but_in_no_shard_is_named) {
  const fs::path dir = ModelFolder::read(fixture("olmoe-tiny")).write(variant_dir("phantom"), 2);
  const fs::path index = dir / "model.safetensors.index.json";
  json j = read_json(index);
  j["weight_map"]["model.layers.0.mlp.experts.99.up_proj.weight"] = ModelFolder::shard_name(1, 2);
  write_json(index, j);
  expect_load_error(dir, {index.string(), "'model.layers.0.mlp.experts.99.up_proj.weight'",
                          ModelFolder::shard_name(1, 2)});
}

BOOST_AUTO_TEST_CASE(a_tensor_dropped_from_a_shard_and_the_index_is_a_missing_tensor) {
  ModelFolder f = ModelFolder::read(fixture("olmoe-tiny"));
  f.drop("model.layers.2.mlp.experts.3.down_proj.weight");
  const fs::path dir = f.write(variant_dir("sharded-missing"), 3);
  expect_load_error(dir, {dir.string(), "missing tensor 'model.layers.2.mlp.experts.3.down_proj.weight'"});
}

BOOST_AUTO_TEST_CASE(a_malformed_index_is_named) {
  const fs::path dir = ModelFolder::read(fixture("olmoe-tiny")).write(variant_dir("bad-index"), 2);
  const fs::path index = dir / "model.safetensors.index.json";
  const json good = read_json(index);
  {
    std::ofstream out(index, std::ios::trunc);
    out << "{\"weight_map\": {";
  }
  expect_load_error(dir, {index.string(), "JSON"});
  write_json(index, json{{"metadata", {}}});
  expect_load_error(dir, {index.string(), "weight_map"});
  json j = good;
  j["weight_map"]["model.norm.weight"] = 3;
  write_json(index, j);
  expect_load_error(dir, {index.string(), "'model.norm.weight'"});
  j = good;
  j["weight_map"]["model.norm.weight"] = "../" + ModelFolder::shard_name(0, 2);
  write_json(index, j);
  expect_load_error(dir, {index.string(), "../" + ModelFolder::shard_name(0, 2)});
}

BOOST_AUTO_TEST_CASE(a_corrupt_shard_names_the_shard) {
  const fs::path dir = ModelFolder::read(fixture("qwen3moe-tiny")).write(variant_dir("corrupt-shard"), 3);
  fs::resize_file(dir / ModelFolder::shard_name(2, 3), fs::file_size(dir / ModelFolder::shard_name(2, 3)) - 10);
  expect_load_error(dir, {(dir / ModelFolder::shard_name(2, 3)).string(), "truncated"});
}

BOOST_AUTO_TEST_CASE(no_weights_at_all_is_named) {
  const fs::path dir = variant_dir("empty");
  fs::create_directories(dir);
  fs::copy_file(fixture("mixtral-tiny") / "config.json", dir / "config.json");
  expect_load_error(dir, {dir.string(), "model.safetensors"});
}

BOOST_AUTO_TEST_SUITE_END()

// ---------------------------------------------------------------------------------------------
BOOST_AUTO_TEST_SUITE(layouts_and_dtypes)

BOOST_AUTO_TEST_CASE(the_fused_transformers5_layout_gives_bit_identical_logits) {
  for (const std::string& m : kModels) {
    ModelFolder f = ModelFolder::read(fixture(m));
    f.fuse_experts();
    BOOST_TEST(f.find("model.layers.0.mlp.experts.gate_up_proj") != nullptr);
    BOOST_TEST(f.find("model.layers.0.mlp.gate.weight") != nullptr);
    const fs::path dir = f.write(variant_dir(m + "-fused"));
    ModelWeights fused = load_model(dir);
    ModelWeights plain = load_model(fixture(m));
    BOOST_TEST((fused.expert_layout == ExpertLayout::Fused));
    BOOST_TEST((plain.expert_layout == ExpertLayout::PerExpert));
    // Every expert's matrices are the same values as in the per-expert file.
    for (int l = 0; l < plain.config.num_layers; ++l)
      for (int e = 0; e < plain.config.num_experts; ++e) {
        const ExpertWeights &a = plain.layers[l].experts[e], &b = fused.layers[l].experts[e];
        BOOST_TEST((a.gate.shape == b.gate.shape && a.up.shape == b.up.shape && a.down.shape == b.down.shape));
        BOOST_TEST((a.gate.to_float() == b.gate.to_float()), m << " layer " << l << " expert " << e << " gate");
        BOOST_TEST((a.up.to_float() == b.up.to_float()), m << " layer " << l << " expert " << e << " up");
        BOOST_TEST((a.down.to_float() == b.down.to_float()), m << " layer " << l << " expert " << e << " down");
      }
    expect_identical_logits(m, dir);
  }
}

BOOST_AUTO_TEST_CASE(the_fused_layout_may_also_be_sharded) {
  ModelFolder f = ModelFolder::read(fixture("mixtral-tiny"));
  f.fuse_experts();
  expect_identical_logits("mixtral-tiny", f.write(variant_dir("fused-sharded"), 4));
}

BOOST_AUTO_TEST_CASE(f32_weights_give_bit_identical_logits) {
  for (const std::string& m : kModels) {
    ModelFolder f = ModelFolder::read(fixture(m));
    f.convert_dtype("F32");  // bf16 -> f32 is exact
    const fs::path dir = f.write(variant_dir(m + "-f32"));
    BOOST_TEST((load_model(dir).embed.dtype == DType::F32));
    expect_identical_logits(m, dir);
  }
}

BOOST_AUTO_TEST_CASE(mixed_dtypes_load) {
  ModelFolder f = ModelFolder::read(fixture("qwen3moe-tiny"));
  for (test::StTensor& t : f.tensors)
    if (t.name.find("self_attn") != std::string::npos) t = test::StTensor::from_float(t.name, "F32", t.shape, t.to_float());
  expect_identical_logits("qwen3moe-tiny", f.write(variant_dir("mixed")));
}

BOOST_AUTO_TEST_CASE(f16_weights_give_close_logits) {
  for (const std::string& m : kModels) {
    ModelFolder f = ModelFolder::read(fixture(m));
    f.convert_dtype("F16");
    const fs::path dir = f.write(variant_dir(m + "-f16"));
    BOOST_TEST((load_model(dir).embed.dtype == DType::F16));
    const int H = load_model_config(fixture(m)).hidden_size;
    const std::vector<float> got = clean_logits(dir, fixture_prompts(m, H));
    const std::vector<float>& want = reference_logits(m);
    BOOST_TEST_REQUIRE(got.size() == want.size());
    double worst = 0;
    for (std::size_t i = 0; i < got.size(); ++i) worst = std::max(worst, std::abs(static_cast<double>(got[i]) - want[i]));
    BOOST_TEST_MESSAGE(m << " F16: max |logit diff| = " << worst << " (max |logit| " << max_abs(want) << ")");
    // bf16 values inside f16's normal range convert exactly; only tiny weights lose bits.
    BOOST_TEST(worst <= 1e-3 * max_abs(want));
  }
}

BOOST_AUTO_TEST_CASE(f16_conversion_helper_rounds_to_nearest_even) {
  BOOST_TEST(test::float_to_f16(1.0f) == 0x3c00);
  BOOST_TEST(test::float_to_f16(-2.0f) == 0xc000);
  BOOST_TEST(test::float_to_f16(65504.0f) == 0x7bff);
  BOOST_TEST(test::float_to_f16(65520.0f) == 0x7c00);
  BOOST_TEST(test::float_to_f16(std::ldexp(1.0f, -24)) == 0x0001);
  BOOST_TEST(test::float_to_f16(std::ldexp(1.0f, -25)) == 0x0000);  // tie to even
  BOOST_TEST(test::float_to_f16(std::ldexp(3.0f, -25)) == 0x0002);  // tie to even
  BOOST_TEST(test::float_to_f16(std::ldexp(1.0f, -14)) == 0x0400);
  BOOST_TEST(test::float_to_f16(1.0f + std::ldexp(1.0f, -11)) == 0x3c00);  // tie to even
  BOOST_TEST(test::float_to_f16(1.0f + std::ldexp(3.0f, -11)) == 0x3c02);
  for (std::uint32_t h = 0; h < 0x7c00; ++h)
    if (test::float_to_f16(f16_to_float(static_cast<std::uint16_t>(h))) != h) {
      BOOST_ERROR("f16 round trip fails for 0x" << std::hex << h);
      break;
    }
}

BOOST_AUTO_TEST_SUITE_END()
