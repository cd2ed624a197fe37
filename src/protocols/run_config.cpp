#include "protocols/run_config.h"

#include <fstream>
#include <map>
#include <set>
#include <sstream>

#include <toml++/toml.h>

#include "util/error.h"

namespace moetrace {
namespace {

// Reads the keys of one table, checking types and rejecting keys nobody asked for.
class TableReader {
 public:
  TableReader(const toml::table* table, std::string name, std::string origin)
      : table_(table), name_(std::move(name)), origin_(std::move(origin)) {}

  std::string where(const std::string& key) const { return fmt::format("{}: [{}] {}", origin_, name_, key); }

  const toml::node* get(const std::string& key) {
    known_.insert(key);
    return table_ ? table_->get(key) : nullptr;
  }

  void string(const std::string& key, std::string& out) {
    if (auto* n = get(key)) {
      if (!n->is_string()) fail_input("{} must be a string", where(key));
      out = n->as_string()->get();
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
  template <typename Int>
  void integer(const std::string& key, Int& out, std::int64_t min) {
    if (auto* n = get(key)) {
      if (!n->is_integer()) fail_input("{} must be an integer", where(key));
      const std::int64_t v = n->as_integer()->get();
      if (v < min) fail_input("{} must be at least {}, got {}", where(key), min, v);
      out = static_cast<Int>(v);
    }
  }
  void number(const std::string& key, double& out, double min, double max) {
    if (auto* n = get(key)) {
      if (!n->is_number()) fail_input("{} must be a number", where(key));
      const double v = n->is_integer() ? static_cast<double>(n->as_integer()->get()) : n->as_floating_point()->get();
      if (v < min || v > max) fail_input("{} must lie in [{}, {}], got {}", where(key), min, max, v);
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
      fail_input("{} = '{}' is not one of: {}", where(key), s, fmt::join(names, ", "));
    }
    out = it->second;
  }
  template <typename T>
  void array(const std::string& key, std::vector<T>& out) {
    auto* n = get(key);
    if (!n) return;
    if (!n->is_array()) fail_input("{} must be an array", where(key));
    out.clear();
    for (const toml::node& e : *n->as_array()) {
      if constexpr (std::is_same_v<T, std::string>) {
        if (!e.is_string()) fail_input("{} must be an array of strings", where(key));
        out.push_back(e.as_string()->get());
      } else if constexpr (std::is_floating_point_v<T>) {
        if (!e.is_number()) fail_input("{} must be an array of numbers", where(key));
        out.push_back(e.is_integer() ? static_cast<T>(e.as_integer()->get()) : static_cast<T>(e.as_floating_point()->get()));
      } else {
        if (!e.is_integer() || e.as_integer()->get() < 0)
          fail_input("{} must be an array of non-negative integers", where(key));
        out.push_back(static_cast<T>(e.as_integer()->get()));
      }
    }
  }

  void reject_unknown() const {
    if (!table_) return;
    for (const auto& [k, v] : *table_)
      if (!known_.count(std::string(k.str())))
        fail_input("{}: unknown key '{}' in [{}] (see docs/config.md for the keys)", origin_, k.str(), name_);
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
  }
  RunConfig c;
  c.source_text = text;
  c.source_path = origin;
  const std::filesystem::path base = origin.has_parent_path() ? origin.parent_path() : std::filesystem::path(".");
  const std::set<std::string> tables{"model", "data", "cases", "noise", "layer_sweep", "experts",
                                     "coalitions", "statistics", "robustness", "heatmap", "run"};
  for (const auto& [k, v] : root) {
    if (!tables.count(std::string(k.str())))
      fail_input("{}: unknown section [{}] (sections: {})", o, k.str(), fmt::join(tables, ", "));
    if (!v.is_table()) fail_input("{}: '{}' must be a [section]", o, k.str());
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
  cases.integer("n", c.num_cases, 0);
  cases.integer("shuffle_seed", c.shuffle_seed, 0);
  cases.integer("split_seed", c.split_seed, 0);
  cases.choice("filter", c.filter, {{"strict", FilterKind::Strict}, {"relaxed", FilterKind::Relaxed}});
  cases.integer("max_records", c.max_records, 0);
  cases.reject_unknown();

  auto noise = table("noise");
  noise.choice("sigma_rule", c.sigma_rule, {{"embedding_std", SigmaRule::EmbeddingStd}, {"subject_std", SigmaRule::SubjectStd}});
  noise.number("multiplier", c.noise_multiplier, 0, 1e6);
  noise.integer("samples", c.noise_samples, 1);
  noise.integer("seed", c.noise_seed, 0);
  noise.reject_unknown();

  auto sweep = table("layer_sweep");
  sweep.choice("site", c.sweep_site, {{"hidden", Site::Hidden}, {"attn", Site::Attn}, {"moe", Site::Moe}});
  sweep.choice("positions", c.sweep_positions,
               {{"final", SweepPositions::Final}, {"last_subject", SweepPositions::LastSubject}, {"subject", SweepPositions::Subject}});
  sweep.integer("window", c.sweep_window, 1);
  sweep.reject_unknown();

  auto experts = table("experts");
  experts.choice("mode", c.expert_mode, {{"selected_layer", ExpertMode::SelectedLayer}, {"all_layers", ExpertMode::AllLayers}});
  experts.number("candidate_threshold", c.candidate_threshold, 0, 1);
  experts.integer("sampled_controls", c.sampled_controls, 1);
  experts.integer("control_seed", c.control_seed, 0);
  experts.reject_unknown();

  auto coal = table("coalitions");
  std::vector<std::string> sets;
  coal.array("sets", sets);
  if (coal.get("sets")) {
    c.coalitions.clear();
    for (const auto& s : sets) {
      if (s == "clean_topk") c.coalitions.push_back(CoalitionSet::CleanTopk);
      else if (s == "union") c.coalitions.push_back(CoalitionSet::Union);
      else fail_input("{}: '{}' is not one of: clean_topk, union", coal.where("sets"), s);
    }
  }
  coal.reject_unknown();

  auto stats = table("statistics");
  stats.integer("bootstrap", c.bootstrap_resamples, 100);
  stats.integer("sign_flips", c.sign_flips, 100);
  stats.integer("seed", c.stats_seed, 0);
  stats.reject_unknown();

  auto robust = table("robustness");
  robust.array("noise_multipliers", c.robust_noise_multipliers);
  robust.boolean("relaxed_filter", c.robust_relaxed_filter);
  robust.array("split_seeds", c.robust_split_seeds);
  robust.array("candidate_thresholds", c.robust_candidate_thresholds);
  for (double t : c.robust_candidate_thresholds)
    if (t < 0 || t > 1) fail_input("{}: thresholds are fractions in [0, 1], got {}", robust.where("candidate_thresholds"), t);
  robust.reject_unknown();

  auto heat = table("heatmap");
  heat.integer("cases", c.heatmap_cases, 0);
  heat.reject_unknown();

  auto run = table("run");
  run.integer("batch_rows", c.batch_rows, 1);
  run.integer("chunk_tokens", c.chunk_tokens, 1);
  run.integer("prepared_cache_mib", c.prepared_cache_mib, 0);
  run.integer("progress_every_s", c.progress_every_s, 1);
  run.integer("checkpoint_every_s", c.checkpoint_every_s, 0);
  run.reject_unknown();
  return c;
}

RunConfig load_run_config(const std::filesystem::path& path) {
  std::ifstream in(path);
  if (!in) fail_input("cannot open config file {}", path.string());
  std::stringstream ss;
  ss << in.rdbuf();
  return parse_run_config(ss.str(), path);
}

}  // namespace moetrace
