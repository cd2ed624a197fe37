#include "protocols/localize_pipeline.h"

#include <algorithm>
#include <array>
#include <cmath>
#include <cstring>
#include <map>
#include <optional>
#include <utility>

#include "util/error.h"
#include "util/logging.h"

namespace moetrace::localize {
namespace {

namespace S = localize_summary;

// Seed offsets: independent streams per use (docs/localize.md).
constexpr std::uint64_t kControlSeedTag = 0x63746c72ull;
constexpr std::uint64_t kBootstrapSeedTag = 0x62737470ull;

// Every routing statistic is stored per asked pair; the contrast reads the configured one. The
// statistics at generated tokens are NaN for a pair that generated none it could average over
// (RoutingSummary::has_generated_routing).
constexpr std::array<RoutingStatistic, kRoutingStatisticCount> kStoredStatistics = {
    RoutingStatistic::LogitMean,      RoutingStatistic::ProbMean,      RoutingStatistic::SelectedMean,
    RoutingStatistic::LogitLast,      RoutingStatistic::ProbLast,      RoutingStatistic::SelectedLast,
    RoutingStatistic::LogitGenerated, RoutingStatistic::ProbGenerated, RoutingStatistic::SelectedGenerated};

// Positions a pair's generated-token statistics average over (docs/localize.md "Routing
// statistics"): every generated token fed back, i.e. all of them when a stop token ended decoding,
// all but the last when max_new_tokens did.
int generated_positions(int generated, int stop_id) { return decoding_steps(generated, stop_id >= 0); }

// Column of the first value of statistic `s` in an asked row (outcome, generated, then the statistics).
int routing_column(RoutingStatistic s, int max_new_tokens, int cells) {
  const auto at = std::find(kStoredStatistics.begin(), kStoredStatistics.end(), s) - kStoredStatistics.begin();
  MOETRACE_ASSERT(at < static_cast<std::ptrdiff_t>(kStoredStatistics.size()), "a routing statistic the pipeline does not store");
  return LocalizeResults::kOutcomeWidth + max_new_tokens + static_cast<int>(at) * cells;
}

Bucket bucket_at(const Matrix2& t, int row) {
  return LocalizeResults::success(t.v.data() + static_cast<std::size_t>(row) * t.cols) ? Bucket::Success : Bucket::Failure;
}

std::vector<double> pair_row(const AskedPair& p, int max_new_tokens, bool routing) {
  std::vector<double> row = LocalizeResults::encode_outcome(
      {p.bucket == Bucket::Success, static_cast<int>(p.match), p.answer_logprob, p.stop_id, p.generated},
      max_new_tokens);
  if (routing)
    for (RoutingStatistic s : kStoredStatistics) {
      const std::vector<double>& v = routing_values(p.routing, s);
      row.insert(row.end(), v.begin(), v.end());
    }
  return row;
}

void check_options(const LocalizeOptions& o) {
  if (o.ask.deactivation) fail_input("localize: the asking options must not carry a deactivation");
  if (o.control_draws < 1) fail_input("localize: control_draws must be >= 1");
  if (o.bootstrap_resamples < 1) fail_input("localize: bootstrap_resamples must be >= 1");
  for (std::size_t i = 0; i < o.curve_n.size(); ++i)
    if (o.curve_n[i] < 1 || (i > 0 && o.curve_n[i] <= o.curve_n[i - 1]))
      fail_input("localize: the curve's N must be ascending, distinct and >= 1");
}

Matrix2 first_columns(const Matrix2& t, int cols) {
  if (t.cols <= cols) return t;
  Matrix2 out(t.rows, cols, NAN);
  for (int r = 0; r < t.rows; ++r)
    std::copy_n(t.v.data() + static_cast<std::size_t>(r) * t.cols, cols, out.v.data() + static_cast<std::size_t>(r) * cols);
  return out;
}

// The contrast as stored: one vector per field, the rankings as flat indices.
LocalizeContrastTable contrast_table(const ContrastResult& c, int layers, std::size_t top_n) {
  LocalizeContrastTable t;
  for (const ExpertContrast& e : c.experts)
    for (auto [to, from] : {std::pair{&t.mean_success, e.mean_success}, std::pair{&t.mean_failure, e.mean_failure},
                            std::pair{&t.effect, e.effect}, std::pair{&t.statistic, e.statistic}, std::pair{&t.df, e.df},
                            std::pair{&t.p, e.p}, std::pair{&t.q, e.q}})
      to->push_back(from);
  t.n_success = static_cast<std::int64_t>(c.n_success);
  t.n_failure = static_cast<std::int64_t>(c.n_failure);
  t.n_questions = static_cast<std::int64_t>(c.n_questions);
  t.n_mixed_questions = static_cast<std::int64_t>(c.n_mixed_questions);
  for (std::size_t i : c.top_global) t.top_global.push_back(static_cast<int>(i));
  t.top_n = static_cast<std::int64_t>(top_n);
  t.top_per_layer.assign(static_cast<std::size_t>(layers) * top_n, -1);
  for (std::size_t l = 0; l < c.top_per_layer.size(); ++l)
    for (std::size_t k = 0; k < c.top_per_layer[l].size(); ++k) t.top_per_layer[l * top_n + k] = static_cast<int>(c.top_per_layer[l][k]);
  return t;
}

// The condition sets (names and experts) and the validation pairs, as the writing rank shares them.
std::vector<char> encode_sets(const std::vector<std::pair<std::string, ExpertList>>& sets,
                              const std::vector<std::size_t>& validation_pairs) {
  std::vector<std::int64_t> v{static_cast<std::int64_t>(sets.size())};
  for (const auto& [name, experts] : sets) {
    v.push_back(static_cast<std::int64_t>(name.size()));
    v.insert(v.end(), name.begin(), name.end());
    v.push_back(static_cast<std::int64_t>(experts.size()));
    for (auto [l, e] : experts) v.insert(v.end(), {l, e});
  }
  v.push_back(static_cast<std::int64_t>(validation_pairs.size()));
  v.insert(v.end(), validation_pairs.begin(), validation_pairs.end());
  const char* b = reinterpret_cast<const char*>(v.data());
  return std::vector<char>(b, b + v.size() * sizeof(std::int64_t));
}

void decode_sets(const std::vector<char>& bytes, std::vector<std::pair<std::string, ExpertList>>& sets,
                 std::vector<std::size_t>& validation_pairs) {
  MOETRACE_ASSERT(bytes.size() % sizeof(std::int64_t) == 0, "malformed condition sets");
  std::vector<std::int64_t> v(bytes.size() / sizeof(std::int64_t));
  std::memcpy(v.data(), bytes.data(), bytes.size());
  std::size_t at = 0;
  auto next = [&] {
    MOETRACE_ASSERT(at < v.size(), "malformed condition sets");
    return v[at++];
  };
  for (std::int64_t n = next(); n > 0; --n) {
    std::string name;
    for (std::int64_t k = next(); k > 0; --k) name.push_back(static_cast<char>(next()));
    ExpertList experts;
    for (std::int64_t k = next(); k > 0; --k) {
      const int l = static_cast<int>(next());
      experts.emplace_back(l, static_cast<int>(next()));
    }
    sets.emplace_back(std::move(name), std::move(experts));
  }
  for (std::int64_t k = next(); k > 0; --k) validation_pairs.push_back(static_cast<std::size_t>(next()));
  MOETRACE_ASSERT(at == v.size(), "malformed condition sets");
}

}  // namespace

PairList all_pairs(const QuestionSet& qs) {
  PairList all;
  for (std::size_t q = 0; q < qs.questions.size(); ++q)
    for (std::size_t l = 0; l < qs.languages.size(); ++l) all.emplace_back(q, l);
  return all;
}

std::vector<double> pair_costs(const Tokenizer& tokenizer, const QuestionSet& qs, const PairList& pairs, const AskOptions& ask) {
  std::vector<double> cost(pairs.size());
  for (std::size_t i = 0; i < pairs.size(); ++i)
    cost[i] = static_cast<double>(
        prompt_token_ids(tokenizer, qs.questions[pairs[i].first].entries[pairs[i].second], ask.add_special_tokens).size() +
        static_cast<std::size_t>(ask.max_new_tokens));
  return cost;
}

QuestionSplit localize_split(const QuestionSet& qs, std::uint64_t seed) {
  std::vector<std::string> ids;
  for (const Question& q : qs.questions) ids.push_back(q.id);
  return split_questions(ids, seed ^ kSplitSeedTag);
}

std::vector<std::size_t> validation_pairs(const QuestionSet& qs, const QuestionSplit& split) {
  std::vector<bool> validation(qs.questions.size(), false);
  for (std::size_t q : split.validation) validation[q] = true;
  std::vector<std::size_t> pairs;
  const std::size_t NL = qs.languages.size();
  for (std::size_t p = 0; p < qs.questions.size() * NL; ++p)
    if (validation[p / NL]) pairs.push_back(p);
  return pairs;
}

std::vector<std::string> condition_names(const LocalizeOptions& o) {
  std::vector<std::string> names{LocalizeResults::chosen_condition(), LocalizeResults::popular_condition()};
  for (std::uint32_t d = 0; d < o.control_draws; ++d) names.push_back(LocalizeResults::random_condition(d));
  for (std::size_t n : o.curve_n) names.push_back(LocalizeResults::curve_condition(n));
  return names;
}

LocalizePipeline::LocalizePipeline(Engine& engine, const Tokenizer& tokenizer, const QuestionSet& questions,
                                   const LocalizeOptions& options, ResultsFile& results, RowExecutor& executor)
    : engine_(engine), tokenizer_(tokenizer), qs_(questions), o_(options), file_(results), out_(results),
      executor_(executor) {
  check_options(o_);
  executor_.set_row_unit("pairs");
  layers_ = engine.model().config.num_layers;
  experts_ = engine.model().config.num_experts;
  const std::int32_t cap = chosen_cap(experts_, engine.model().config.top_k);
  if (cap < 1) fail_input("localize: a model routing every token to {} of its {} experts leaves none to deactivate",
                          engine.model().config.top_k, experts_);
  if (o_.selection == ExpertSelection::PerLayer && o_.contrast.top_n > static_cast<std::size_t>(cap))
    fail_input("localize: top_n = {} per layer is more than the {} a layer's deactivated set may hold", o_.contrast.top_n, cap);
}

void LocalizePipeline::ConditionTables::add(Matrix2 t, std::size_t random_draws) {
  const std::size_t k = added++;
  if (k == 0)
    chosen = std::move(t);
  else if (k == 1)
    popular = std::move(t);
  else if (k < 2 + random_draws)
    random.push_back(std::move(t));
  else
    curve.push_back(std::move(t));
}

Matrix2 LocalizePipeline::ask_rows(const char* stage, const std::string& label, const QuestionSet& qs, const PairList& pairs,
                                   const std::string& outcome, const std::string& generated,
                                   const ExpertList* deactivated, bool routing) {
  const int M = o_.ask.max_new_tokens;
  std::vector<RowOutput> outputs{{outcome, LocalizeResults::kOutcomeWidth}, {generated, M}};
  if (routing)
    for (RoutingStatistic s : kStoredStatistics)
      outputs.push_back({LocalizeResults::asked_routing(std::string(routing_statistic_name(s))), layers_ * experts_});
  if (pairs.empty()) {  // e.g. no validation question: nothing to ask, no table
    int width = 0;
    for (const RowOutput& out : outputs) width += out.width;
    return Matrix2(0, width, NAN);
  }
  const std::vector<double> cost = pair_costs(tokenizer_, qs, pairs, o_.ask);
  const Deactivation d = deactivated ? Deactivation(deactivated->begin(), deactivated->end()) : Deactivation{};
  const RowCost row_cost = [&cost](int r) { return cost[static_cast<std::size_t>(r)]; };
  return executor_.run(label, static_cast<int>(pairs.size()), row_cost, outputs, [&](const std::vector<int>& rows) {
    PairList chunk;
    for (int r : rows) chunk.push_back(pairs[static_cast<std::size_t>(r)]);
    AskOptions a = o_.ask;
    a.capture_routing = routing;
    a.deactivation = deactivated ? &d : nullptr;
    LocalizeStageWork& work = stage_work(stage);
    const std::uint64_t calls0 = engine_.engine_calls(), steps0 = engine_.layer_token_steps();
    const std::vector<AskedPair> asked = ask_questions(engine_, tokenizer_, qs, chunk, a);
    work.engine_calls += engine_.engine_calls() - calls0;
    work.steps += engine_.layer_token_steps() - steps0;
    std::vector<std::vector<double>> values;
    for (const AskedPair& p : asked) values.push_back(pair_row(p, M, routing));
    return values;
  });
}

LocalizeStageWork& LocalizePipeline::stage_work(const char* stage) {
  for (LocalizeStageWork& w : work_)
    if (w.stage == stage) return w;
  return work_.emplace_back(LocalizeStageWork{stage});
}

void LocalizePipeline::set_shard(CaseShard shard) {
  executor_.set_shard(shard);
  sharded_ = true;
}

LocalizationResult LocalizePipeline::stop_shard(LocalizationResult r, const char* step) {
  file_.flush();
  r.stopped_before = step;
  return r;
}

AskedPair LocalizePipeline::asked_pair(const Matrix2& t, int p) const {
  const std::size_t NL = qs_.languages.size();
  const int M = o_.ask.max_new_tokens, C = layers_ * experts_;
  const double* row = t.v.data() + static_cast<std::size_t>(p) * t.cols;
  AskedPair a;
  a.question = static_cast<std::size_t>(p) / NL;
  a.language = static_cast<std::size_t>(p) % NL;
  const StoredOutcome o = LocalizeResults::decode_outcome(row, M);
  a.bucket = o.success ? Bucket::Success : Bucket::Failure;
  a.match = static_cast<MatchKind>(o.match);
  a.answer_logprob = o.answer_logprob;
  a.stop_id = o.stop_id;
  a.generated = o.generated;
  std::vector<std::int32_t> ids(a.generated.begin(), a.generated.end());
  if (a.stop_id >= 0) ids.push_back(a.stop_id);
  a.output = tokenizer_.decode(ids, true);
  if (const auto nl = a.output.find('\n'); nl != std::string::npos) a.output.resize(nl);
  a.routing.layers = layers_;
  a.routing.experts = experts_;
  for (RoutingStatistic s : kStoredStatistics) {
    const int col = routing_column(s, M, C);
    const_cast<std::vector<double>&>(routing_values(a.routing, s)).assign(row + col, row + col + C);
  }
  a.routing.generated_positions = generated_positions(static_cast<int>(a.generated.size()), a.stop_id);
  return a;
}

// Split, contrast of the discovery pairs, the chosen set; `ranked` is the global ranking (long
// enough for the curve), `frequency` the mean selected_mean over the discovery pairs.
void LocalizePipeline::select(LocalizationResult& r, const Matrix2& asked, ExpertList& ranked,
                              std::vector<double>& frequency) {
  r.split = localize_split(qs_, o_.seed);
  std::vector<int> split(qs_.questions.size(), 1);
  for (std::size_t q : r.split.discovery) split[q] = 0;
  out_.write_split(split);
  r.validation_pairs = validation_pairs(qs_, r.split);
  std::size_t n_discovery = 0;
  const ContrastInput input = discovery_input(asked, split, frequency, n_discovery);
  rank_experts(r, input, ranked);
  if (o_.selection == ExpertSelection::Global) {
    r.chosen = capped_prefix(ranked, o_.contrast.top_n, layers_, chosen_cap(experts_, engine_.model().config.top_k));
  } else {
    for (const auto& layer : r.contrast.top_per_layer)
      for (std::size_t i : layer) r.chosen.emplace_back(r.contrast.experts[i].layer, r.contrast.experts[i].expert);
  }
  r.contrast.top_global.resize(std::min(r.contrast.top_global.size(), o_.contrast.top_n));
  std::vector<int> vp;
  for (std::size_t p : r.validation_pairs) vp.push_back(static_cast<int>(p));
  out_.write_validation_pairs(vp);
  spdlog::info("contrast: {} discovery pairs ({} success, {} failure; {} of {} questions mixed); {} experts chosen ({})",
               n_discovery, r.contrast.n_success, r.contrast.n_failure, r.contrast.n_mixed_questions,
               r.contrast.n_questions, r.chosen.size(), expert_selection_name(o_.selection));
}

// The contrast's input: the configured statistic of every discovery pair that has it; `frequency`
// the mean selected_mean over the discovery pairs, `n_discovery` their number.
ContrastInput LocalizePipeline::discovery_input(const Matrix2& asked, const std::vector<int>& split,
                                                std::vector<double>& frequency, std::size_t& n_discovery) const {
  const std::size_t NL = qs_.languages.size(), cells = static_cast<std::size_t>(layers_) * experts_;
  const int M = o_.ask.max_new_tokens, C = static_cast<int>(cells);
  const int stat_col = routing_column(o_.statistic, M, C), freq_col = routing_column(RoutingStatistic::SelectedMean, M, C);
  ContrastInput input{layers_, experts_, {}};
  frequency.assign(cells, 0.0);
  std::size_t n_without = 0;
  for (int p = 0; p < asked.rows; ++p) {
    const std::size_t q = static_cast<std::size_t>(p) / NL, l = static_cast<std::size_t>(p) % NL;
    if (split[q] != 0) continue;
    const double* row = asked.v.data() + static_cast<std::size_t>(p) * asked.cols;
    for (std::size_t k = 0; k < cells; ++k) frequency[k] += row[freq_col + static_cast<int>(k)];
    ++n_discovery;
    if (std::isnan(row[stat_col])) {  // a statistic at generated tokens of a pair with none to average
      ++n_without;
      continue;
    }
    input.pairs.push_back({qs_.questions[q].id, qs_.languages[l], bucket_at(asked, p),
                           std::vector<double>(row + stat_col, row + stat_col + C)});
  }
  for (double& f : frequency) f /= static_cast<double>(std::max<std::size_t>(n_discovery, 1));
  if (n_without)
    spdlog::warn("contrast: {} discovery pair(s) generated no token to average {} over: left out of the contrast",
                 n_without, routing_statistic_name(o_.statistic));
  return input;
}

// Ranks every expert (a total order, so the first top_n are the top_n ranking's) into `ranked` and
// stores the contrast; the file keeps the first max(top_n, max curve_n) of the global ranking.
void LocalizePipeline::rank_experts(LocalizationResult& r, const ContrastInput& input, ExpertList& ranked) {
  ContrastOptions contrast = o_.contrast;
  contrast.top_n = static_cast<std::size_t>(layers_) * experts_;
  std::size_t stored = o_.contrast.top_n;
  for (std::size_t n : o_.curve_n) stored = std::max(stored, n);
  r.contrast = contrast_experts(input, contrast);
  for (std::size_t i : r.contrast.top_global) ranked.emplace_back(r.contrast.experts[i].layer, r.contrast.experts[i].expert);
  r.contrast.top_global.resize(std::min(r.contrast.top_global.size(), stored));
  for (auto& layer : r.contrast.top_per_layer) layer.resize(std::min(layer.size(), o_.contrast.top_n));
  out_.write_contrast(contrast_table(r.contrast, layers_, o_.contrast.top_n));
}

LocalizePipeline::NamedSets LocalizePipeline::make_sets(const LocalizationResult& r, const ExpertList& ranked,
                                                        const std::vector<double>& frequency) const {
  // The popular and curve sets are the first experts of their rankings that keep every layer within
  // the deactivation cap (no token left with fewer than top_k experts).
  const std::int32_t cap = deactivation_cap(experts_, engine_.model().config.top_k);
  std::vector<ExpertList> experts{r.chosen, capped_prefix(popular_experts(frequency, layers_, experts_, frequency.size()),
                                                          r.chosen.size(), layers_, cap)};
  for (std::uint32_t d = 0; d < o_.control_draws; ++d)
    experts.push_back(random_layer_matched(r.chosen, layers_, experts_, o_.seed ^ kControlSeedTag, d));
  for (std::size_t n : o_.curve_n) experts.push_back(capped_prefix(ranked, n, layers_, cap));
  const std::vector<std::string> names = condition_names(o_);
  MOETRACE_ASSERT(names.size() == experts.size(), "one deactivated set per condition");
  NamedSets sets;
  for (std::size_t i = 0; i < names.size(); ++i) sets.emplace_back(names[i], std::move(experts[i]));
  return sets;
}

LocalizePipeline::NamedSets LocalizePipeline::condition_sets(LocalizationResult& r, const Matrix2& asked) {
  NamedSets sets;
  const std::vector<char> shared = executor_.on_writer([&] {
    ExpertList ranked;
    std::vector<double> frequency;
    select(r, asked, ranked, frequency);
    sets = make_sets(r, ranked, frequency);
    return encode_sets(sets, r.validation_pairs);
  });
  if (!executor_.writer()) decode_sets(shared, sets, r.validation_pairs);
  r.chosen = sets[0].second;
  r.effect.experts = sets[0].second;
  r.popular.experts = sets[1].second;
  for (std::uint32_t d = 0; d < o_.control_draws; ++d) r.random.push_back({sets[2 + d].second, {}, {}});
  for (std::size_t n : o_.curve_n) r.curve.push_back({n, {}});
  return sets;
}

// A summary record: mean of `values` with a percentile-bootstrap interval (resampling questions or
// values), frac_positive, and for a difference a sign-flip p (over question sums or values).
SummaryRecord LocalizePipeline::record(const std::string& name, const std::vector<double>& values,
                                       const std::vector<std::size_t>& questions, bool difference) const {
  SummaryOptions s;
  s.seed = o_.seed ^ kBootstrapSeedTag;
  s.bootstrap_resamples = o_.bootstrap_resamples;
  s.sign_flips = o_.contrast.sign_flips;
  s.sign_flip = difference;
  s.empty_p = 1.0;
  const bool by_question = o_.bootstrap_unit == BootstrapUnit::Question;
  return summary_record(name, values, s, by_question ? std::span<const std::size_t>(questions) : std::span<const std::size_t>());
}

// Per validation pair j of `o`: 1 when the condition of table `t` turned it (wrong if it was
// correct, right if wrong).
double LocalizePipeline::Outcomes::flipped(const Matrix2& t, std::size_t j) const {
  return before(j) != bucket_at(t, static_cast<int>(j)) ? 1.0 : 0.0;
}
Bucket LocalizePipeline::Outcomes::before(std::size_t j) const { return bucket_at(asked, static_cast<int>(pairs[j])); }

// Values over the validation pairs with a given bucket before (optionally one language: language >= 0).
LocalizePipeline::Series LocalizePipeline::series(const Outcomes& o, Bucket before, long language) const {
  const std::size_t NL = qs_.languages.size();
  Series s;
  for (std::size_t j = 0; j < o.pairs.size(); ++j) {
    if (o.before(j) != before) continue;
    if (language >= 0 && o.pairs[j] % NL != static_cast<std::size_t>(language)) continue;
    s.question.push_back(o.pairs[j] / NL);
    s.chosen.push_back(o.flipped(o.after.chosen, j));
    s.popular.push_back(o.flipped(o.after.popular, j));
    double sum = 0;
    for (const Matrix2& t : o.after.random) sum += o.flipped(t, j);
    s.random.push_back(sum / static_cast<double>(o.after.random.size()));
  }
  return s;
}

DeactivationEffect LocalizePipeline::effect(const Outcomes& o, const Matrix2& after, const ExpertList& experts) const {
  const std::size_t NL = qs_.languages.size();
  DeactivationEffect e;
  e.experts = experts;
  std::vector<PairOutcome> outcomes;
  for (std::size_t j = 0; j < o.pairs.size(); ++j) {
    const Bucket before = o.before(j);
    outcomes.push_back({qs_.questions[o.pairs[j] / NL].id, qs_.languages[o.pairs[j] % NL], before, bucket_at(after, static_cast<int>(j))});
    if (before == Bucket::Success) e.turned_wrong.push_back(o.flipped(after, j));
  }
  e.flips = count_flips(outcomes);
  return e;
}

void LocalizePipeline::summaries(LocalizationResult& r, const Outcomes& o, const Matrix2* unrelated_before,
                                 const Matrix2* unrelated_after) {
  r.effect = effect(o, o.after.chosen, r.effect.experts);
  r.popular = effect(o, o.after.popular, r.popular.experts);
  for (std::size_t d = 0; d < r.random.size(); ++d) r.random[d] = effect(o, o.after.random[d], r.random[d].experts);
  for (std::size_t c = 0; c < r.curve.size(); ++c) r.curve[c].flips = effect(o, o.after.curve[c], {}).flips;
  effect_summaries(r, o);
  for (std::size_t l = 0; l < qs_.languages.size(); ++l) {
    const Series s = series(o, Bucket::Success, static_cast<long>(l));
    const std::string g = LocalizeResults::effect_by_language_group(qs_.languages[l]);
    out_.write_summary(g, record(S::kChosen, s.chosen, s.question, false));
    out_.write_summary(g, record(S::kPopular, s.popular, s.question, false));
    out_.write_summary(g, record(S::kRandom, s.random, s.question, false));
  }
  for (std::size_t c = 0; c < r.curve.size(); ++c) {
    std::vector<double> v;
    std::vector<std::size_t> q;
    for (std::size_t j = 0; j < o.pairs.size(); ++j)
      if (o.before(j) == Bucket::Success) {
        v.push_back(o.flipped(o.after.curve[c], j));
        q.push_back(o.pairs[j] / qs_.languages.size());
      }
    out_.write_summary(LocalizeResults::curve_group(), record(S::curve_point(r.curve[c].n), v, q, false));
  }
  for (long l = -1; l < static_cast<long>(qs_.languages.size()); ++l) accuracy_summaries(o, l);
  if (unrelated_before) unrelated_summary(r, *unrelated_before, *unrelated_after);
}

// The chosen set's effect on the correct validation pairs against the controls, and its
// turned-right shares on the wrong ones (/localize/effect).
void LocalizePipeline::effect_summaries(LocalizationResult& r, const Outcomes& o) {
  auto minus = [](const std::vector<double>& a, const std::vector<double>& b) {
    std::vector<double> d(a.size());
    for (std::size_t i = 0; i < a.size(); ++i) d[i] = a[i] - b[i];
    return d;
  };
  const Series wrong = series(o, Bucket::Success, -1), right = series(o, Bucket::Failure, -1);
  const SummaryRecord chosen = record(S::kChosen, wrong.chosen, wrong.question, false);
  const SummaryRecord vs_random = record(S::kChosenMinusRandom, minus(wrong.chosen, wrong.random), wrong.question, true);
  for (const SummaryRecord& s :
       {chosen, record(S::kPopular, wrong.popular, wrong.question, false), record(S::kRandom, wrong.random, wrong.question, false),
        vs_random, record(S::kChosenMinusPopular, minus(wrong.chosen, wrong.popular), wrong.question, true),
        record(S::kChosenTurnedRight, right.chosen, right.question, false),
        record(S::kPopularTurnedRight, right.popular, right.question, false),
        record(S::kRandomTurnedRight, right.random, right.question, false)})
    out_.write_summary(LocalizeResults::effect_group(), s);
  r.share_turned_wrong = r.effect.flips.overall.share_turned_wrong();
  r.popular_share_turned_wrong = r.popular.flips.overall.share_turned_wrong();
  r.random_share_turned_wrong = wrong.random.empty() ? NAN : mean(wrong.random);
  r.share_ci = {chosen.ci_low, chosen.ci_high};
  r.difference_vs_random_ci = {vs_random.ci_low, vs_random.ci_high};
}

// Accuracy of one language (overall: language < 0): asked (all pairs), validation before and after
// the chosen set.
void LocalizePipeline::accuracy_summaries(const Outcomes& o, long language) {
  const std::size_t NL = qs_.languages.size();
  auto of_language = [&](std::size_t p) { return language < 0 || p % NL == static_cast<std::size_t>(language); };
  auto success = [](Bucket b) { return b == Bucket::Success ? 1.0 : 0.0; };
  std::vector<double> all, before, after_chosen;
  std::vector<std::size_t> qa, qv;
  for (int p = 0; p < o.asked.rows; ++p)
    if (of_language(static_cast<std::size_t>(p))) {
      all.push_back(success(bucket_at(o.asked, p)));
      qa.push_back(static_cast<std::size_t>(p) / NL);
    }
  for (std::size_t j = 0; j < o.pairs.size(); ++j)
    if (of_language(o.pairs[j])) {
      before.push_back(success(o.before(j)));
      after_chosen.push_back(success(bucket_at(o.after.chosen, static_cast<int>(j))));
      qv.push_back(o.pairs[j] / NL);
    }
  const std::string g = LocalizeResults::accuracy_group(language < 0 ? "overall" : qs_.languages[static_cast<std::size_t>(language)]);
  out_.write_summary(g, record(S::kAsked, all, qa, false));
  out_.write_summary(g, record(S::kValidationBefore, before, qv, false));
  out_.write_summary(g, record(S::kValidationAfter, after_chosen, qv, false));
}

// The unrelated questions turned wrong by the chosen set (specificity).
void LocalizePipeline::unrelated_summary(LocalizationResult& r, const Matrix2& before, const Matrix2& after) {
  const std::size_t UL = o_.unrelated->languages.size();
  std::vector<PairOutcome> outcomes;
  std::vector<double> v;
  std::vector<std::size_t> q;
  for (int p = 0; p < before.rows; ++p) {
    const Bucket b = bucket_at(before, p), a = bucket_at(after, p);
    const std::size_t qi = static_cast<std::size_t>(p) / UL;
    outcomes.push_back({o_.unrelated->questions[qi].id, o_.unrelated->languages[static_cast<std::size_t>(p) % UL], b, a});
    if (b == Bucket::Success) {
      v.push_back(a == Bucket::Failure ? 1.0 : 0.0);
      q.push_back(qi);
    }
  }
  r.unrelated = count_flips(outcomes);
  out_.write_summary(LocalizeResults::effect_group(), record(S::kUnrelatedTurnedWrong, v, q, false));
}

void LocalizePipeline::write_inputs() {
  const ModelConfig& mc = engine_.model().config;
  LocalizeRunInfo info{mc.num_layers, mc.num_experts, mc.top_k,
                       std::string(routing_statistic_name(o_.statistic)), std::string(contrast_method_name(o_.contrast.method)),
                       std::string(rank_direction_name(o_.contrast.direction)), std::string(expert_selection_name(o_.selection)),
                       std::string(bucket_rule_name(o_.ask.bucket)), std::string(match_rule_name(o_.ask.match)),
                       std::string(bootstrap_unit_name(o_.bootstrap_unit))};
  out_.write_run_info(info);
  std::vector<std::string> ids;
  for (const Question& q : qs_.questions) ids.push_back(q.id);
  LocalizeSkips skips;
  for (const SkippedRecord& s : qs_.skipped.details) {
    skips.ids.push_back(s.id);
    skips.lines.push_back(static_cast<std::int64_t>(s.line));
    skips.reasons.push_back(s.message);
  }
  for (std::size_t k = 0; k < kRecordProblemCount; ++k)
    if (qs_.skipped.counts[k])
      skips.counts.emplace_back(std::string(problem_name(static_cast<RecordProblem>(k))),
                                static_cast<std::int64_t>(qs_.skipped.counts[k]));
  out_.write_questions(ids, qs_.languages, skips);
}

// The unrelated questions asked before and after the chosen set.
std::pair<Matrix2, Matrix2> LocalizePipeline::ask_unrelated(const ExpertList& chosen) {
  std::vector<std::string> uids;
  PairList upairs;
  for (std::size_t q = 0; q < o_.unrelated->questions.size(); ++q) {
    uids.push_back(o_.unrelated->questions[q].id);
    for (std::size_t l = 0; l < o_.unrelated->languages.size(); ++l) upairs.emplace_back(q, l);
  }
  out_.write_unrelated_questions(uids);
  Matrix2 before = ask_rows(kUnrelatedStage, "unrelated questions", *o_.unrelated, upairs, LocalizeResults::unrelated_outcome(),
                            LocalizeResults::unrelated_generated(), nullptr, false);
  const std::string name = LocalizeResults::unrelated_condition();
  out_.write_condition_experts(name, chosen);
  Matrix2 after = ask_rows(kUnrelatedStage, "condition " + name, *o_.unrelated, upairs, LocalizeResults::condition_outcome(name),
                           LocalizeResults::condition_generated(name), &chosen, false);
  return {std::move(before), std::move(after)};
}

LocalizationResult LocalizePipeline::run() {
  write_inputs();
  // 1. Every pair, question-major, with its routing (kept by the writing rank alone).
  const PairList all = all_pairs(qs_);
  executor_.set_shared_columns(LocalizeResults::kOutcomeWidth);
  Matrix2 asked = ask_rows(kAskingStage, "asking", qs_, all, LocalizeResults::asked_outcome(), LocalizeResults::asked_generated(),
                           nullptr, true);
  executor_.set_shared_columns(0);
  LocalizationResult r;
  if (sharded_ && !executor_.last_complete()) return stop_shard(std::move(r), "the contrast");
  if (executor_.writer() && keep_asked_)
    for (int p = 0; p < asked.rows; ++p) r.asked.push_back(asked_pair(asked, p));

  // 2. Split, contrast, chosen set, controls; then only the outcomes are needed.
  const NamedSets sets = condition_sets(r, asked);
  asked = first_columns(asked, LocalizeResults::kOutcomeWidth);

  // 3. The validation pairs under each set; the unrelated questions before and after the chosen set.
  PairList validation;
  for (std::size_t p : r.validation_pairs) validation.push_back(all[p]);
  ConditionTables after;
  for (const auto& [name, experts] : sets) {
    out_.write_condition_experts(name, experts);
    after.add(ask_rows(kConditionsStage, "condition " + name, qs_, validation, LocalizeResults::condition_outcome(name),
                       LocalizeResults::condition_generated(name), &experts, false),
              o_.control_draws);
  }
  std::optional<std::pair<Matrix2, Matrix2>> unrelated;
  if (o_.unrelated) unrelated = ask_unrelated(r.chosen);

  // 4. Summaries.
  if (sharded_) return stop_shard(std::move(r), "the summaries");
  summaries(r, {asked, r.validation_pairs, after}, unrelated ? &unrelated->first : nullptr,
            unrelated ? &unrelated->second : nullptr);
  file_.complete();
  return r;
}

}  // namespace moetrace::localize
