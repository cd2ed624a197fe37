#include "protocols/run_config.h"

#include <limits>
#include <map>
#include <set>
#include <sstream>
#include <utility>

#include <toml++/toml.h>

#include "util/error.h"
#include "util/input_file.h"

namespace moetrace {
namespace {

// Reads the keys of one table, checking types and rejecting keys nobody asked for.
class TableReader {
 public:
  TableReader(const toml::table* table, std::string name, std::string origin)
      : table_(table), name_(std::move(name)), origin_(std::move(origin)) {}

  std::string where(const std::string& key) const { return fmt::format("{}: [{}] {}", origin_, name_, key); }
  static constexpr std::size_t kMaxArray = 64;

  // A value as written in TOML, shortened for messages.
  static std::string shown(const toml::node& n) {
    std::ostringstream ss;
    n.visit([&](const auto& v) { ss << v; });
    return shorten(ss.str());
  }

  const toml::node* get(const std::string& key) {
    known_.insert(key);
    return table_ ? table_->get(key) : nullptr;
  }

  void string(const std::string& key, std::string& out) {
    if (auto* n = get(key)) {
      if (!n->is_string()) fail_input("{} must be a string, got {}", where(key), shown(*n));
      out = n->as_string()->get();
      if (out.size() > 4096) fail_input("{} is {} bytes long, more than the 4096 allowed: {}", where(key), out.size(), shorten(out));
    }
  }
  void path(const std::string& key, std::filesystem::path& out, const std::filesystem::path& base) {
    std::string s;
    string(key, s);
    if (!s.empty()) out = std::filesystem::path(s).is_absolute() ? std::filesystem::path(s) : base / s;
  }
  void boolean(const std::string& key, bool& out) {
    if (auto* n = get(key)) {
      if (!n->is_boolean()) fail_input("{} must be true or false", where(key));
      out = n->as_boolean()->get();
    }
  }
  // An integer in [min, max] and in the range of Int, checked before narrowing.
  template <typename Int>
  void integer(const std::string& key, Int& out, std::int64_t min, std::int64_t max) {
    if (auto* n = get(key)) {
      if (!n->is_integer()) fail_input("{} must be an integer, got {}", where(key), shown(*n));
      const std::int64_t v = n->as_integer()->get();
      const std::int64_t hi = std::cmp_less(std::numeric_limits<Int>::max(), max)
                                  ? static_cast<std::int64_t>(std::numeric_limits<Int>::max()) : max;
      const std::int64_t lo = std::cmp_greater(std::numeric_limits<Int>::min(), min)
                                  ? static_cast<std::int64_t>(std::numeric_limits<Int>::min()) : min;
      if (v < lo || v > hi) fail_input("{} must lie in [{}, {}], got {}", where(key), lo, hi, v);
      out = static_cast<Int>(v);
    }
  }
  // A finite number in [min, max] (NaN fails every comparison, so the check is written to reject it).
  void number(const std::string& key, double& out, double min, double max) {
    if (auto* n = get(key)) {
      if (!n->is_number()) fail_input("{} must be a number, got {}", where(key), shown(*n));
      const double v = n->is_integer() ? static_cast<double>(n->as_integer()->get()) : n->as_floating_point()->get();
      if (!(v >= min && v <= max)) fail_input("{} must be a finite number in [{}, {}], got {}", where(key), min, max, v);
      out = v;
    }
  }
  template <typename T>
  void choice(const std::string& key, T& out, const std::map<std::string, T>& options) {
    std::string s;
    if (!get(key)) return;
    string(key, s);
    auto it = options.find(s);
    if (it == options.end()) {
      std::vector<std::string> names;
      for (const auto& [k, v] : options) names.push_back(k);
      fail_input("{} = '{}' is not one of: {}", where(key), shorten(s), fmt::join(names, ", "));
    }
    out = it->second;
  }
  // Arrays of at most kMaxArray elements; numbers finite in [min, max], integers in [min, max] too.
  template <typename T>
  void array(const std::string& key, std::vector<T>& out, double min = 0, double max = 0) {
    auto* n = get(key);
    if (!n) return;
    if (!n->is_array()) fail_input("{} must be an array, got {}", where(key), shown(*n));
    if (n->as_array()->size() > kMaxArray)
      fail_input("{} has {} elements, more than the {} allowed", where(key), n->as_array()->size(), kMaxArray);
    out.clear();
    for (const toml::node& e : *n->as_array()) {
      if constexpr (std::is_same_v<T, std::string>) {
        if (!e.is_string()) fail_input("{} must be an array of strings", where(key));
        out.push_back(e.as_string()->get());
      } else if constexpr (std::is_floating_point_v<T>) {
        if (!e.is_number()) fail_input("{} must be an array of numbers", where(key));
        const double v = e.is_integer() ? static_cast<double>(e.as_integer()->get()) : e.as_floating_point()->get();
        if (!(v >= min && v <= max))
          fail_input("{}: every element must be a finite number in [{}, {}], got {}", where(key), min, max, v);
        out.push_back(static_cast<T>(v));
      } else {
        if (!e.is_integer()) fail_input("{} must be an array of integers", where(key));
        const std::int64_t v = e.as_integer()->get();
        if (!(v >= min && static_cast<double>(v) <= max))
          fail_input("{}: every element must be an integer in [{}, {}], got {}", where(key), min, max, v);
        out.push_back(static_cast<T>(v));
      }
    }
  }

  void reject_unknown() const {
    if (!table_) return;
    for (const auto& [k, v] : *table_)
      if (!known_.count(std::string(k.str())))
        fail_input("{}: unknown key '{}' in [{}] (see docs/config.md for the keys)", origin_, shorten(k.str()), name_);
  }

 private:
  const toml::table* table_;
  std::string name_, origin_;
  std::set<std::string> known_;
};

}  // namespace

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
  toml::table root;
  try {
    root = toml::parse(text, o);
  } catch (const toml::parse_error& e) {
    fail_input("{}:{}:{}: invalid TOML: {}", o, e.source().begin.line, e.source().begin.column, e.description());
  } catch (const std::exception& e) {  // anything else toml++ may throw while reading the text
    fail_input("{}: invalid TOML: {}", o, e.what());
  }
  RunConfig c;
  c.source_text = text;
  c.source_path = origin;
  const std::filesystem::path base = origin.has_parent_path() ? origin.parent_path() : std::filesystem::path(".");
  const std::set<std::string> tables{"model", "data", "cases", "noise", "layer_sweep", "experts",
                                     "coalitions", "statistics", "robustness", "heatmap", "run"};
  for (const auto& [k, v] : root) {
    if (!tables.count(std::string(k.str())))
      fail_input("{}: unknown section [{}] (sections: {})", o, shorten(k.str()), fmt::join(tables, ", "));
    if (!v.is_table()) fail_input("{}: '{}' must be a [section]", o, shorten(k.str()));
  }
  auto table = [&](const char* name) { return TableReader(root[name].as_table(), name, o); };

  auto model = table("model");
  model.path("path", c.model_path, base);
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
