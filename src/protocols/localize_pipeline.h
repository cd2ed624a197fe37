#pragma once
// `moetrace localize`: router-contrast localisation as stages on a RowExecutor (docs/localize.md
// "The command"). Rows are (question, language) pairs; every row is a deterministic function of its
// pair (ask_questions decodes each prompt independently of its batch), stored with a done flag, so
// results depend neither on chunk size, rank count nor restarts. Stages:
//   1. asked: every pair asked with its routing captured (/localize/asked/*);
//   2. split and contrast (pure, from the asked table): the chosen set, the controls, the curve's sets;
//   3. conditions: the validation pairs re-asked under each set (/localize/conditions/<name>/*), and
//      the unrelated questions before and after the chosen set;
//   4. summaries with bootstrap intervals (/localize/effect, effect_by_language, curve, accuracy).
// On several ranks only the writing rank holds the asked table's routing statistics (the other
// ranks get its outcome columns): it computes stage 2 and shares the condition sets (RowExecutor::
// on_writer), so LocalizationResult's asked, split and contrast are the writing rank's alone.
#include "localize/localize_ask.h"
#include "protocols/localize_protocol.h"
#include "protocols/row_executor.h"
#include "results/localize_results.h"
#include "results/results_file.h"

namespace moetrace::localize {

using PairList = std::vector<std::pair<std::size_t, std::size_t>>;

// The pipeline's rules that fix its engine work, shared with the planner (localize_work_plan.h).
// Every (question, language) pair, question-major: the rows of the asked table.
PairList all_pairs(const QuestionSet& questions);
// A pair's cost for chunking (RowCost): its prompt's tokens plus the max_new_tokens it may generate.
std::vector<double> pair_costs(const Tokenizer& tokenizer, const QuestionSet& questions, const PairList& pairs,
                               const AskOptions& ask);
// The discovery / validation split of the questions (by id and seed) and the validation pairs
// (rows of the asked table, ascending): those of the validation questions.
QuestionSplit localize_split(const QuestionSet& questions, std::uint64_t seed);
std::vector<std::size_t> validation_pairs(const QuestionSet& questions, const QuestionSplit& split);
// The validation pairs' conditions, in the order they are asked: chosen, popular, random_<d>, curve_<N>.
std::vector<std::string> condition_names(const LocalizeOptions& options);

// Stages of the engine work (the command's "engine work" line, the planner's StageProfile names).
inline constexpr const char* kAskingStage = "asking";                     // every pair, routing recorded
inline constexpr const char* kConditionsStage = "conditions";             // the validation pairs under each set
inline constexpr const char* kUnrelatedStage = "unrelated questions";     // before and after the chosen set

// Engine calls and layer-token steps this process ran in one stage (Engine's counters around
// every ask_questions call of the stage).
struct LocalizeStageWork {
  std::string stage;
  std::uint64_t engine_calls = 0, steps = 0;
};

class LocalizePipeline {
 public:
  // `options.unrelated` may be null. `results` is the real file on the writing rank, a scratch file
  // elsewhere (as for the tracing pipeline).
  LocalizePipeline(Engine& engine, const Tokenizer& tokenizer, const QuestionSet& questions, const LocalizeOptions& options,
                   ResultsFile& results, RowExecutor& executor);
  // Runs every stage (a resumed run computes only the rows not yet done), writes the summaries and
  // marks /provenance completed. Throws StopRequested when stopped between chunks (saved).
  LocalizationResult run();
  // A shard run (`moetrace localize --shard i/n`): the executor computes the shard's pairs of each
  // per-pair table only (RowExecutor::set_shard), and run() returns, with stopped_before set, before
  // the contrast while the asked table lacks rows, and always before the summaries (after the
  // shard's rows of every condition table). Other shards' rows come from `moetrace merge`.
  void set_shard(CaseShard shard);
  // Leaves LocalizationResult::asked empty (a second copy of the routing statistics: the command
  // reads them from the file).
  void leave_asked_out() { keep_asked_ = false; }
  // The engine work this process ran so far, per stage (kAskingStage, kConditionsStage,
  // kUnrelatedStage; a stage appears once it asked a pair): a resumed run counts only the rows it
  // computed, a rank only the chunks its group computed.
  const std::vector<LocalizeStageWork>& work() const { return work_; }

 private:
  using NamedSets = std::vector<std::pair<std::string, ExpertList>>;
  Matrix2 ask_rows(const char* stage, const std::string& label, const QuestionSet& qs, const PairList& pairs, const std::string& outcome,
                   const std::string& generated, const ExpertList* deactivated, bool routing);
  // The validation pairs' outcome tables under each condition set, in the order make_sets names them.
  struct ConditionTables {
    Matrix2 chosen, popular;
    std::vector<Matrix2> random;  // per control draw
    std::vector<Matrix2> curve;   // per curve N
    std::size_t added = 0;
    void add(Matrix2 t, std::size_t random_draws);  // the next set's table
  };
  // The outcomes a summary reads: the asked table (rows: every pair), the validation pairs (rows of
  // `asked`) and their tables under each set (rows: validation pairs).
  struct Outcomes {
    const Matrix2& asked;
    const std::vector<std::size_t>& pairs;
    const ConditionTables& after;
    Bucket before(std::size_t j) const;
    double flipped(const Matrix2& t, std::size_t j) const;
  };
  // Values over validation pairs of one bucket before, and their questions.
  struct Series {
    std::vector<double> chosen, popular, random;
    std::vector<std::size_t> question;
  };
  void select(LocalizationResult& r, const Matrix2& asked, ExpertList& ranked, std::vector<double>& frequency);
  ContrastInput discovery_input(const Matrix2& asked, const std::vector<int>& split, std::vector<double>& frequency,
                                std::size_t& n_discovery) const;
  void rank_experts(LocalizationResult& r, const ContrastInput& input, ExpertList& ranked);
  // Stage 2 on the writing rank (select, then the control and curve sets), its sets and validation
  // pairs shared with every rank.
  NamedSets condition_sets(LocalizationResult& r, const Matrix2& asked);
  NamedSets make_sets(const LocalizationResult& r, const ExpertList& ranked, const std::vector<double>& frequency) const;
  void write_inputs();  // run info, questions and skips
  std::pair<Matrix2, Matrix2> ask_unrelated(const ExpertList& chosen);
  LocalizationResult stop_shard(LocalizationResult r, const char* step);
  void summaries(LocalizationResult& r, const Outcomes& o, const Matrix2* unrelated_before, const Matrix2* unrelated_after);
  Series series(const Outcomes& o, Bucket before, long language) const;
  DeactivationEffect effect(const Outcomes& o, const Matrix2& after, const ExpertList& experts) const;
  void effect_summaries(LocalizationResult& r, const Outcomes& o);
  void accuracy_summaries(const Outcomes& o, long language);
  void unrelated_summary(LocalizationResult& r, const Matrix2& before, const Matrix2& after);
  // An asked pair as stored (its text decoded again from the stored token ids).
  AskedPair asked_pair(const Matrix2& asked, int row) const;
  SummaryRecord record(const std::string& name, const std::vector<double>& values, const std::vector<std::size_t>& questions,
                       bool difference) const;

  Engine& engine_;
  const Tokenizer& tokenizer_;
  const QuestionSet& qs_;
  LocalizeOptions o_;
  ResultsFile& file_;
  LocalizeResults out_;
  RowExecutor& executor_;
  int layers_ = 0, experts_ = 0;
  bool sharded_ = false, keep_asked_ = true;
  std::vector<LocalizeStageWork> work_;
  LocalizeStageWork& stage_work(const char* stage);
};

}  // namespace moetrace::localize
