#include "protocols/tracing_pipeline.h"

#include <algorithm>
#include <cmath>
#include <map>

#include "protocols/selection.h"
#include "protocols/statistics.h"
#include "util/error.h"
#include "util/logging.h"
#include "util/progress.h"
#include "util/stop_signal.h"

namespace moetrace {
namespace {

std::vector<int> rows_of(const std::vector<UsableCase>& cases, Split split) {
  std::vector<int> out;
  for (int i = 0; i < static_cast<int>(cases.size()); ++i)
    if (cases[i].split == split) out.push_back(i);
  return out;
}

CaseTable case_table(const std::vector<UsableCase>& cases) {
  CaseTable t;
  for (const UsableCase& c : cases) {
    t.case_id.push_back(c.record.case_id);
    t.prompt.push_back(c.prompt_text);
    t.subject.push_back(c.record.subject);
    t.true_object.push_back(c.record.true_object);
    t.foil_object.push_back(c.record.foil_object);
    t.relation.push_back(c.record.relation_id);
    t.token_ids.push_back(c.prompt.ids);
    t.subject_begin.push_back(c.prompt.subject_begin);
    t.subject_end.push_back(c.prompt.subject_end);
    t.true_id.push_back(c.prompt.true_id);
    t.foil_id.push_back(c.prompt.foil_id);
    t.split.push_back(static_cast<int>(c.split));
    t.d_clean.push_back(c.d_clean);
    t.d_noised.push_back(c.d_noised);
  }
  return t;
}

// Columns [col, col + width) of m as a matrix of their own.
Matrix2 columns(const Matrix2& m, int col, int width) {
  Matrix2 out(m.rows, width, NAN);
  for (int r = 0; r < m.rows; ++r)
    for (int c = 0; c < width; ++c) out.at(r, c) = m.at(r, col + c);
  return out;
}

std::vector<double> row_of(const Matrix2& m, int r) {
  return {m.v.begin() + static_cast<std::ptrdiff_t>(r) * m.cols, m.v.begin() + static_cast<std::ptrdiff_t>(r + 1) * m.cols};
}

SummaryRecord summarize_named(const std::string& name, const std::vector<double>& values, const RunConfig& c) {
  std::vector<double> finite;
  for (double v : values)
    if (!std::isnan(v)) finite.push_back(v);
  SummaryRecord r;
  r.name = name;
  r.n = static_cast<int>(finite.size());
  if (finite.empty()) {
    r.mean = r.ci_low = r.ci_high = r.frac_positive = r.p_value = NAN;
    return r;
  }
  StatsOptions options;
  options.bootstrap_resamples = static_cast<std::uint32_t>(c.bootstrap_resamples);
  options.sign_flips = static_cast<std::uint32_t>(c.sign_flips);
  const SummaryStats s = summarize(finite, c.stats_seed, options);
  r.mean = s.mean;
  r.ci_low = s.ci_low;
  r.ci_high = s.ci_high;
  r.frac_positive = s.frac_positive;
  r.p_value = s.p_sign_flip;
  return r;
}

std::string expert_group(int layer) { return fmt::format("{}/layer_{}", layout::kExperts, layer); }

// The three per-expert outputs of one traced layer, as stored.
std::vector<RowOutput> expert_outputs(int layer, int E) {
  const std::string g = expert_group(layer);
  return {{g + "/clean_active", E}, {g + "/clean_weight", E}, {g + "/rescue", E}};
}

std::vector<int> all_rows(int n) {
  std::vector<int> v(n);
  for (int i = 0; i < n; ++i) v[i] = i;
  return v;
}

// Thrown by a shard run at the first step that needs other shards' rows; caught by run().
struct ShardStop {
  std::string before;
};

}  // namespace

Chunk chunk_of(const std::vector<std::shared_ptr<const TracedCase>>& prepared) {
  Chunk c;
  for (const auto& p : prepared) c.push_back(p.get());
  return c;
}

TracingPipeline::TracingPipeline(const RunConfig& config, CaseTracer& tracer, const CaseBuilder& builder,
                                 double sigma_base, ResultsFile& results, RowExecutor& executor)
    : config_(config), tracer_(tracer),
      prepared_(config, tracer, sigma_base, static_cast<std::size_t>(config.prepared_cache_mib) << 20),
      scanner_(config, builder, prepared_, sigma_base), sweeps_(config, tracer), results_(results),
      executor_(executor), builder_(builder) {
  L_ = tracer.engine().model().config.num_layers;
  E_ = tracer.engine().model().config.num_experts;
}

std::vector<std::shared_ptr<const TracedCase>> TracingPipeline::prepare(const std::vector<UsableCase>& cases,
                                                                        const std::vector<int>& rows,
                                                                        double multiplier, RecordLevel level,
                                                                        int full_from) {
  std::vector<const UsableCase*> chunk;
  for (int i : rows) chunk.push_back(&cases[i]);
  return prepared_.get(chunk, multiplier, level, full_from);
}

void TracingPipeline::use_case_costs(const std::vector<UsableCase>& cases) {
  // Chunks are sized by token rows; distributed executors hand the longest prompts out first.
  executor_.set_row_cost([&cases](int i) { return static_cast<double>(cases[i].prompt.num_tokens()); });
}

void TracingPipeline::set_shard(CaseShard shard) {
  executor_.set_shard(shard);
  sharded_ = true;
}

void TracingPipeline::stop_shard_unless_complete(const char* step) const {
  if (sharded_ && !executor_.last_complete()) throw ShardStop{step};
}

void TracingPipeline::stop_shard(const char* step) const {
  if (sharded_) throw ShardStop{step};
}

PipelineSummary TracingPipeline::run(const std::vector<CounterFactRecord>& records) {
  if (!sharded_) return run_stages(records);
  try {
    return run_stages(records);
  } catch (const ShardStop& stop) {
    results_.flush();
    summary_.stopped_before = stop.before;
    summary_.preparations = prepared_.stats();
    return summary_;
  }
}

PipelineSummary TracingPipeline::run_stages(const std::vector<CounterFactRecord>& records) {
  scan_cases(records);
  layer_sweep();
  trace_expert_layers(config_.expert_mode == ExpertMode::AllLayers ? all_rows(L_)
                                                                   : std::vector<int>{summary_.selected_layer});
  select_expert_stage();
  controls_and_coalitions();
  stop_shard("the statistics");
  statistics();
  results_.flush();
  if (config_.heatmap_cases > 0) heatmaps();
  robustness(records);
  results_.set_attr(layout::kProvenance, "completed", static_cast<std::int64_t>(1));
  results_.flush();
  summary_.preparations = prepared_.stats();
  return summary_;
}

// ---- 1. cases ------------------------------------------------------------------------------
void TracingPipeline::scan_cases(const std::vector<CounterFactRecord>& records) {
  const ScanResult scan = scanner_.scan(records, {config_.noise_multiplier, config_.filter, config_.split_seed}, executor_);
  cases_ = scan.cases;
  const int N = static_cast<int>(cases_.size());
  summary_.usable_cases = N;
  discovery_ = rows_of(cases_, Split::Discovery);
  validation_ = rows_of(cases_, Split::Validation);
  std::string skipped;
  for (const auto& [reason, count] : scan.skipped) skipped += fmt::format("{}{} {}", skipped.empty() ? "" : ", ", count, reason);
  spdlog::info("{} usable cases ({} discovery, {} validation) from {} records; skipped: {}", N, discovery_.size(),
               validation_.size(), scan.records_seen, skipped.empty() ? "none" : skipped);
  if (discovery_.empty() || validation_.empty())
    fail_input("only {} usable cases: the protocol needs at least one discovery and one validation case", N);
  const CaseTable table = case_table(cases_);
  if (results_.has(std::string(layout::kCases) + "/case_id")) {
    if (results_.read_cases(layout::kCases).case_id != table.case_id)
      fail_input("{}: the cases of the run being resumed differ from this run's (changed data or code?)", results_.path());
  } else {
    results_.write_cases(layout::kCases, table);
    std::vector<std::int64_t> ids;
    std::vector<std::string> reasons;
    for (const auto& [id, r] : scan.skipped_cases) {
      ids.push_back(id);
      reasons.push_back(r);
    }
    results_.write_skips(layout::kSkipped, ids, reasons);
  }
  results_.set_attr(layout::kCases, "records_seen", static_cast<std::int64_t>(scan.records_seen));
  results_.set_attr(layout::kCases, "noise_sigma", scan.sigma);
  for (const auto& [reason, count] : scan.skipped) results_.set_attr(layout::kSkipped, reason, static_cast<std::int64_t>(count));
  results_.flush();
}

// ---- 2. layer sweep --------------------------------------------------------------------------
void TracingPipeline::layer_sweep() {
  const std::string sweep = std::string(layout::kLayerSweep) + "/rescue";
  use_case_costs(cases_);
  layer_rescue_ = executor_.run("layer sweep", static_cast<int>(cases_.size()), {{sweep, L_}}, [&](const std::vector<int>& rows) {
    return sweeps_.layer_sweep(chunk_of(prepare(cases_, rows, config_.noise_multiplier)));
  });
  results_.set_attr(sweep, "site", std::string(site_name(config_.sweep_site)));
  results_.set_attr(sweep, "window", static_cast<std::int64_t>(config_.sweep_window));
  stop_shard_unless_complete("the layer selection");
  std::vector<double> discovery_means(L_);
  for (int l = 0; l < L_; ++l) discovery_means[l] = column_mean(layer_rescue_, l, discovery_);
  double gap = 0;
  for (int i : discovery_) gap += (cases_[i].d_clean - cases_[i].d_noised) / static_cast<double>(discovery_.size());
  const LayerChoice choice = choose_layer(discovery_means, gap, config_.tie_tolerance);
  const int lstar = choice.layer;
  if (lstar < 0) fail_input("the layer sweep produced no finite rescue on the discovery cases");
  summary_.selected_layer = lstar;
  results_.write_vector(std::string(layout::kLayerSweep) + "/discovery_mean", discovery_means);
  results_.write_ints(std::string(layout::kLayerSweep) + "/tied_layers", choice.tied);
  results_.set_attr(layout::kLayerSweep, "selected_layer", static_cast<std::int64_t>(lstar));
  results_.set_attr(layout::kLayerSweep, "tie_tolerance", config_.tie_tolerance);
  results_.set_attr(layout::kLayerSweep, "discovery_gap", gap);
  results_.set_attr(layout::kLayerSweep, "curve_flat", static_cast<std::int64_t>(choice.flat));
  results_.set_attr(layout::kLayerSweep, "curve_zero", static_cast<std::int64_t>(choice.zero));
  results_.set_attr(layout::kLayerSweep, "no_rescue", static_cast<std::int64_t>(choice.no_rescue));
  const std::vector<std::string> warnings = layer_choice_warnings(choice, discovery_means);
  std::string joined;  // stored for `moetrace report`, one warning a line ("" when none)
  for (const std::string& w : warnings) {
    spdlog::warn("layer sweep: {}", w);
    if (!joined.empty()) joined += '\n';
    joined += w;
  }
  results_.set_attr(layout::kLayerSweep, "warnings", joined);
  spdlog::info("layer sweep: selected layer {} (discovery mean rescue {:.6g})", lstar, discovery_means[lstar]);
  if (choice.no_rescue && !config_.trace_without_rescue) {
    results_.flush();
    fail_input("the selected layer {} has no rescue (discovery mean {:.3g}, at most {:.0e} of the clean-noised gap "
               "{:.3g}): expert tracing there would trace noise. The layer sweep is saved; set "
               "[experts] trace_without_rescue = true to trace anyway",
               lstar, discovery_means[lstar], kZeroRescueTolerance, gap);
  }
}

// ---- 3. expert tracing -----------------------------------------------------------------------
// Traces every clean-active expert at the final position of each listed layer; layers already
// traced (robustness splits may ask for the same layer again) are not recomputed.
void TracingPipeline::trace_expert_layers(const std::vector<int>& wanted) {
  std::vector<int> layers;
  for (int l : wanted)
    if (!experts_.count(l)) layers.push_back(l);
  if (layers.empty()) return;
  std::vector<RowOutput> outputs;
  for (int l : layers)
    for (const RowOutput& o : expert_outputs(l, E_)) outputs.push_back(o);
  const std::string label = layers.size() == 1 ? fmt::format("expert tracing (layer {})", layers[0])
                                               : fmt::format("expert tracing ({} layers)", layers.size());
  use_case_costs(cases_);
  const Matrix2 m = executor_.run(label, static_cast<int>(cases_.size()), outputs, [&](const std::vector<int>& rows) {
    const auto tcs = prepare(cases_, rows, config_.noise_multiplier);
    std::vector<std::vector<double>> out;
    for (const std::vector<ExpertRow>& per_layer : sweeps_.expert_layers(chunk_of(tcs), layers)) {
      std::vector<double> row;
      for (const ExpertRow& r : per_layer)
        for (const auto* part : {&r.clean_active, &r.clean_weight, &r.rescue}) row.insert(row.end(), part->begin(), part->end());
      out.push_back(std::move(row));
    }
    return out;
  });
  stop_shard_unless_complete("the expert selection");
  for (std::size_t k = 0; k < layers.size(); ++k) {
    const int c = static_cast<int>(k) * 3 * E_;
    experts_[layers[k]] = ExpertMatrices{columns(m, c + 2 * E_, E_), columns(m, c, E_), columns(m, c + E_, E_)};
  }
}

void TracingPipeline::select_expert_stage() {
  const int lstar = summary_.selected_layer;
  const ExpertMatrices& X = experts_.at(lstar);
  const std::vector<int> candidates = expert_candidates(X.active, discovery_, config_.candidate_threshold);
  const int estar = select_expert(X.rescue, X.active, discovery_, candidates);
  summary_.selected_expert = estar;
  results_.write_ints(std::string(layout::kExperts) + "/candidates", candidates);
  results_.set_attr(layout::kExperts, "selected_layer", static_cast<std::int64_t>(lstar));
  results_.set_attr(layout::kExperts, "selected_expert", static_cast<std::int64_t>(estar));
  results_.set_attr(layout::kExperts, "candidate_threshold", config_.candidate_threshold);
  if (estar < 0)
    spdlog::warn("no expert at layer {} is clean-active in {:.0f}% of discovery cases: no expert selected", lstar,
                 100 * config_.candidate_threshold);
  else
    spdlog::info("expert tracing: selected L{}E{:03d} from {} candidates", lstar, estar, candidates.size());
  if (config_.expert_mode == ExpertMode::AllLayers)
    for (const auto& [layer, M] : experts_) per_layer_expert_summary(layer, M);
}

// mode = "all_layers": the best candidate of every traced layer, chosen on discovery cases by the
// same rule as e*, with its validation rescue and specificity (vs sampled controls), for the
// report's per-layer expert table.
void TracingPipeline::per_layer_expert_summary(int layer, const ExpertMatrices& M) {
  const std::vector<int> cand = expert_candidates(M.active, discovery_, config_.candidate_threshold);
  const int e = select_expert(M.rescue, M.active, discovery_, cand);
  std::vector<double> rescue, spec;
  int active = 0;
  for (int i : validation_) {
    if (e < 0) break;
    rescue.push_back(rescue_or_zero(M.rescue, M.active, i, e));
    if (M.active.at(i, e) == 0) continue;
    ++active;
    const ExpertControls ctl = expert_controls(row_of(M.rescue, i), row_of(M.active, i), row_of(M.weight, i), e,
                                               config_.sampled_controls, config_.control_seed, cases_[i].record.case_id);
    if (!std::isnan(ctl.sampled)) spec.push_back(M.rescue.at(i, e) - ctl.sampled);
  }
  const std::string g = expert_group(layer) + "/validation";
  results_.write_summary(g, summarize_named("expert_rescue", rescue, config_));
  results_.write_summary(g, summarize_named("specificity", spec, config_));
  results_.set_attr(g, "best_expert", static_cast<std::int64_t>(e));
  results_.set_attr(g, "candidates", static_cast<std::int64_t>(cand.size()));
  results_.set_attr(g, "clean_active", static_cast<std::int64_t>(active));
  results_.set_attr(g, "cases", static_cast<std::int64_t>(validation_.size()));
}

// ---- 4. controls and coalitions --------------------------------------------------------------
void TracingPipeline::controls_and_coalitions() {
  const int lstar = summary_.selected_layer, estar = summary_.selected_expert;
  const ExpertMatrices& X = experts_.at(lstar);
  const std::string controls = std::string(layout::kControls) + "/values";
  const std::string coalitions = std::string(layout::kCoalitions) + "/rescue";
  const int S = static_cast<int>(config_.coalitions.size());
  use_case_costs(cases_);
  controls_ = executor_.run("controls and coalitions", static_cast<int>(cases_.size()), {{controls, 5}, {coalitions, S}},
                            [&](const std::vector<int>& rows) {
    // Columns: sampled controls' mean rescue, gate-matched expert, its rescue, equal-norm rescue
    // of e* and of the gate-matched control; then one rescue per coalition. Cases whose e* is
    // clean-active need noised runs recorded in full at layer l* (equal-norm controls): a kept
    // case gets them by re-recording its noised runs from l* on, not by being prepared again.
    std::vector<int> full, base;
    for (int i : rows) (estar >= 0 && X.active.at(i, estar) != 0 ? full : base).push_back(i);
    std::map<int, std::shared_ptr<const TracedCase>> tcs;
    for (auto [list, level] : {std::pair{&full, RecordLevel::Full}, std::pair{&base, RecordLevel::Base}}) {
      const auto p = prepare(cases_, *list, config_.noise_multiplier, level, lstar);
      for (std::size_t k = 0; k < list->size(); ++k) tcs[(*list)[k]] = p[k];
    }
    std::vector<std::vector<double>> out(rows.size(), std::vector<double>(5, NAN));
    std::vector<EqualNormRequest> equal_norm;
    std::vector<std::size_t> equal_norm_row;
    Chunk chunk;
    for (std::size_t k = 0; k < rows.size(); ++k) {
      const int i = rows[k];
      chunk.push_back(tcs[i].get());
      if (estar < 0 || X.active.at(i, estar) == 0) continue;
      const ExpertControls ctl = expert_controls(row_of(X.rescue, i), row_of(X.active, i), row_of(X.weight, i), estar,
                                                 config_.sampled_controls, config_.control_seed, cases_[i].record.case_id);
      out[k][0] = ctl.sampled;
      out[k][1] = ctl.gate_matched_expert;
      out[k][2] = ctl.gate_matched;
      if (ctl.gate_matched_expert >= 0) {
        equal_norm.push_back({tcs[i].get(), estar, ctl.gate_matched_expert});
        equal_norm_row.push_back(k);
      }
    }
    const auto norms = sweeps_.equal_norm(equal_norm, lstar);
    for (std::size_t j = 0; j < norms.size(); ++j) std::tie(out[equal_norm_row[j]][3], out[equal_norm_row[j]][4]) = norms[j];
    const auto coal = sweeps_.coalitions(chunk, lstar, config_.coalitions);
    for (std::size_t k = 0; k < rows.size(); ++k) out[k].insert(out[k].end(), coal[k].begin(), coal[k].end());
    return out;
  });
  std::vector<std::string> names;
  for (CoalitionSet set : config_.coalitions) names.emplace_back(coalition_name(set));
  results_.set_attr(controls, "columns", std::string("sampled_controls_mean, gate_matched_expert, gate_matched_rescue, "
                                                     "equal_norm_selected, equal_norm_control"));
  results_.set_attr(coalitions, "columns", fmt::format("{}", fmt::join(names, ", ")));
  results_.set_attr(coalitions, "layer", static_cast<std::int64_t>(lstar));
}

// ---- 5. statistics ---------------------------------------------------------------------------
void TracingPipeline::statistics() {
  const int lstar = summary_.selected_layer, estar = summary_.selected_expert;
  const ExpertMatrices& X = experts_.at(lstar);
  const Matrix2& CK = controls_;
  const int S = static_cast<int>(config_.coalitions.size());
  for (auto [group, rows] : {std::pair{layout::kValidation, &validation_}, std::pair{layout::kDiscovery, &discovery_}}) {
    std::vector<double> layer, normalized, expert, spec, spec_gate, spec_norm;
    int active_count = 0;
    for (int i : *rows) {
      const double r = layer_rescue_.at(i, lstar);
      layer.push_back(r);
      normalized.push_back(r / (cases_[i].d_clean - cases_[i].d_noised));
      if (estar < 0) continue;
      expert.push_back(rescue_or_zero(X.rescue, X.active, i, estar));
      if (X.active.at(i, estar) == 0) continue;
      ++active_count;
      spec.push_back(X.rescue.at(i, estar) - CK.at(i, 0));
      spec_gate.push_back(X.rescue.at(i, estar) - CK.at(i, 2));
      spec_norm.push_back(CK.at(i, 3) - CK.at(i, 4));
    }
    results_.write_summary(group, summarize_named("layer_rescue", layer, config_));
    results_.write_summary(group, summarize_named("layer_rescue_normalized", normalized, config_));
    if (estar >= 0) {
      results_.write_summary(group, summarize_named("expert_rescue", expert, config_));
      results_.write_summary(group, summarize_named("specificity", spec, config_));
      results_.write_summary(group, summarize_named("specificity_gate_matched", spec_gate, config_));
      results_.write_summary(group, summarize_named("specificity_equal_norm", spec_norm, config_));
    }
    for (int s = 0; s < S; ++s) {
      std::vector<double> v;
      for (int i : *rows) v.push_back(CK.at(i, 5 + s));
      results_.write_summary(group, summarize_named(std::string("coalition_") + coalition_name(config_.coalitions[s]), v, config_));
    }
    results_.set_attr(group, "selected_layer", static_cast<std::int64_t>(lstar));
    results_.set_attr(group, "selected_expert", static_cast<std::int64_t>(estar));
    results_.set_attr(group, "cases", static_cast<std::int64_t>(rows->size()));
    results_.set_attr(group, "selected_expert_clean_active", static_cast<std::int64_t>(active_count));
  }
}

// ---- 6a. heat maps ---------------------------------------------------------------------------
void TracingPipeline::heatmaps() {
  const int n = std::min<int>(config_.heatmap_cases, static_cast<int>(validation_.size()));
  int tmax = 0;
  for (int j = 0; j < n; ++j) tmax = std::max(tmax, cases_[validation_[j]].prompt.num_tokens());
  const std::vector<int> heat_rows(validation_.begin(), validation_.begin() + n);
  results_.write_ints(std::string(layout::kHeatmap) + "/case_index", heat_rows);
  const std::size_t cells = static_cast<std::size_t>(L_) * tmax;
  const std::string g = layout::kHeatmap;
  executor_.set_row_cost([&](int j) { return static_cast<double>(cases_[heat_rows[j]].prompt.num_tokens()); });
  executor_.run("heat maps", n, {{g + "/hidden", static_cast<int>(cells)}, {g + "/attn", static_cast<int>(cells)},
                                 {g + "/moe", static_cast<int>(cells)}},
                [&](const std::vector<int>& js) {
                  std::vector<int> rows;
                  for (int j : js) rows.push_back(heat_rows[j]);
                  const auto tcs = prepare(cases_, rows, config_.noise_multiplier);
                  const auto maps = sweeps_.heatmaps(chunk_of(tcs));
                  std::vector<std::vector<double>> out;
                  for (std::size_t c = 0; c < js.size(); ++c) {
                    const int T = tcs[c]->prompt.num_tokens();
                    std::vector<double> row(3 * cells, NAN);
                    for (int k = 0; k < 3; ++k)
                      for (int l = 0; l < L_; ++l)
                        for (int t = 0; t < T; ++t) row[k * cells + static_cast<std::size_t>(l) * tmax + t] = maps[c][k][l * T + t];
                    out.push_back(std::move(row));
                  }
                  return out;
                });
  // Each token's decoded text, [cases x tokens] flattened ("" past a prompt's end), for labels;
  // the ids stay in /cases/token_ids.
  std::vector<std::string> texts;
  for (int i : heat_rows) {
    std::vector<std::string> t = builder_.token_texts(cases_[i].prompt.ids);
    t.resize(tmax);
    texts.insert(texts.end(), t.begin(), t.end());
  }
  results_.write_strings(g + "/token_text", texts);
  results_.set_attr(g + "/token_text", "tokens", static_cast<std::int64_t>(tmax));
  for (const char* site : {"hidden", "attn", "moe"}) {  // rows are [layers x tokens], flattened
    results_.set_attr(g + "/" + site, "layers", static_cast<std::int64_t>(L_));
    results_.set_attr(g + "/" + site, "tokens", static_cast<std::int64_t>(tmax));
  }
}

// ---- 6b. robustness --------------------------------------------------------------------------
// Reruns of the case scan and layer sweep under other settings; their per-case rows are stored
// (group/name/layer_rescue), so a resumed run computes only what is missing.
std::pair<int, SummaryRecord> TracingPipeline::rerun_layer_stage(const std::vector<CounterFactRecord>& records,
                                                                 const std::string& group, const std::string& name,
                                                                 double multiplier, FilterKind filter) {
  const ScanResult s = scanner_.scan(records, {multiplier, filter, config_.split_seed}, executor_);
  const int n = static_cast<int>(s.cases.size());
  Matrix2 m(n, L_, NAN);
  if (n > 0) {
    use_case_costs(s.cases);
    m = executor_.run("robustness: " + name, n, {{group + "/" + name + "/layer_rescue", L_}},
                      [&](const std::vector<int>& rows) {
                        return sweeps_.layer_sweep(chunk_of(prepare(s.cases, rows, multiplier)));
                      });
  }
  const std::vector<int> disc = rows_of(s.cases, Split::Discovery), val = rows_of(s.cases, Split::Validation);
  const int best = select_best_column(m, disc, config_.tie_tolerance);
  std::vector<double> v;
  for (int i : val) v.push_back(best >= 0 ? m.at(i, best) : NAN);
  spdlog::info("robustness {}: {} cases, layer {}", name, n, best);
  return {best, summarize_named(name, v, config_)};
}

void TracingPipeline::robustness(const std::vector<CounterFactRecord>& records) {
  if (!config_.robust_noise_multipliers.empty()) {
    const std::string g = std::string(layout::kRobustness) + "/noise_multiplier";
    for (double m : config_.robust_noise_multipliers) {
      auto [best, rec] = rerun_layer_stage(records, g, fmt::format("multiplier_{}", m), m, config_.filter);
      results_.write_summary(g, rec);
      results_.set_attr(g + "/" + rec.name, "selected_layer", static_cast<std::int64_t>(best));
      results_.set_attr(g + "/" + rec.name, "multiplier", m);
    }
  }
  if (config_.robust_relaxed_filter) {
    const std::string g = std::string(layout::kRobustness) + "/filter";
    auto [best, rec] = rerun_layer_stage(records, g, "relaxed_filter", config_.noise_multiplier, FilterKind::Relaxed);
    results_.write_summary(g, rec);
    results_.set_attr(g + "/" + rec.name, "selected_layer", static_cast<std::int64_t>(best));
  }
  if (config_.robust_split_seeds.empty()) return;
  std::vector<double> thresholds = config_.robust_candidate_thresholds;
  if (thresholds.empty()) thresholds.push_back(config_.candidate_threshold);
  const std::string g = std::string(layout::kRobustness) + "/splits";
  const int N = static_cast<int>(cases_.size());
  for (std::uint64_t seed : config_.robust_split_seeds) {
    std::vector<int> disc, val;
    split_halves(N, seed, disc, val);
    const int l = select_best_column(layer_rescue_, disc, config_.tie_tolerance);
    trace_expert_layers({l});
    const ExpertMatrices& M = experts_.at(l);
    for (double th : thresholds) {
      const std::vector<int> cand = expert_candidates(M.active, disc, th);
      const int e = select_expert(M.rescue, M.active, disc, cand);
      std::vector<double> rescue, spec;
      for (int i : val) {
        if (e < 0) break;
        rescue.push_back(rescue_or_zero(M.rescue, M.active, i, e));
        const ExpertControls ctl = expert_controls(row_of(M.rescue, i), row_of(M.active, i), row_of(M.weight, i), e,
                                                   config_.sampled_controls, config_.control_seed, cases_[i].record.case_id);
        if (!std::isnan(ctl.sampled)) spec.push_back(M.rescue.at(i, e) - ctl.sampled);
      }
      const std::string name = fmt::format("seed_{}_threshold_{}", seed, th);
      results_.write_summary(g, summarize_named(name, rescue, config_));
      const SummaryRecord sp = summarize_named(name, spec, config_);
      const std::string o = g + "/" + name;
      results_.set_attr(o, "split_seed", static_cast<std::int64_t>(seed));
      results_.set_attr(o, "threshold", th);
      results_.set_attr(o, "selected_layer", static_cast<std::int64_t>(l));
      results_.set_attr(o, "selected_expert", static_cast<std::int64_t>(e));
      results_.set_attr(o, "specificity_mean", sp.mean);
      results_.set_attr(o, "specificity_ci_low", sp.ci_low);
      results_.set_attr(o, "specificity_ci_high", sp.ci_high);
    }
  }
}

}  // namespace moetrace
