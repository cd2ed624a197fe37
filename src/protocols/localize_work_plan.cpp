#include "protocols/localize_work_plan.h"

#include <numeric>
#include <string>

#include <fmt/format.h>

#include "engine/greedy_decoder.h"
#include "localize/localize_ask.h"
#include "protocols/localize_inputs.h"
#include "protocols/localize_pipeline.h"
#include "protocols/row_executor.h"
#include "util/error.h"

namespace moetrace {
namespace {

using localize::PairList;

// The stage being planned: its profile and how many pairs' decodings were assumed.
struct Planner {
  const LocalizeConfig& config;
  const ModelConfig& model;
  const Tokenizer& tokenizer;
  const localize::LocalizeOptions options;
  const LocalizeDecisions* decisions;
  std::size_t assumed = 0;  // pair tables' rows whose decoding steps were assumed (whole plan)

  // Decoding steps per pair of a table: from the stored rows where given and done, else the most.
  std::vector<int> steps(std::size_t pairs, const std::vector<StoredDecode>* stored, const std::string& dataset) {
    const int M = config.max_new_tokens;
    if (stored && stored->size() != pairs)
      fail_input("{}: dataset '{}' has {} rows, the config's questions make {} pairs (a results file of another config "
                 "or question file?)", decisions->path, dataset, stored->size(), pairs);
    std::vector<int> out(pairs, M - 1);
    for (std::size_t i = 0; i < pairs; ++i) {
      if (!stored || !(*stored)[i].done) {
        ++assumed;
        continue;
      }
      const StoredDecode& d = (*stored)[i];
      if (d.generated > M || (d.stopped && d.generated >= M))
        fail_input("{}: dataset '{}' row {}: {} tokens generated, more than [ask] max_new_tokens = {} of {} allows",
                   decisions->path, dataset, i, d.generated, M, config.source_path.string());
      out[i] = decoding_steps(d.generated, d.stopped);
    }
    return out;
  }

  // One table of pairs asked through the executor: its chunks, each decoded in groups.
  void table(StageProfile& stage, const localize::QuestionSet& qs, const PairList& pairs, const std::vector<int>& steps,
             bool routing) {
    if (pairs.empty()) return;  // the pipeline asks nothing
    const std::vector<double> cost = localize::pair_costs(tokenizer, qs, pairs, options.ask);
    std::vector<int> rows(pairs.size());
    std::iota(rows.begin(), rows.end(), 0);
    const RowCost row_cost = [&cost](int r) { return cost[static_cast<std::size_t>(r)]; };
    for (const std::vector<int>& chunk : make_chunks(rows, row_cost, config.chunk_tokens)) {
      std::vector<int> tokens, chunk_steps;
      for (int r : chunk) {
        const auto [q, l] = pairs[static_cast<std::size_t>(r)];
        tokens.push_back(static_cast<int>(localize::prompt_token_ids(tokenizer, qs.questions[q].entries[l], options.ask.add_special_tokens).size()));
        chunk_steps.push_back(steps[static_cast<std::size_t>(r)]);
      }
      for (const CallShape& c : decode_calls(tokens, chunk_steps, options.ask.prompts_per_call, model.num_layers, routing))
        stage.work.add(c);
      ++stage.chunks;
    }
  }

  const std::vector<StoredDecode>* stored(bool has, const std::vector<StoredDecode>& rows) const {
    return decisions && has ? &rows : nullptr;
  }
  const std::vector<StoredDecode>* stored_condition(const std::string& name) const {
    if (!decisions) return nullptr;
    const auto it = decisions->conditions.find(name);
    return it == decisions->conditions.end() ? nullptr : &it->second;
  }

  // Marks the stage an estimate when any of its pairs' decodings was assumed since `before`.
  void note(StageProfile& stage, std::size_t before) const {
    if (assumed == before) return;
    stage.estimate = true;
    stage.note = fmt::format("{} of the stage's pair decodings assumed to run all max_new_tokens = {} tokens ({} one-token "
                             "steps): an upper bound, a pair that stops at a newline or EOS token takes fewer; a finished "
                             "results file of this config makes the count exact",
                             assumed - before, config.max_new_tokens, config.max_new_tokens - 1);
  }
};

std::string dataset_of(const std::string& name) { return LocalizeResults::condition_outcome(name); }

}  // namespace

std::vector<StageProfile> plan_localize_work(const LocalizeConfig& config, const ModelConfig& model, const Tokenizer& tokenizer,
                                             const localize::QuestionSet& qs, const localize::QuestionSet* unrelated,
                                             const LocalizeDecisions* from_results) {
  Planner p{config, model, tokenizer, localize_options(config, model), from_results};
  const LocalizeDecisions empty;
  const LocalizeDecisions& d = from_results ? *from_results : empty;
  std::vector<StageProfile> stages;
  stages.reserve(3);  // the references below stay valid

  const PairList all = localize::all_pairs(qs);
  StageProfile& asking = stages.emplace_back(StageProfile{localize::kAskingStage, static_cast<std::int64_t>(all.size())});
  p.table(asking, qs, all, p.steps(all.size(), p.stored(d.has_asked, d.asked), LocalizeResults::asked_outcome()), true);
  p.note(asking, 0);

  std::size_t before = p.assumed;
  PairList validation;
  for (std::size_t pair : localize::validation_pairs(qs, localize::localize_split(qs, config.seed))) validation.push_back(all[pair]);
  const std::vector<std::string> names = localize::condition_names(p.options);
  StageProfile& conditions = stages.emplace_back(StageProfile{localize::kConditionsStage, static_cast<std::int64_t>(validation.size()),
                                                              static_cast<std::int64_t>(names.size())});
  for (const std::string& name : names)
    p.table(conditions, qs, validation, p.steps(validation.size(), p.stored_condition(name), dataset_of(name)), false);
  p.note(conditions, before);

  if (unrelated) {
    before = p.assumed;
    const PairList upairs = localize::all_pairs(*unrelated);
    StageProfile& u = stages.emplace_back(StageProfile{localize::kUnrelatedStage, static_cast<std::int64_t>(upairs.size()), 1});
    p.table(u, *unrelated, upairs, p.steps(upairs.size(), p.stored(d.has_unrelated, d.unrelated), LocalizeResults::unrelated_outcome()), false);
    const std::string after = LocalizeResults::unrelated_condition();
    p.table(u, *unrelated, upairs, p.steps(upairs.size(), p.stored_condition(after), dataset_of(after)), false);
    p.note(u, before);
  }
  return stages;
}

std::vector<TableShape> localize_result_tables(const LocalizeConfig& config, const ModelConfig& model,
                                               const std::vector<StageProfile>& stages) {
  auto stage = [&](const char* name) -> const StageProfile* {
    for (const StageProfile& s : stages)
      if (s.name == name) return &s;
    return nullptr;
  };
  const StageProfile* asking = stage(localize::kAskingStage);
  const StageProfile* conditions = stage(localize::kConditionsStage);
  const StageProfile* unrelated = stage(localize::kUnrelatedStage);
  MOETRACE_ASSERT(asking && conditions, "a localize plan has its asking and conditions stages");
  return LocalizeResults::table_shapes(static_cast<std::uint64_t>(asking->cases), static_cast<std::uint64_t>(conditions->cases),
                                       static_cast<std::uint64_t>(conditions->conditions),
                                       unrelated ? static_cast<std::uint64_t>(unrelated->cases) : 0, config.max_new_tokens,
                                       model.num_layers, model.num_experts, static_cast<int>(localize::kRoutingStatisticCount));
}

}  // namespace moetrace
