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
  SummaryOptions o;
  o.seed = c.stats_seed;
  o.bootstrap_resamples = static_cast<std::uint32_t>(c.bootstrap_resamples);
  o.sign_flips = static_cast<std::uint32_t>(c.sign_flips);
  return summary_record(name, values, o);
}

// The three per-expert outputs of one traced layer, in the order of an expert row.
std::vector<RowOutput> expert_outputs(int layer, int E) {
  return {{TracingResults::expert_table(layer, ExpertTable::CleanActive), E},
          {TracingResults::expert_table(layer, ExpertTable::CleanWeight), E},
          {TracingResults::expert_table(layer, ExpertTable::Rescue), E}};
}

// A case's cost: its prompt's token rows (chunks are sized by token rows; distributed executors hand
// the longest prompts out first).
RowCost prompt_tokens(const std::vector<UsableCase>& cases) {
  return [&cases](int i) { return static_cast<double>(cases[static_cast<std::size_t>(i)].prompt.num_tokens()); };
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
      scanner_(config, builder, prepared_, sigma_base), sweeps_(config, tracer), out_(results),
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
    out_.flush();
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
  out_.flush();
  if (config_.heatmap_cases > 0) heatmaps();
  robustness(records);
  out_.complete();
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
  if (!out_.has_cases())
    out_.write_cases(table, scan.skipped_cases);
  else if (out_.stored_case_ids() != table.case_id)
    fail_input("{}: the cases of the run being resumed differ from this run's (changed data or code?)", out_.file().path());
  out_.write_scan_counts(scan.records_seen, scan.sigma, scan.skipped);
  out_.flush();
}

// ---- 2. layer sweep --------------------------------------------------------------------------
void TracingPipeline::layer_sweep() {
  layer_rescue_ = executor_.run("layer sweep", static_cast<int>(cases_.size()), prompt_tokens(cases_),
                                {{TracingResults::layer_sweep_table(), L_}}, [&](const std::vector<int>& rows) {
    return sweeps_.layer_sweep(chunk_of(prepare(cases_, rows, config_.noise_multiplier)));
  });
  out_.write_layer_sweep_settings(std::string(site_name(config_.sweep_site)), config_.sweep_window);
  stop_shard_unless_complete("the layer selection");
  const LayerSweepData sweep = choose_layer_on_discovery();
  const int lstar = sweep.selected_layer;
  summary_.selected_layer = lstar;
  out_.write_layer_choice(sweep);
  for (const std::string& w : sweep.warnings) spdlog::warn("layer sweep: {}", w);
  spdlog::info("layer sweep: selected layer {} (discovery mean rescue {:.6g})", lstar, sweep.discovery_mean[lstar]);
  if (sweep.no_rescue && !config_.trace_without_rescue) {
    out_.flush();
    fail_input("the selected layer {} has no rescue (discovery mean {:.3g}, at most {:.0e} of the clean-noised gap "
               "{:.3g}): expert tracing there would trace noise. The layer sweep is saved; set "
               "[experts] trace_without_rescue = true to trace anyway",
               lstar, sweep.discovery_mean[lstar], kZeroRescueTolerance, *sweep.discovery_gap);
  }
}

// l* from the discovery cases' mean rescue per layer (the tie rule, docs/PROTOCOL.md), with its warnings.
LayerSweepData TracingPipeline::choose_layer_on_discovery() const {
  LayerSweepData d;
  d.discovery_mean.resize(L_);
  for (int l = 0; l < L_; ++l) d.discovery_mean[l] = column_mean(layer_rescue_, l, discovery_);
  double gap = 0;
  for (int i : discovery_) gap += (cases_[i].d_clean - cases_[i].d_noised) / static_cast<double>(discovery_.size());
  const LayerChoice choice = choose_layer(d.discovery_mean, gap, config_.tie_tolerance);
  if (choice.layer < 0) fail_input("the layer sweep produced no finite rescue on the discovery cases");
  d.selected_layer = choice.layer;
  d.tied_layers = choice.tied;
  d.tie_tolerance = config_.tie_tolerance;
  d.discovery_gap = gap;
  d.flat = choice.flat;
  d.zero = choice.zero;
  d.no_rescue = choice.no_rescue;
  d.warnings = layer_choice_warnings(choice, d.discovery_mean);  // stored for `moetrace report`
  return d;
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
  const Matrix2 m = executor_.run(label, static_cast<int>(cases_.size()), prompt_tokens(cases_), outputs,
                                  [&](const std::vector<int>& rows) {
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
  out_.write_expert_selection({lstar, estar, candidates, config_.candidate_threshold});
  if (estar < 0)
    spdlog::warn("no expert at layer {} is clean-active in {:.0f}% of discovery cases: no expert selected", lstar,
                 100 * config_.candidate_threshold);
  else
    spdlog::info("expert tracing: selected L{}E{:03d} from {} candidates", lstar, estar, candidates.size());
  if (config_.expert_mode == ExpertMode::AllLayers)
    for (const auto& [layer, M] : experts_) per_layer_expert_summary(layer, M);
}

// Expert e's rescue (0 where not clean-active) and specificity vs sampled controls (where
// clean-active with peers) over `rows`; none when e < 0.
TracingPipeline::ExpertValues TracingPipeline::expert_values(const ExpertMatrices& M, int e,
                                                             const std::vector<int>& rows) const {
  ExpertValues v;
  for (int i : rows) {
    if (e < 0) break;
    v.rescue.push_back(rescue_or_zero(M.rescue, M.active, i, e));
    if (M.active.at(i, e) == 0) continue;
    ++v.clean_active;
    const ExpertControls ctl = expert_controls(row_of(M.rescue, i), row_of(M.active, i), row_of(M.weight, i), e,
                                               config_.sampled_controls, config_.control_seed, cases_[i].record.case_id);
    if (!std::isnan(ctl.sampled)) v.specificity.push_back(M.rescue.at(i, e) - ctl.sampled);
  }
  return v;
}

// mode = "all_layers": the best candidate of every traced layer, chosen on discovery cases by the
// same rule as e*, with its validation rescue and specificity (vs sampled controls), for the
// report's per-layer expert table.
void TracingPipeline::per_layer_expert_summary(int layer, const ExpertMatrices& M) {
  const std::vector<int> cand = expert_candidates(M.active, discovery_, config_.candidate_threshold);
  const int e = select_expert(M.rescue, M.active, discovery_, cand);
  const ExpertValues v = expert_values(M, e, validation_);
  LayerExpertRow row;
  row.layer = layer;
  row.best_expert = e;
  row.candidates = static_cast<std::int64_t>(cand.size());
  row.clean_active = v.clean_active;
  row.cases = static_cast<std::int64_t>(validation_.size());
  row.rescue = summarize_named(measure::kExpertRescue, v.rescue, config_);
  row.specificity = summarize_named(measure::kSpecificity, v.specificity, config_);
  out_.write_layer_expert(row);
}

// ---- 4. controls and coalitions --------------------------------------------------------------
void TracingPipeline::controls_and_coalitions() {
  const int S = static_cast<int>(config_.coalitions.size());
  controls_ = executor_.run("controls and coalitions", static_cast<int>(cases_.size()), prompt_tokens(cases_),
                            {{TracingResults::controls_table(), kControlColumns}, {TracingResults::coalitions_table(), S}},
                            [&](const std::vector<int>& rows) { return control_rows(rows); });
  std::vector<std::string> names;
  for (CoalitionSet set : config_.coalitions) names.emplace_back(coalition_name(set));
  out_.write_control_columns(names, summary_.selected_layer);
}

// The ControlColumn values at (l*, e*), then one rescue per coalition. Cases whose e* is
// clean-active need noised runs recorded in full at layer l* (equal-norm controls): a kept case
// gets them by re-recording its noised runs from l* on, not by being prepared again.
std::vector<std::vector<double>> TracingPipeline::control_rows(const std::vector<int>& rows) {
  const int lstar = summary_.selected_layer, estar = summary_.selected_expert;
  const ExpertMatrices& X = experts_.at(lstar);
  std::vector<int> full, base;
  for (int i : rows) (estar >= 0 && X.active.at(i, estar) != 0 ? full : base).push_back(i);
  std::map<int, std::shared_ptr<const TracedCase>> tcs;
  for (auto [list, level] : {std::pair{&full, RecordLevel::Full}, std::pair{&base, RecordLevel::Base}}) {
    const auto p = prepare(cases_, *list, config_.noise_multiplier, level, lstar);
    for (std::size_t k = 0; k < list->size(); ++k) tcs[(*list)[k]] = p[k];
  }
  std::vector<std::vector<double>> out(rows.size(), std::vector<double>(kControlColumns, NAN));
  std::vector<EqualNormRequest> equal_norm;
  std::vector<std::size_t> equal_norm_row;
  Chunk chunk;
  for (std::size_t k = 0; k < rows.size(); ++k) {
    const int i = rows[k];
    chunk.push_back(tcs[i].get());
    if (estar < 0 || X.active.at(i, estar) == 0) continue;
    const ExpertControls ctl = expert_controls(row_of(X.rescue, i), row_of(X.active, i), row_of(X.weight, i), estar,
                                               config_.sampled_controls, config_.control_seed, cases_[i].record.case_id);
    out[k][kControlSampled] = ctl.sampled;
    out[k][kControlGateMatchedExpert] = ctl.gate_matched_expert;
    out[k][kControlGateMatched] = ctl.gate_matched;
    if (ctl.gate_matched_expert >= 0) {
      equal_norm.push_back({tcs[i].get(), estar, ctl.gate_matched_expert});
      equal_norm_row.push_back(k);
    }
  }
  const auto norms = sweeps_.equal_norm(equal_norm, lstar);
  for (std::size_t j = 0; j < norms.size(); ++j)
    std::tie(out[equal_norm_row[j]][kControlEqualNormSelected], out[equal_norm_row[j]][kControlEqualNormControl]) = norms[j];
  const auto coal = sweeps_.coalitions(chunk, lstar, config_.coalitions);
  for (std::size_t k = 0; k < rows.size(); ++k) out[k].insert(out[k].end(), coal[k].begin(), coal[k].end());
  return out;
}

// ---- 5. statistics ---------------------------------------------------------------------------
void TracingPipeline::statistics() {
  out_.write_split_statistics(split_statistics(Split::Validation, validation_));
  out_.write_split_statistics(split_statistics(Split::Discovery, discovery_));
}

SplitStatistics TracingPipeline::split_statistics(Split split, const std::vector<int>& rows) const {
  const int lstar = summary_.selected_layer, estar = summary_.selected_expert;
  const ExpertMatrices& X = experts_.at(lstar);
  const Matrix2& CK = controls_;
  std::vector<double> layer, normalized, expert, spec, spec_gate, spec_norm;
  int active_count = 0;
  for (int i : rows) {
    const double r = layer_rescue_.at(i, lstar);
    layer.push_back(r);
    normalized.push_back(r / (cases_[i].d_clean - cases_[i].d_noised));
    if (estar < 0) continue;
    expert.push_back(rescue_or_zero(X.rescue, X.active, i, estar));
    if (X.active.at(i, estar) == 0) continue;
    ++active_count;
    spec.push_back(X.rescue.at(i, estar) - CK.at(i, kControlSampled));
    spec_gate.push_back(X.rescue.at(i, estar) - CK.at(i, kControlGateMatched));
    spec_norm.push_back(CK.at(i, kControlEqualNormSelected) - CK.at(i, kControlEqualNormControl));
  }
  SplitStatistics s{static_cast<int>(split), {}, lstar, estar, static_cast<std::int64_t>(rows.size()), active_count};
  auto add = [&](const std::string& name, const std::vector<double>& v) { s.summaries.push_back(summarize_named(name, v, config_)); };
  add(measure::kLayerRescue, layer);
  add(measure::kLayerRescueNormalized, normalized);
  if (estar >= 0) {
    add(measure::kExpertRescue, expert);
    add(measure::kSpecificity, spec);
    add(measure::kSpecificityGateMatched, spec_gate);
    add(measure::kSpecificityEqualNorm, spec_norm);
  }
  for (std::size_t c = 0; c < config_.coalitions.size(); ++c) {
    std::vector<double> v;
    for (int i : rows) v.push_back(CK.at(i, kControlColumns + static_cast<int>(c)));
    add(measure::coalition(coalition_name(config_.coalitions[c])), v);
  }
  return s;
}

// ---- 6a. heat maps ---------------------------------------------------------------------------
void TracingPipeline::heatmaps() {
  const int n = std::min<int>(config_.heatmap_cases, static_cast<int>(validation_.size()));
  int tmax = 0;
  for (int j = 0; j < n; ++j) tmax = std::max(tmax, cases_[validation_[j]].prompt.num_tokens());
  const std::vector<int> heat_rows(validation_.begin(), validation_.begin() + n);
  out_.write_heatmap_cases(heat_rows);
  const std::size_t cells = static_cast<std::size_t>(L_) * tmax;
  std::vector<RowOutput> outputs;
  for (const char* site : kHeatmapSites) outputs.push_back({TracingResults::heatmap_table(site), static_cast<int>(cells)});
  const RowCost cost = [&](int j) { return static_cast<double>(cases_[heat_rows[j]].prompt.num_tokens()); };
  executor_.run("heat maps", n, cost, outputs, [&](const std::vector<int>& js) {
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
  // the ids stay in the case table.
  std::vector<std::string> texts;
  for (int i : heat_rows) {
    std::vector<std::string> t = builder_.token_texts(cases_[i].prompt.ids);
    t.resize(tmax);
    texts.insert(texts.end(), t.begin(), t.end());
  }
  out_.write_heatmap_labels(texts, L_, tmax);
}

// ---- 6b. robustness --------------------------------------------------------------------------
// Reruns of the case scan and layer sweep under other settings; their per-case rows are stored
// (one table per variant), so a resumed run computes only what is missing.
RobustnessRow TracingPipeline::rerun_layer_stage(const std::vector<CounterFactRecord>& records, RobustnessGroup group,
                                                 const std::string& name, double multiplier, FilterKind filter) {
  const ScanResult s = scanner_.scan(records, {multiplier, filter, config_.split_seed}, executor_);
  const int n = static_cast<int>(s.cases.size());
  Matrix2 m(n, L_, NAN);
  if (n > 0)
    m = executor_.run("robustness: " + name, n, prompt_tokens(s.cases), {{TracingResults::robustness_table(group, name), L_}},
                      [&](const std::vector<int>& rows) {
                        return sweeps_.layer_sweep(chunk_of(prepare(s.cases, rows, multiplier)));
                      });
  const std::vector<int> disc = rows_of(s.cases, Split::Discovery), val = rows_of(s.cases, Split::Validation);
  const int best = select_best_column(m, disc, config_.tie_tolerance);
  std::vector<double> v;
  for (int i : val) v.push_back(best >= 0 ? m.at(i, best) : NAN);
  spdlog::info("robustness {}: {} cases, layer {}", name, n, best);
  RobustnessRow row;
  row.group = group;
  row.rescue = summarize_named(name, v, config_);
  row.selected_layer = best;
  return row;
}

void TracingPipeline::robustness(const std::vector<CounterFactRecord>& records) {
  for (double m : config_.robust_noise_multipliers) {
    RobustnessRow row = rerun_layer_stage(records, RobustnessGroup::NoiseMultiplier, fmt::format("multiplier_{}", m), m,
                                          config_.filter);
    row.multiplier = m;
    out_.write_robustness(row);
  }
  if (config_.robust_relaxed_filter)
    out_.write_robustness(
        rerun_layer_stage(records, RobustnessGroup::Filter, "relaxed_filter", config_.noise_multiplier, FilterKind::Relaxed));
  for (std::uint64_t seed : config_.robust_split_seeds) robust_split(seed);
}

// Another discovery / validation split of the same cases: l* and e* chosen again on its discovery
// half (for every candidate threshold), rescue and specificity on its validation half.
void TracingPipeline::robust_split(std::uint64_t seed) {
  std::vector<double> thresholds = config_.robust_candidate_thresholds;
  if (thresholds.empty()) thresholds.push_back(config_.candidate_threshold);
  std::vector<int> disc, val;
  split_halves(static_cast<int>(cases_.size()), seed, disc, val);
  const int l = select_best_column(layer_rescue_, disc, config_.tie_tolerance);
  trace_expert_layers({l});
  const ExpertMatrices& M = experts_.at(l);
  for (double th : thresholds) {
    const int e = select_expert(M.rescue, M.active, disc, expert_candidates(M.active, disc, th));
    const ExpertValues v = expert_values(M, e, val);
    const std::string name = fmt::format("seed_{}_threshold_{}", seed, th);
    const SummaryRecord sp = summarize_named(name, v.specificity, config_);
    RobustnessRow row;
    row.group = RobustnessGroup::Splits;
    row.rescue = summarize_named(name, v.rescue, config_);
    row.split_seed = static_cast<std::int64_t>(seed);
    row.threshold = th;
    row.selected_layer = l;
    row.selected_expert = e;
    row.specificity_mean = sp.mean;
    row.specificity_ci_low = sp.ci_low;
    row.specificity_ci_high = sp.ci_high;
    out_.write_robustness(row);
  }
}

}  // namespace moetrace
