#include "protocols/run_config.h"

#include <limits>
#include <map>
#include <set>
#include <sstream>
#include <utility>

#include <toml++/toml.h>

#include "protocols/toml_table_reader.h"
#include "util/error.h"
#include "util/input_file.h"

namespace moetrace {

const char* coalition_name(CoalitionSet s) { return s == CoalitionSet::Union ? "union" : "clean_topk"; }

const char* site_name(Site s) {
  switch (s) {
    case Site::Hidden: return "hidden";
    case Site::Attn: return "attn";
    case Site::Moe: return "moe";
    case Site::Experts: return "experts";
  }
  return "?";
}

RunConfig parse_run_config(const std::string& text, const std::filesystem::path& origin) {
  const std::string o = origin.string();
  toml::table root = parse_toml(text, o);
  RunConfig c;
  c.source_text = text;
  c.source_path = origin;
  const std::filesystem::path base = origin.has_parent_path() ? origin.parent_path() : std::filesystem::path(".");
  const std::set<std::string> tables{"model", "data", "cases", "noise", "layer_sweep", "experts",
                                     "coalitions", "statistics", "robustness", "heatmap", "run"};
  check_sections(root, tables, o);
  auto table = [&](const char* name) { return TableReader(root[name].as_table(), name, o); };

  auto model = table("model");
  model.path("path", c.model_path, base);
  model.path("weight_store", c.weight_store, base);
  model.path("tokenizer", c.tokenizer_path, base);
  model.string("backend", c.backend);
  model.reject_unknown();
  if (c.model_path.empty()) fail_input("{}: [model] path is required", o);
  if (c.tokenizer_path.empty()) c.tokenizer_path = c.model_path;

  auto data = table("data");
  data.path("counterfact", c.counterfact_path, base);
  data.path("case_ids", c.case_ids_path, base);
  data.string("case_ids_key", c.case_ids_key);
  data.choice("object_rule", c.object_rule,
              {{"leading_space", ObjectRule::LeadingSpace}, {"bare_then_space", ObjectRule::BareThenSpace}});
  data.boolean("add_bos", c.add_bos);
  data.reject_unknown();
  if (c.counterfact_path.empty()) fail_input("{}: [data] counterfact is required", o);

  auto cases = table("cases");
  cases.integer("n", c.num_cases, 0, limits::kMaxCases);
  cases.integer("shuffle_seed", c.shuffle_seed, 0, limits::kMaxSeed);
  cases.integer("split_seed", c.split_seed, 0, limits::kMaxSeed);
  cases.choice("filter", c.filter, {{"strict", FilterKind::Strict}, {"relaxed", FilterKind::Relaxed}});
  cases.integer("max_records", c.max_records, 0, std::numeric_limits<int>::max());
  cases.reject_unknown();

  auto noise = table("noise");
  noise.choice("sigma_rule", c.sigma_rule, {{"embedding_std", SigmaRule::EmbeddingStd}, {"subject_std", SigmaRule::SubjectStd}});
  noise.number("multiplier", c.noise_multiplier, 0, limits::kMaxNoiseMultiplier);
  noise.integer("samples", c.noise_samples, 1, limits::kMaxNoiseSamples);
  noise.integer("seed", c.noise_seed, 0, limits::kMaxSeed);
  noise.reject_unknown();

  auto sweep = table("layer_sweep");
  sweep.choice("site", c.sweep_site, {{"hidden", Site::Hidden}, {"attn", Site::Attn}, {"moe", Site::Moe}});
  sweep.choice("positions", c.sweep_positions,
               {{"final", SweepPositions::Final}, {"last_subject", SweepPositions::LastSubject}, {"subject", SweepPositions::Subject}});
  sweep.integer("window", c.sweep_window, 1, limits::kMaxSweepWindow);
  sweep.number("tie_tolerance", c.tie_tolerance, 0, limits::kMaxTieTolerance);
  sweep.reject_unknown();

  auto experts = table("experts");
  experts.choice("mode", c.expert_mode, {{"selected_layer", ExpertMode::SelectedLayer}, {"all_layers", ExpertMode::AllLayers}});
  experts.number("candidate_threshold", c.candidate_threshold, 0, 1);
  experts.integer("sampled_controls", c.sampled_controls, 1, limits::kMaxSampledControls);
  experts.integer("control_seed", c.control_seed, 0, limits::kMaxSeed);
  experts.boolean("trace_without_rescue", c.trace_without_rescue);
  experts.reject_unknown();

  auto coal = table("coalitions");
  std::vector<std::string> sets;
  coal.array("sets", sets);
  if (coal.get("sets")) {
    c.coalitions.clear();
    for (const auto& s : sets) {
      if (s == "clean_topk") c.coalitions.push_back(CoalitionSet::CleanTopk);
      else if (s == "union") c.coalitions.push_back(CoalitionSet::Union);
      else fail_input("{}: '{}' is not one of: clean_topk, union", coal.where("sets"), shorten(s));
    }
  }
  coal.reject_unknown();

  auto stats = table("statistics");
  stats.integer("bootstrap", c.bootstrap_resamples, 100, limits::kMaxBootstrap);
  stats.integer("sign_flips", c.sign_flips, 100, limits::kMaxSignFlips);
  stats.integer("seed", c.stats_seed, 0, limits::kMaxSeed);
  stats.reject_unknown();

  auto robust = table("robustness");
  robust.array("noise_multipliers", c.robust_noise_multipliers, 0, limits::kMaxNoiseMultiplier);
  robust.boolean("relaxed_filter", c.robust_relaxed_filter);
  robust.array("split_seeds", c.robust_split_seeds, 0, static_cast<double>(limits::kMaxSeed));
  robust.array("candidate_thresholds", c.robust_candidate_thresholds, 0, 1);
  robust.reject_unknown();

  auto heat = table("heatmap");
  heat.integer("cases", c.heatmap_cases, 0, limits::kMaxHeatmapCases);
  heat.reject_unknown();

  auto run = table("run");
  run.integer("batch_rows", c.batch_rows, 1, limits::kMaxBatchRows);
  run.integer("chunk_tokens", c.chunk_tokens, 1, limits::kMaxChunkTokens);
  run.integer("prepared_cache_mib", c.prepared_cache_mib, 0, limits::kMaxPreparedCacheMib);
  run.integer("progress_every_s", c.progress_every_s, 1, limits::kMaxIntervalS);
  run.integer("checkpoint_every_s", c.checkpoint_every_s, 0, limits::kMaxIntervalS);
  run.reject_unknown();
  return c;
}

RunConfig load_run_config(const std::filesystem::path& path) {
  return parse_run_config(read_input_file(path, "config file", limits::kMaxConfigBytes), path);
}

void check_run_inputs(const RunConfig& c) {
  const std::string origin = c.source_path.string() + ": ";
  require_file_or_directory(c.model_path, origin + "[model] path =");
  require_file_or_directory(c.tokenizer_path, origin + "[model] tokenizer =");
  require_regular_file(c.counterfact_path, origin + "[data] counterfact =");
  if (!c.case_ids_path.empty()) require_regular_file(c.case_ids_path, origin + "[data] case_ids =");
}

}  // namespace moetrace
