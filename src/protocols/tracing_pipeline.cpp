#include "protocols/tracing_pipeline.h"

#include <algorithm>
#include <cmath>
#include <map>
#include <set>

#include "protocols/selection.h"
#include "protocols/statistics.h"
#include "protocols/sweeps.h"
#include "util/error.h"
#include "util/logging.h"
#include "util/progress.h"
#include "util/stop_signal.h"

namespace moetrace {
namespace {

const ModelConfig& model_config(CaseTracer& t) { return t.engine().model().config; }

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

Matrix2 to_matrix(const h5::Array<double>& a) {
  Matrix2 m;
  m.rows = static_cast<int>(a.shape[0]);
  m.cols = a.shape.size() > 1 ? static_cast<int>(a.numel() / a.shape[0]) : 1;
  m.v = a.data;
  return m;
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

}  // namespace

TracingPipeline::TracingPipeline(const RunConfig& config, CaseTracer& tracer, const CaseBuilder& builder,
                                 double sigma_base, ResultsFile& results)
    : config_(config), tracer_(tracer), scanner_(config, tracer, builder, sigma_base), results_(results) {}

PipelineSummary TracingPipeline::run(const std::vector<CounterFactRecord>& records) {
  const ModelConfig& mc = model_config(tracer_);
  const int L = mc.num_layers, E = mc.num_experts;
  Sweeps sweeps(config_, tracer_);
  PipelineSummary summary;
  // Between cases: save on schedule, and stop cleanly (everything written so far saved) on a signal.
  auto checkpoint = [&] {
    if (stop_requested()) {
      results_.flush();
      throw StopRequested();
    }
    results_.flush_if_due(config_.checkpoint_every_s);
  };

  // ---- 1. cases ------------------------------------------------------------------------------
  const ScanResult scan = scanner_.scan(records, {config_.noise_multiplier, config_.filter, config_.split_seed});
  const std::vector<UsableCase>& cases = scan.cases;
  const int N = static_cast<int>(cases.size());
  summary.usable_cases = N;
  const std::vector<int> discovery = rows_of(cases, Split::Discovery), validation = rows_of(cases, Split::Validation);
  spdlog::info("{} usable cases ({} discovery, {} validation) from {} records; skipped: {}", N, discovery.size(),
               validation.size(), scan.records_seen, scan.skipped.empty() ? std::string("none") : [&] {
                 std::string s;
                 for (const auto& [r, c] : scan.skipped) s += fmt::format("{}{} {}", s.empty() ? "" : ", ", c, r);
                 return s;
               }());
  if (N < 2) fail_input("only {} usable cases: the protocol needs at least one discovery and one validation case", N);
  const CaseTable table = case_table(cases);
  if (results_.has(layout::kCases)) {
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
  for (const auto& [reason, count] : scan.skipped)
    results_.set_attr(layout::kSkipped, reason, static_cast<std::int64_t>(count));
  results_.flush();

  // ---- 2. layer sweep --------------------------------------------------------------------------
  const std::string sweep = std::string(layout::kLayerSweep) + "/rescue";
  results_.ensure_matrix(sweep, {static_cast<std::size_t>(N), static_cast<std::size_t>(L)});
  results_.set_attr(sweep, "site", config_.sweep_site);
  results_.set_attr(sweep, "window", static_cast<std::int64_t>(config_.sweep_window));
  {
    const std::vector<bool> done = results_.done_rows(sweep);
    ProgressMeter progress("layer sweep", "cases", N, config_.progress_every_s);
    for (int i = 0; i < N; ++i) {
      if (!done[i]) {
        const TracedCase tc = scanner_.prepare(cases[i], config_.noise_multiplier);
        results_.write_row(sweep, i, sweeps.layer_sweep(tc));
        checkpoint();
      }
      progress.update(i + 1);
    }
    progress.finish();
  }
  const Matrix2 layer_rescue = to_matrix(results_.read_matrix(sweep));
  const int lstar = select_best_column(layer_rescue, discovery);
  if (lstar < 0) fail_input("layer sweep produced no finite rescue on the discovery cases");
  summary.selected_layer = lstar;
  std::vector<double> discovery_means(L);
  for (int l = 0; l < L; ++l) discovery_means[l] = column_mean(layer_rescue, l, discovery);
  results_.write_vector(std::string(layout::kLayerSweep) + "/discovery_mean", discovery_means);
  results_.set_attr(layout::kLayerSweep, "selected_layer", static_cast<std::int64_t>(lstar));
  spdlog::info("layer sweep: selected layer {} (discovery mean rescue {:.3f})", lstar, discovery_means[lstar]);

  // ---- 3. expert tracing -----------------------------------------------------------------------
  std::vector<int> expert_layers{lstar};
  if (config_.expert_mode == ExpertMode::AllLayers) {
    expert_layers.resize(L);
    for (int l = 0; l < L; ++l) expert_layers[l] = l;
  }
  auto trace_expert_layers = [&](const std::vector<int>& layers) {
    std::vector<int> todo;
    for (int l : layers) {
      const std::string g = expert_group(l);
      for (const char* m : {"/rescue", "/clean_active", "/clean_weight"})
        results_.ensure_matrix(g + m, {static_cast<std::size_t>(N), static_cast<std::size_t>(E)});
      todo.push_back(l);
    }
    ProgressMeter progress(fmt::format("expert tracing ({} layer{})", layers.size(), layers.size() > 1 ? "s" : ""),
                           "cases", N, config_.progress_every_s);
    std::map<int, std::vector<bool>> done;
    for (int l : todo) done[l] = results_.done_rows(expert_group(l) + "/rescue");
    for (int i = 0; i < N; ++i) {
      bool any = false;
      for (int l : todo) any |= !done[l][i];
      if (any) {
        const TracedCase tc = scanner_.prepare(cases[i], config_.noise_multiplier);
        for (int l : todo) {
          if (done[l][i]) continue;
          const ExpertRow row = sweeps.expert_layer(tc, l);
          const std::string g = expert_group(l);
          results_.write_row(g + "/clean_active", i, row.clean_active);
          results_.write_row(g + "/clean_weight", i, row.clean_weight);
          results_.write_row(g + "/rescue", i, row.rescue);  // last: its done flag marks the layer done
        }
        checkpoint();
      }
      progress.update(i + 1);
    }
    progress.finish();
    results_.flush();
  };
  trace_expert_layers(expert_layers);

  struct ExpertMatrices {
    Matrix2 rescue, active, weight;
  };
  auto load_layer = [&](int l) {
    const std::string g = expert_group(l);
    return ExpertMatrices{to_matrix(results_.read_matrix(g + "/rescue")), to_matrix(results_.read_matrix(g + "/clean_active")),
                          to_matrix(results_.read_matrix(g + "/clean_weight"))};
  };
  auto row = [](const Matrix2& m, int r) {
    return std::vector<double>(m.v.begin() + static_cast<std::ptrdiff_t>(r) * m.cols,
                               m.v.begin() + static_cast<std::ptrdiff_t>(r + 1) * m.cols);
  };
  const ExpertMatrices X = load_layer(lstar);
  const std::vector<int> candidates = expert_candidates(X.active, discovery, config_.candidate_threshold);
  const int estar = select_expert(X.rescue, X.active, discovery, candidates);
  summary.selected_expert = estar;
  results_.write_ints(std::string(layout::kExperts) + "/candidates", candidates);
  results_.set_attr(layout::kExperts, "selected_layer", static_cast<std::int64_t>(lstar));
  results_.set_attr(layout::kExperts, "selected_expert", static_cast<std::int64_t>(estar));
  results_.set_attr(layout::kExperts, "candidate_threshold", config_.candidate_threshold);
  if (estar < 0)
    spdlog::warn("no expert at layer {} is clean-active in {:.0f}% of discovery cases: no expert selected", lstar,
                 100 * config_.candidate_threshold);
  else
    spdlog::info("expert tracing: selected L{}E{:03d} from {} candidates", lstar, estar, candidates.size());

  // ---- 4. controls and coalitions --------------------------------------------------------------
  // values per case: sampled controls, gate-matched expert, its rescue, equal-norm e*, equal-norm control
  const std::string controls = std::string(layout::kControls) + "/values";
  const std::string coalitions = std::string(layout::kCoalitions) + "/rescue";
  results_.ensure_matrix(controls, {static_cast<std::size_t>(N), 5});
  results_.set_attr(controls, "columns",
                    std::string("sampled_controls_mean, gate_matched_expert, gate_matched_rescue, "
                                "equal_norm_selected, equal_norm_control"));
  results_.ensure_matrix(coalitions, {static_cast<std::size_t>(N), config_.coalitions.size()});
  results_.set_attr(coalitions, "columns", fmt::format("{}", fmt::join(config_.coalitions, ", ")));
  results_.set_attr(coalitions, "layer", static_cast<std::int64_t>(lstar));
  {
    const std::vector<bool> done_c = results_.done_rows(controls), done_k = results_.done_rows(coalitions);
    ProgressMeter progress("controls and coalitions", "cases", N, config_.progress_every_s);
    for (int i = 0; i < N; ++i) {
      if (!done_c[i] || !done_k[i]) {
        const TracedCase tc = scanner_.prepare(cases[i], config_.noise_multiplier, RecordLevel::Full);
        std::vector<double> c(5, NAN);
        if (estar >= 0) {
          const ExpertControls ctl = expert_controls(row(X.rescue, i), row(X.active, i), row(X.weight, i), estar,
                                                     config_.sampled_controls, config_.control_seed, cases[i].record.case_id);
          c[0] = ctl.sampled;
          c[1] = ctl.gate_matched_expert;
          c[2] = ctl.gate_matched;
          if (ctl.gate_matched_expert >= 0) std::tie(c[3], c[4]) = sweeps.equal_norm(tc, lstar, estar, ctl.gate_matched_expert);
        }
        results_.write_row(controls, i, c);
        std::vector<double> k;
        for (const std::string& set : config_.coalitions) k.push_back(sweeps.coalition(tc, lstar, set));
        results_.write_row(coalitions, i, k);
        checkpoint();
      }
      progress.update(i + 1);
    }
    progress.finish();
  }
  const Matrix2 C = to_matrix(results_.read_matrix(controls)), K = to_matrix(results_.read_matrix(coalitions));

  // ---- 5. statistics ---------------------------------------------------------------------------
  for (auto [group, rows] : {std::pair{layout::kValidation, &validation}, std::pair{layout::kDiscovery, &discovery}}) {
    std::vector<double> layer, normalized, expert, spec, spec_gate, spec_norm;
    int active_count = 0;
    for (int i : *rows) {
      const double r = layer_rescue.at(i, lstar);
      layer.push_back(r);
      normalized.push_back(r / (cases[i].d_clean - cases[i].d_noised));
      if (estar < 0) continue;
      expert.push_back(rescue_or_zero(X.rescue, X.active, i, estar));
      if (X.active.at(i, estar) == 0) continue;
      ++active_count;
      spec.push_back(X.rescue.at(i, estar) - C.at(i, 0));
      spec_gate.push_back(X.rescue.at(i, estar) - C.at(i, 2));
      spec_norm.push_back(C.at(i, 3) - C.at(i, 4));
    }
    results_.write_summary(group, summarize_named("layer_rescue", layer, config_));
    results_.write_summary(group, summarize_named("layer_rescue_normalized", normalized, config_));
    if (estar >= 0) {
      results_.write_summary(group, summarize_named("expert_rescue", expert, config_));
      results_.write_summary(group, summarize_named("specificity", spec, config_));
      results_.write_summary(group, summarize_named("specificity_gate_matched", spec_gate, config_));
      results_.write_summary(group, summarize_named("specificity_equal_norm", spec_norm, config_));
    }
    for (std::size_t s = 0; s < config_.coalitions.size(); ++s) {
      std::vector<double> v;
      for (int i : *rows) v.push_back(K.at(i, static_cast<int>(s)));
      results_.write_summary(group, summarize_named("coalition_" + config_.coalitions[s], v, config_));
    }
    results_.set_attr(group, "selected_layer", static_cast<std::int64_t>(lstar));
    results_.set_attr(group, "selected_expert", static_cast<std::int64_t>(estar));
    results_.set_attr(group, "cases", static_cast<std::int64_t>(rows->size()));
    results_.set_attr(group, "selected_expert_clean_active", static_cast<std::int64_t>(active_count));
  }
  results_.flush();

  // ---- 6a. heat maps ---------------------------------------------------------------------------
  if (config_.heatmap_cases > 0) {
    const int n = std::min<int>(config_.heatmap_cases, static_cast<int>(validation.size()));
    int tmax = 0;
    for (int j = 0; j < n; ++j) tmax = std::max(tmax, cases[validation[j]].prompt.num_tokens());
    std::vector<int> heat_rows(validation.begin(), validation.begin() + n);
    results_.write_ints(std::string(layout::kHeatmap) + "/case_index", heat_rows);
    ProgressMeter progress("heat maps", "cases", n, config_.progress_every_s);
    for (auto [name, site] : {std::pair{"hidden", Site::Hidden}, std::pair{"attn", Site::Attn}, std::pair{"moe", Site::Moe}}) {
      const std::string ds = std::string(layout::kHeatmap) + "/" + name;
      results_.ensure_matrix(ds, {static_cast<std::size_t>(n), static_cast<std::size_t>(L), static_cast<std::size_t>(tmax)});
    }
    for (int j = 0; j < n; ++j) {
      const TracedCase tc = scanner_.prepare(cases[heat_rows[j]], config_.noise_multiplier);
      const int T = tc.prompt.num_tokens();
      for (auto [name, site] : {std::pair{"hidden", Site::Hidden}, std::pair{"attn", Site::Attn}, std::pair{"moe", Site::Moe}}) {
        const std::vector<double> h = sweeps.heatmap(tc, site);
        std::vector<double> padded(static_cast<std::size_t>(L) * tmax, NAN);
        for (int l = 0; l < L; ++l)
          for (int t = 0; t < T; ++t) padded[static_cast<std::size_t>(l) * tmax + t] = h[static_cast<std::size_t>(l) * T + t];
        results_.write_row(std::string(layout::kHeatmap) + "/" + name, j, padded);
      }
      checkpoint();
      progress.update(j + 1);
    }
    progress.finish();
  }

  // ---- 6b. robustness --------------------------------------------------------------------------
  auto rerun_layer_stage = [&](const std::string& label, double multiplier, FilterKind filter) {
    const ScanResult s = scanner_.scan(records, {multiplier, filter, config_.split_seed});
    const int n = static_cast<int>(s.cases.size());
    Matrix2 m(n, L, NAN);
    ProgressMeter progress("robustness: " + label, "cases", n, config_.progress_every_s);
    for (int i = 0; i < n; ++i) {
      const std::vector<double> r = sweeps.layer_sweep(scanner_.prepare(s.cases[i], multiplier));
      for (int l = 0; l < L; ++l) m.at(i, l) = r[l];
      checkpoint();  // robustness reruns are not stored per case: a stopped one is redone on resume
      progress.update(i + 1);
    }
    progress.finish();
    const std::vector<int> disc = rows_of(s.cases, Split::Discovery), val = rows_of(s.cases, Split::Validation);
    const int best = select_best_column(m, disc);
    std::vector<double> v;
    for (int i : val) v.push_back(best >= 0 ? m.at(i, best) : NAN);
    SummaryRecord rec = summarize_named(label, v, config_);
    return std::pair{best, rec};
  };
  if (!config_.robust_noise_multipliers.empty()) {
    std::vector<double> layer;
    const std::string g = std::string(layout::kRobustness) + "/noise_multiplier";
    for (double m : config_.robust_noise_multipliers) {
      auto [best, rec] = rerun_layer_stage(fmt::format("multiplier_{}", m), m, config_.filter);
      results_.write_summary(g, rec);
      results_.set_attr(g + "/" + rec.name, "selected_layer", static_cast<std::int64_t>(best));
      results_.set_attr(g + "/" + rec.name, "multiplier", m);
    }
  }
  if (config_.robust_relaxed_filter) {
    auto [best, rec] = rerun_layer_stage("relaxed_filter", config_.noise_multiplier, FilterKind::Relaxed);
    const std::string g = std::string(layout::kRobustness) + "/filter";
    results_.write_summary(g, rec);
    results_.set_attr(g + "/" + rec.name, "selected_layer", static_cast<std::int64_t>(best));
  }
  if (!config_.robust_split_seeds.empty()) {
    std::vector<double> thresholds = config_.robust_candidate_thresholds;
    if (thresholds.empty()) thresholds.push_back(config_.candidate_threshold);
    const std::string g = std::string(layout::kRobustness) + "/splits";
    for (std::uint64_t seed : config_.robust_split_seeds) {
      std::vector<int> disc, val;
      split_halves(N, seed, disc, val);
      const int l = select_best_column(layer_rescue, disc);
      trace_expert_layers({l});  // cached in the file: only missing layers are computed
      const ExpertMatrices M = load_layer(l);
      for (double th : thresholds) {
        const std::vector<int> cand = expert_candidates(M.active, disc, th);
        const int e = select_expert(M.rescue, M.active, disc, cand);
        std::vector<double> rescue, spec;
        for (int i : val) {
          if (e < 0) break;
          rescue.push_back(rescue_or_zero(M.rescue, M.active, i, e));
          const ExpertControls ctl = expert_controls(row(M.rescue, i), row(M.active, i), row(M.weight, i), e,
                                                     config_.sampled_controls, config_.control_seed, cases[i].record.case_id);
          if (!std::isnan(ctl.sampled)) spec.push_back(M.rescue.at(i, e) - ctl.sampled);
        }
        const std::string name = fmt::format("seed_{}_threshold_{}", seed, th);
        SummaryRecord r = summarize_named(name, rescue, config_);
        results_.write_summary(g, r);
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
  results_.set_attr(layout::kProvenance, "completed", static_cast<std::int64_t>(1));
  results_.flush();
  return summary;
}

}  // namespace moetrace
