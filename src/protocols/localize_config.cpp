#include "protocols/localize_config.h"

#include <set>

#include "localize/localize_data.h"
#include "localize/localize_effect.h"
#include "protocols/run_config.h"  // limits shared with run's config
#include "protocols/toml_table_reader.h"
#include "util/error.h"
#include "util/input_file.h"
#include "util/logging.h"

namespace moetrace {

namespace localize {
std::string_view expert_selection_name(ExpertSelection s) { return s == ExpertSelection::Global ? "global" : "per_layer"; }
std::string_view bootstrap_unit_name(BootstrapUnit u) { return u == BootstrapUnit::Question ? "question" : "pair"; }
}  // namespace localize

namespace {

// A string option turned into its enum by the parser the library provides (which names `what`).
template <typename Enum, typename Parse>
void enum_option(TableReader& t, const std::string& key, Enum& out, Parse parse) {
  if (!t.get(key)) return;
  std::string s;
  t.string(key, s);
  out = parse(s, t.where(key));
}

}  // namespace

LocalizeConfig parse_localize_config(const std::string& text, const std::filesystem::path& origin) {
  using namespace localize;
  const std::string o = origin.string();
  const toml::table root = parse_toml(text, o);
  LocalizeConfig c;
  c.source_text = text;
  c.source_path = origin;
  const std::filesystem::path base = origin.has_parent_path() ? origin.parent_path() : std::filesystem::path(".");
  check_sections(root, {"model", "data", "templates", "ask", "contrast", "deactivation", "run"}, o);
  auto table = [&](const char* name) { return TableReader(root[name].as_table(), name, o); };

  auto model = table("model");
  model.path("path", c.model_path, base);
  model.path("weight_store", c.weight_store, base);
  model.path("tokenizer", c.tokenizer_path, base);
  model.string("backend", c.backend);
  if (model.get("eos_ids")) {
    c.eos_ids_given = true;
    model.array("eos_ids", c.eos_ids, 0, static_cast<double>(limits::kMaxTokenId));
  }
  model.reject_unknown();
  if (c.model_path.empty()) fail_input("{}: [model] path is required", o);
  if (c.tokenizer_path.empty()) c.tokenizer_path = c.model_path;

  auto data = table("data");
  data.path("questions", c.questions_path, base);
  data.array("languages", c.languages);
  data.boolean("strict", c.strict);
  data.path("unrelated", c.unrelated_path, base);
  data.reject_unknown();
  if (c.questions_path.empty()) fail_input("{}: [data] questions is required", o);
  std::set<std::string> seen;
  for (const std::string& l : c.languages) {
    if (!valid_language_code(l)) fail_input("{}: \"{}\" is not a language code", data.where("languages"), shorten(l));
    if (!seen.insert(l).second) fail_input("{}: \"{}\" is listed twice", data.where("languages"), shorten(l));
  }

  if (const toml::table* templates = root["templates"].as_table()) {
    TableReader t(templates, "templates", o);
    for (const auto& [k, v] : *templates) {
      const std::string key(k.str());
      if (key != "default" && !valid_language_code(key))
        fail_input("{}: [templates] {}: neither \"default\" nor a language code", o, shorten(key));
      if (!v.is_string()) fail_input("{} must be a string", t.where(key));
      const std::string tpl = v.as_string()->get();
      if (tpl.size() > kMaxTemplateBytes)
        fail_input("{} is {} bytes long, more than the {} allowed", t.where(key), tpl.size(), kMaxTemplateBytes);
      check_prompt_template(tpl, t.where(key));
      if (key == "default") c.default_template = tpl;
      else c.templates[key] = tpl;
    }
  }

  auto ask = table("ask");
  ask.integer("max_new_tokens", c.max_new_tokens, 1, limits::kMaxNewTokens);
  ask.integer("prompts_per_call", c.prompts_per_call, 1, limits::kMaxPromptsPerCall);
  ask.boolean("add_special_tokens", c.add_special_tokens);
  ask.string("answer_prefix", c.answer_prefix);
  enum_option(ask, "match", c.match, parse_match_rule);
  enum_option(ask, "bucket", c.bucket, parse_bucket_rule);
  ask.number("logprob_threshold", c.logprob_threshold, -1e300, 0);
  ask.reject_unknown();

  auto contrast = table("contrast");
  enum_option(contrast, "statistic", c.statistic, parse_routing_statistic);
  enum_option(contrast, "method", c.method, parse_contrast_method);
  enum_option(contrast, "direction", c.direction, parse_rank_direction);
  contrast.integer("sign_flips", c.sign_flips, 100, limits::kMaxSignFlips);
  contrast.integer("top_n", c.top_n, 1, limits::kMaxTopN);
  contrast.choice("selection", c.selection, {{"global", ExpertSelection::Global}, {"per_layer", ExpertSelection::PerLayer}});
  contrast.integer("seed", c.seed, 0, limits::kMaxSeed);
  contrast.reject_unknown();

  auto deact = table("deactivation");
  deact.integer("control_draws", c.control_draws, 1, limits::kMaxControlDraws);
  deact.array("curve_n", c.curve_n, 1, static_cast<double>(limits::kMaxCurveN));
  for (std::size_t i = 1; i < c.curve_n.size(); ++i)
    if (c.curve_n[i] <= c.curve_n[i - 1])
      fail_input("{} must be ascending without repeats, got {} after {}", deact.where("curve_n"), c.curve_n[i],
                 c.curve_n[i - 1]);
  deact.integer("bootstrap", c.bootstrap, 100, limits::kMaxBootstrap);
  deact.choice("bootstrap_unit", c.bootstrap_unit, {{"question", BootstrapUnit::Question}, {"pair", BootstrapUnit::Pair}});
  deact.reject_unknown();

  auto run = table("run");
  run.integer("chunk_tokens", c.chunk_tokens, 1, limits::kMaxChunkTokens);
  run.integer("progress_every_s", c.progress_every_s, 1, limits::kMaxIntervalS);
  run.integer("checkpoint_every_s", c.checkpoint_every_s, 0, limits::kMaxIntervalS);
  run.reject_unknown();
  return c;
}

LocalizeConfig load_localize_config(const std::filesystem::path& path) {
  return parse_localize_config(read_input_file(path, "config file", limits::kMaxConfigBytes), path);
}

void check_localize_inputs(const LocalizeConfig& c) {
  const std::string origin = c.source_path.string() + ": ";
  require_file_or_directory(c.model_path, origin + "[model] path =");
  require_file_or_directory(c.tokenizer_path, origin + "[model] tokenizer =");
  require_regular_file(c.questions_path, origin + "[data] questions =");
  if (!c.unrelated_path.empty()) require_regular_file(c.unrelated_path, origin + "[data] unrelated =");
}

namespace {

void check_eos_ids(const LocalizeConfig& c, const ModelConfig& m, const std::string& o) {
  for (int id : c.eos_ids)
    if (id >= m.vocab_size)
      fail_input("{}: [model] eos_ids: token id {} is not below the model's vocabulary size {} (allowed: 0 .. {})", o, id,
                 m.vocab_size, m.vocab_size - 1);
}

// Every template, rendered with an empty question (and output_type), must leave room for a
// question's tokens and max_new_tokens within the model's positions.
void check_prompt_room(const LocalizeConfig& c, const ModelConfig& m, const Tokenizer& tokenizer, const std::string& o) {
  const int P = m.max_position_embeddings;
  if (P <= 0) return;
  if (c.max_new_tokens >= P)
    fail_input("{}: [ask] max_new_tokens = {} leaves no room for a prompt in the model's {} positions "
               "(max_position_embeddings; allowed: 1 .. {})", o, c.max_new_tokens, P, P - 1);
  std::vector<std::pair<std::string, std::string>> templates{{"default", c.default_template}};
  for (const auto& [language, tpl] : c.templates) templates.emplace_back(language, tpl);
  for (const auto& [key, tpl] : templates) {
    const std::size_t n = tokenizer.encode_ids(localize::render_prompt(tpl, "", ""), c.add_special_tokens).size();
    if (n + static_cast<std::size_t>(c.max_new_tokens) >= static_cast<std::size_t>(P))
      fail_input("{}: [templates] {}: the template alone is {} tokens; with [ask] max_new_tokens = {} no question fits "
                 "the model's {} positions (max_position_embeddings)", o, key, n, c.max_new_tokens, P);
  }
}

void fit_expert_counts(LocalizeConfig& c, const ModelConfig& m, const std::string& o) {
  const int chosen = localize::chosen_cap(m.num_experts, m.top_k), any = localize::deactivation_cap(m.num_experts, m.top_k);
  if (chosen < 1)
    fail_input("{}: [contrast] top_n: the model routes every token to {} of its {} experts per layer, which leaves none to "
               "deactivate", o, m.top_k, m.num_experts);
  if (c.selection == localize::ExpertSelection::PerLayer && c.top_n > chosen)
    fail_input("{}: [contrast] top_n = {} with selection = \"per_layer\": must lie in [1, {}] for this model (each token "
               "keeps its top-{} of a layer's {} experts, and the random layer-matched controls draw as many others)",
               o, c.top_n, chosen, m.top_k, m.num_experts);
  const long long most_chosen = static_cast<long long>(m.num_layers) * chosen, most = static_cast<long long>(m.num_layers) * any;
  if (c.selection == localize::ExpertSelection::Global && c.top_n > most_chosen) {
    spdlog::warn("{}: [contrast] top_n = {} clipped to {}: {} layers x at most {} chosen experts per layer (top-{} of {})", o,
                 c.top_n, most_chosen, m.num_layers, chosen, m.top_k, m.num_experts);
    c.top_n = static_cast<int>(most_chosen);
  }
  std::vector<int> curve;
  for (int n : c.curve_n)
    if (curve.empty() || std::min<long long>(n, most) > curve.back()) curve.push_back(static_cast<int>(std::min<long long>(n, most)));
  if (curve != c.curve_n) {
    spdlog::warn("{}: [deactivation] curve_n elements above {} clipped to it ({} layers x at most {} deactivated experts "
                 "per layer, top-{} of {})", o, most, m.num_layers, any, m.top_k, m.num_experts);
    c.curve_n = curve;
  }
}

}  // namespace

void fit_localize_config_to_model(LocalizeConfig& c, const ModelConfig& m, const Tokenizer& tokenizer) {
  const std::string o = c.source_path.string();
  check_eos_ids(c, m, o);
  check_prompt_room(c, m, tokenizer, o);
  fit_expert_counts(c, m, o);
}

std::vector<int> effective_eos_ids(const LocalizeConfig& c, const std::vector<int>& model_eos_ids) {
  return c.eos_ids_given ? c.eos_ids : model_eos_ids;
}

}  // namespace moetrace
