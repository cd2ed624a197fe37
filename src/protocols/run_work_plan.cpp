#include "protocols/run_work_plan.h"

#include <algorithm>
#include <cmath>
#include <functional>
#include <map>
#include <optional>
#include <set>

#include <fmt/format.h>

#include "engine/case_tracer.h"
#include "protocols/prepared_cases.h"
#include "protocols/row_executor.h"
#include "protocols/selection.h"
#include "protocols/sweeps.h"
#include "util/error.h"

namespace moetrace {
namespace {

// A usable case as the planner sees it: its id and prompt (token ids and subject span).
struct PlannedCase {
  std::int64_t id = 0;
  Prompt prompt;
  Split split = Split::Discovery;
};

// A stream of an engine call: its token rows and the layer it starts at.
struct StreamShape {
  int rows = 0, start_layer = 0;
};

using Key = std::pair<std::int64_t, double>;  // case id, noise multiplier (PreparedCases' key)

class RunWorkPlanner {
 public:
  RunWorkPlanner(const RunConfig& c, const ModelConfig& mc, const std::vector<CounterFactRecord>& records,
                 const CaseBuilder& builder, const RunOutcome* outcome, const RunWorkAssumptions& a)
      : c_(c), mc_(mc), L_(mc.num_layers), records_(records), builder_(builder), outcome_(outcome), assume_(a),
        order_(scan_order(c, records)), budget_(static_cast<std::size_t>(c.prepared_cache_mib) << 20) {}

  RunWorkPlan run();

 private:
  // ---- stages (TracingPipeline's, in its order) ----
  std::vector<PlannedCase> scan(double multiplier, FilterKind filter);
  void layer_sweep(const std::vector<PlannedCase>& cases, double multiplier);
  void trace_layers(const std::vector<PlannedCase>& cases, const std::vector<int>& layers);
  void controls(const std::vector<PlannedCase>& cases);
  void heatmaps(const std::vector<PlannedCase>& cases);
  void robustness();

  using ChunkWork = std::function<void(const std::vector<const PlannedCase*>&)>;
  void per_chunk(const std::vector<PlannedCase>& cases, const ChunkWork& f);
  static std::size_t index_of(const std::vector<PlannedCase>& cases, const PlannedCase* pc) {
    return static_cast<std::size_t>(pc - cases.data());
  }

  // ---- the engine and the prepared-case cache, counted ----
  StageProfile& begin_stage(const std::string& name);
  std::vector<std::vector<int>> chunks(const std::vector<PlannedCase>& cases, std::vector<int> rows);
  void calls(const std::vector<StreamShape>& streams, bool prepare);
  void prepare(const std::vector<const PlannedCase*>& cases, double multiplier, RecordLevel level, int full_from = 0);
  void keep(const Key& key, std::size_t bytes, int full_from);
  void evaluate(const std::vector<std::pair<const PlannedCase*, std::vector<Condition>>>& runs);

  // ---- decisions: the results file's, or assumed ----
  std::optional<bool> stored_pass(double multiplier, FilterKind filter, std::size_t position) const;
  bool assumed_pass();
  int selected_layer();
  bool expert_active(std::size_t i);
  bool has_gate_matched(std::size_t i);
  int split_layer(std::uint64_t seed, std::size_t index);
  void assume(const std::string& what);

  const RunConfig& c_;
  const ModelConfig& mc_;
  const int L_;
  const std::vector<CounterFactRecord>& records_;
  const CaseBuilder& builder_;
  const RunOutcome* outcome_;
  const RunWorkAssumptions assume_;
  const ScanOrder order_;
  std::map<std::size_t, BuiltCase> built_;        // scan position -> its case, built once
  std::map<double, std::set<std::size_t>> scanned_;  // scan tables: positions computed
  std::set<int> traced_;                          // expert tables computed
  std::map<Key, std::pair<std::size_t, int>> kept_;  // bytes, noised runs full from (-1: base)
  std::size_t budget_, used_ = 0, peak_cache_ = 0, peak_live_ = 0;
  int max_call_rows_ = 0;
  int heatmap_cases_ = 0, heatmap_tokens_ = 0;
  std::vector<std::int64_t> robustness_cases_;
  std::uint64_t buildable_seen_ = 0;              // for the assumed keep rate
  std::vector<PlannedCase> cases_;
  std::vector<StageProfile> stages_;
  std::set<std::string> assumed_;                 // assumptions behind the counts so far
};

RunWorkPlan RunWorkPlanner::run() {
  begin_stage("case scan");
  cases_ = scan(c_.noise_multiplier, c_.filter);
  stages_.back().cases = static_cast<std::int64_t>(cases_.size());
  if (cases_.empty()) fail_input("the plan finds no usable case (no record can be built into a prompt)");
  begin_stage("layer sweep");
  layer_sweep(cases_, c_.noise_multiplier);
  std::vector<int> layers;
  if (c_.expert_mode == ExpertMode::AllLayers)
    for (int l = 0; l < L_; ++l) layers.push_back(l);
  else
    layers.push_back(selected_layer());
  begin_stage(layers.size() == 1 ? fmt::format("expert tracing (layer {})", layers[0]) : "expert tracing (all layers)");
  trace_layers(cases_, layers);
  begin_stage("controls and coalitions");
  controls(cases_);
  if (c_.heatmap_cases > 0) {
    begin_stage("heat maps");
    heatmaps(cases_);
  }
  robustness();
  RunWorkPlan out{{}, peak_cache_, peak_live_, max_call_rows_};
  out.scan_records = static_cast<std::int64_t>(order_.order.size());
  out.usable_cases = static_cast<std::int64_t>(cases_.size());
  double tokens = 0;
  for (const PlannedCase& pc : cases_) tokens += pc.prompt.num_tokens();
  if (!cases_.empty()) out.mean_prompt_tokens = tokens / static_cast<double>(cases_.size());
  out.traced_layers = static_cast<int>(traced_.size());
  out.heatmap_cases = heatmap_cases_;
  out.heatmap_tokens = heatmap_tokens_;
  out.robustness_cases = robustness_cases_;
  for (StageProfile& s : stages_)
    if (s.work.engine_calls > 0 || s.cases > 0) out.stages.push_back(std::move(s));
  return out;
}

StageProfile& RunWorkPlanner::begin_stage(const std::string& name) {
  StageProfile s;
  s.name = name;
  stages_.push_back(std::move(s));
  const std::set<std::string> before = assumed_;  // a later stage works on the cases the scan assumed
  for (const std::string& a : before) assume(a);
  return stages_.back();
}

void RunWorkPlanner::assume(const std::string& what) {
  assumed_.insert(what);
  StageProfile& s = stages_.back();
  s.estimate = true;
  if (s.note.find(what) == std::string::npos) s.note += (s.note.empty() ? "" : "; ") + what;
}

// ---- 1. the case scan (CaseScanner::scan) -------------------------------------------------------
std::vector<PlannedCase> RunWorkPlanner::scan(double multiplier, FilterKind filter) {
  const std::size_t target = scan_target(c_, order_);
  std::set<std::size_t>& scanned = scanned_[multiplier];
  std::vector<PlannedCase> cases;
  for (std::size_t pos = 0; pos < order_.order.size() && cases.size() < target;) {
    const std::size_t n = scan_round(order_.order.size() - pos, target - cases.size());
    std::vector<PlannedCase> round;
    std::vector<int> to_run;
    for (std::size_t j = pos; j < pos + n; ++j) {
      auto it = built_.find(j);
      if (it == built_.end()) it = built_.emplace(j, builder_.build(records_[order_.order[j]])).first;
      const CounterFactRecord& rec = records_[order_.order[j]];
      if (!it->second.skip_reason.empty() && order_.explicit_ids)
        fail_input("case {} of the explicit case list cannot be used: {}", rec.case_id, it->second.skip_reason);
      round.push_back({rec.case_id, it->second.prompt, order_.explicit_ids ? order_.fixed_split[j] : Split::Discovery});
      if (it->second.skip_reason.empty() && !scanned.count(j)) to_run.push_back(static_cast<int>(j - pos));
    }
    for (const std::vector<int>& chunk : chunks(round, to_run)) {
      std::vector<const PlannedCase*> list;
      for (int k : chunk) list.push_back(&round[static_cast<std::size_t>(k)]);
      prepare(list, multiplier, RecordLevel::Base);
    }
    for (int k : to_run) scanned.insert(pos + static_cast<std::size_t>(k));
    for (std::size_t j = pos; j < pos + n && cases.size() < target; ++j) {
      if (!built_.at(j).skip_reason.empty()) continue;
      std::optional<bool> pass = order_.explicit_ids ? std::optional<bool>(true) : stored_pass(multiplier, filter, j);
      if (!pass) pass = assumed_pass();
      if (*pass) cases.push_back(round[j - pos]);
    }
    pos += n;
  }
  if (!order_.explicit_ids) {
    std::vector<int> discovery, validation;
    split_halves(static_cast<int>(cases.size()), c_.split_seed, discovery, validation);
    for (int i : validation) cases[static_cast<std::size_t>(i)].split = Split::Validation;
  }
  return cases;
}

std::optional<bool> RunWorkPlanner::stored_pass(double multiplier, FilterKind filter, std::size_t position) const {
  if (!outcome_) return std::nullopt;
  auto it = outcome_->scans.find(multiplier);
  if (it == outcome_->scans.end() || position >= it->second.size()) return std::nullopt;
  const auto [clean, noised] = it->second[position];
  if (std::isnan(clean) || std::isnan(noised)) return std::nullopt;
  return passes_filter(filter, clean, noised);
}

// The k-th buildable record passes when the running count of kept ones, k * rate rounded down, grows.
bool RunWorkPlanner::assumed_pass() {
  assume(assume_.keep_rate_source);
  const double p = assume_.keep_rate;
  const std::uint64_t k = buildable_seen_++;
  return std::floor((static_cast<double>(k) + 1) * p) > std::floor(static_cast<double>(k) * p);
}

// ---- 2-6. the per-case stages -------------------------------------------------------------------
// The executor's walk over a stage's table: every case, in chunks; `f` gets a chunk's cases.
void RunWorkPlanner::per_chunk(const std::vector<PlannedCase>& cases, const ChunkWork& f) {
  std::vector<int> rows(cases.size());
  for (std::size_t i = 0; i < rows.size(); ++i) rows[i] = static_cast<int>(i);
  stages_.back().cases += static_cast<std::int64_t>(cases.size());
  for (const std::vector<int>& chunk : chunks(cases, rows)) {
    std::vector<const PlannedCase*> list;
    for (int i : chunk) list.push_back(&cases[static_cast<std::size_t>(i)]);
    f(list);
  }
}

void RunWorkPlanner::layer_sweep(const std::vector<PlannedCase>& cases, double multiplier) {
  per_chunk(cases, [&](const std::vector<const PlannedCase*>& list) {
    std::vector<std::pair<const PlannedCase*, std::vector<Condition>>> runs;
    for (const PlannedCase* pc : list) runs.emplace_back(pc, Sweeps::layer_sweep_conditions(c_, pc->prompt, L_));
    prepare(list, multiplier, RecordLevel::Base);
    evaluate(runs);
  });
}

void RunWorkPlanner::trace_layers(const std::vector<PlannedCase>& cases, const std::vector<int>& wanted) {
  std::vector<int> layers;
  for (int l : wanted)
    if (!traced_.count(l)) layers.push_back(l);
  if (layers.empty()) return;
  traced_.insert(layers.begin(), layers.end());
  per_chunk(cases, [&](const std::vector<const PlannedCase*>& list) {
    std::vector<std::pair<const PlannedCase*, std::vector<Condition>>> runs;
    for (const PlannedCase* pc : list) {
      std::vector<Condition> conds;
      for (int layer : layers)
        for (int j = 0; j < mc_.top_k; ++j)  // every clean-active expert: top_k of them at the final position
          conds.push_back(Sweeps::expert_condition(layer, pc->prompt.num_tokens() - 1, j));
      runs.emplace_back(pc, std::move(conds));
    }
    prepare(list, c_.noise_multiplier, RecordLevel::Base);
    evaluate(runs);
  });
}

void RunWorkPlanner::controls(const std::vector<PlannedCase>& cases) {
  const int lstar = selected_layer();
  per_chunk(cases, [&](const std::vector<const PlannedCase*>& list) {
    std::vector<const PlannedCase*> full, base;
    for (const PlannedCase* pc : list) (expert_active(index_of(cases, pc)) ? full : base).push_back(pc);
    prepare(full, c_.noise_multiplier, RecordLevel::Full, lstar);
    prepare(base, c_.noise_multiplier, RecordLevel::Base, lstar);
    std::vector<std::pair<const PlannedCase*, std::vector<Condition>>> equal_norm, coalitions;
    for (const PlannedCase* pc : list) {
      const std::size_t i = index_of(cases, pc);
      const int last = pc->prompt.num_tokens() - 1;
      if (expert_active(i) && has_gate_matched(i))
        equal_norm.emplace_back(pc, std::vector<Condition>{Sweeps::expert_condition(lstar, last, 0),
                                                           Sweeps::expert_condition(lstar, last, 1)});
      coalitions.emplace_back(pc, Sweeps::coalition_conditions(lstar, last, c_.coalitions));
    }
    evaluate(equal_norm);
    evaluate(coalitions);
  });
}

void RunWorkPlanner::heatmaps(const std::vector<PlannedCase>& cases) {
  std::vector<PlannedCase> heat;
  for (const PlannedCase& pc : cases)
    if (pc.split == Split::Validation && static_cast<int>(heat.size()) < c_.heatmap_cases) heat.push_back(pc);
  heatmap_cases_ = static_cast<int>(heat.size());
  for (const PlannedCase& pc : heat) heatmap_tokens_ = std::max(heatmap_tokens_, pc.prompt.num_tokens());
  per_chunk(heat, [&](const std::vector<const PlannedCase*>& list) {
    std::vector<std::pair<const PlannedCase*, std::vector<Condition>>> runs;
    for (const PlannedCase* pc : list) runs.emplace_back(pc, Sweeps::heatmap_conditions(pc->prompt.num_tokens(), L_));
    prepare(list, c_.noise_multiplier, RecordLevel::Base);
    evaluate(runs);
  });
}

void RunWorkPlanner::robustness() {
  for (double m : c_.robust_noise_multipliers) {
    begin_stage(fmt::format("robustness: multiplier_{}", m));
    const std::vector<PlannedCase> cases = scan(m, c_.filter);
    robustness_cases_.push_back(static_cast<std::int64_t>(cases.size()));
    if (!cases.empty()) layer_sweep(cases, m);
  }
  if (c_.robust_relaxed_filter) {
    begin_stage("robustness: relaxed_filter");
    const std::vector<PlannedCase> cases = scan(c_.noise_multiplier, FilterKind::Relaxed);
    robustness_cases_.push_back(static_cast<std::int64_t>(cases.size()));
    if (!cases.empty()) layer_sweep(cases, c_.noise_multiplier);
  }
  for (std::size_t k = 0; k < c_.robust_split_seeds.size(); ++k) {
    begin_stage(fmt::format("robustness: split seed_{}", c_.robust_split_seeds[k]));
    trace_layers(cases_, {split_layer(c_.robust_split_seeds[k], k)});
  }
}

// ---- the executor's chunks, the tracer's calls, the prepared-case cache -------------------------
std::vector<std::vector<int>> RunWorkPlanner::chunks(const std::vector<PlannedCase>& cases, std::vector<int> rows) {
  const RowCost cost = [&cases](int i) { return static_cast<double>(cases[static_cast<std::size_t>(i)].prompt.num_tokens()); };
  std::vector<std::vector<int>> out = make_chunks(std::move(rows), cost, c_.chunk_tokens);
  stages_.back().chunks += static_cast<std::int64_t>(out.size());
  return out;
}

void RunWorkPlanner::calls(const std::vector<StreamShape>& streams, bool prepare) {
  std::vector<int> rows;
  for (const StreamShape& s : streams) rows.push_back(s.rows);
  std::size_t next = 0;
  for (std::size_t count : CaseTracer::split_calls(rows, c_.batch_rows)) {
    CallShape call;
    call.prepare = prepare;
    int first = L_;
    for (std::size_t k = next; k < next + count; ++k) {
      first = std::min(first, streams[k].start_layer);
      call.steps += static_cast<std::uint64_t>(streams[k].rows) * static_cast<std::uint64_t>(L_ - streams[k].start_layer);
    }
    call.layers = L_ - first;
    int rows_in_call = 0;
    for (std::size_t k = next; k < next + count; ++k) rows_in_call += streams[k].rows;
    max_call_rows_ = std::max(max_call_rows_, rows_in_call);
    next += count;
    stages_.back().work.add(call);
  }
}

// PreparedCases::get: kept cases are reused (or their noised runs re-recorded in full from a
// layer), missing ones prepared in one batch (clean runs, then noised runs), then kept within budget.
void RunWorkPlanner::prepare(const std::vector<const PlannedCase*>& cases, double multiplier, RecordLevel level,
                             int full_from) {
  std::vector<const PlannedCase*> missing, extend;
  for (const PlannedCase* pc : cases) {
    auto it = kept_.find({pc->id, multiplier});
    if (it == kept_.end()) missing.push_back(pc);
    else if (level == RecordLevel::Full && (it->second.second < 0 || it->second.second > full_from)) extend.push_back(pc);
  }
  const int S = c_.noise_samples;
  auto subject = [](const PlannedCase* pc) { return pc->prompt.subject_end - pc->prompt.subject_begin; };
  if (!extend.empty()) {
    std::vector<StreamShape> streams;
    for (const PlannedCase* pc : extend)
      for (int s = 0; s < S; ++s) streams.push_back({pc->prompt.num_tokens(), full_from});
    calls(streams, true);
    for (const PlannedCase* pc : extend)
      keep({pc->id, multiplier}, traced_case_bytes(mc_, pc->prompt.num_tokens(), subject(pc), S, full_from), full_from);
  }
  if (missing.empty()) return;
  std::vector<StreamShape> clean, noised;
  for (const PlannedCase* pc : missing) {
    clean.push_back({pc->prompt.num_tokens(), 0});
    for (int s = 0; s < S; ++s) noised.push_back({pc->prompt.num_tokens() - pc->prompt.subject_begin, 0});
  }
  calls(clean, true);
  calls(noised, true);
  const int from = level == RecordLevel::Full ? 0 : -1;
  std::size_t not_kept = 0;
  for (const PlannedCase* pc : missing) {
    const std::size_t bytes = traced_case_bytes(mc_, pc->prompt.num_tokens(), subject(pc), S, from);
    keep({pc->id, multiplier}, bytes, from);
    if (!kept_.count({pc->id, multiplier})) not_kept += bytes;
  }
  peak_live_ = std::max(peak_live_, used_ + not_kept);
}

void RunWorkPlanner::keep(const Key& key, std::size_t bytes, int full_from) {
  auto it = kept_.find(key);
  const std::size_t old = it == kept_.end() ? 0 : it->second.first;
  if (used_ - old + bytes <= budget_) {
    used_ = used_ - old + bytes;
    kept_[key] = {bytes, full_from};
    peak_cache_ = std::max(peak_cache_, used_);
  } else if (it != kept_.end()) {
    used_ -= old;
    kept_.erase(it);
  }
}

// Sweeps::rescues: every case's conditions on every noise sample, in one evaluate (CaseTracer::stream_for).
void RunWorkPlanner::evaluate(const std::vector<std::pair<const PlannedCase*, std::vector<Condition>>>& runs) {
  std::vector<StreamShape> streams;
  for (const auto& [pc, conds] : runs) {
    TracedCase shape;  // what stream_for reads of a prepared case: its prompt and one slot per sample
    shape.prompt = pc->prompt;
    shape.noise.resize(static_cast<std::size_t>(c_.noise_samples));
    shape.noised.resize(static_cast<std::size_t>(c_.noise_samples));
    for (int s = 0; s < c_.noise_samples; ++s)
      for (const Condition& cond : conds) {
        const StreamSpec spec = CaseTracer::stream_for({&shape, s, &cond}, PatchMode::FastPath);
        streams.push_back({pc->prompt.num_tokens() - spec.start_pos, spec.start_layer});
      }
    stages_.back().conditions += static_cast<std::int64_t>(conds.size()) * c_.noise_samples;
  }
  calls(streams, false);
}

// ---- decisions ----------------------------------------------------------------------------------
int RunWorkPlanner::selected_layer() {
  if (outcome_ && outcome_->selected_layer >= 0) return outcome_->selected_layer;
  assume("assumed: layer 0 selected (an upper bound: conditions from l* run L - l* layers)");
  return 0;
}

bool RunWorkPlanner::expert_active(std::size_t i) {
  if (outcome_ && outcome_->has_expert_selection && i < outcome_->expert_active.size() &&
      outcome_->expert_active.size() == cases_.size())
    return outcome_->selected_expert >= 0 && outcome_->expert_active[i] != 0;
  assume("assumed: the selected expert is clean-active in every case, with a gate-matched control (upper bound)");
  return true;
}

bool RunWorkPlanner::has_gate_matched(std::size_t i) {
  if (outcome_ && outcome_->has_expert_selection && outcome_->gate_matched.size() == cases_.size())
    return outcome_->gate_matched[i] >= 0;
  return true;  // assumed with expert_active
}

int RunWorkPlanner::split_layer(std::uint64_t seed, std::size_t index) {
  if (outcome_) {
    auto it = outcome_->split_layers.find(static_cast<std::int64_t>(seed));
    if (it != outcome_->split_layers.end()) return it->second;
  }
  assume("assumed: each robustness split selects a layer not yet traced (upper bound)");
  return static_cast<int>((index + 1) % static_cast<std::size_t>(L_));
}

}  // namespace

RunWorkPlan plan_run_work(const RunConfig& config, const ModelConfig& model,
                                        const std::vector<CounterFactRecord>& records, const CaseBuilder& builder,
                                        const RunOutcome* outcome, const RunWorkAssumptions& assumptions) {
  return RunWorkPlanner(config, model, records, builder, outcome, assumptions).run();
}

}  // namespace moetrace
