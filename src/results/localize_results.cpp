#include "results/localize_results.h"

#include <cmath>

#include <fmt/format.h>

#include "results/h5_file.h"
#include "util/error.h"

namespace moetrace {

namespace L = layout::localize;

namespace {

std::string parent_of(const std::string& dataset) { return dataset.substr(0, dataset.rfind('/')); }

}  // namespace

std::vector<double> LocalizeResults::encode_outcome(const StoredOutcome& o, int max_new_tokens) {
  std::vector<double> row(L::kOutcomeColumns + static_cast<std::size_t>(max_new_tokens), -1.0);
  row[L::kOutcomeBucket] = o.success ? 1.0 : 0.0;
  row[L::kOutcomeMatch] = static_cast<double>(o.match);
  row[L::kOutcomeLogprob] = o.answer_logprob;
  row[L::kOutcomeStopId] = o.stop_id;
  row[L::kOutcomeGenerated] = static_cast<double>(o.generated.size());
  for (std::size_t k = 0; k < o.generated.size(); ++k) row[L::kOutcomeColumns + k] = o.generated[k];
  return row;
}

StoredOutcome LocalizeResults::decode_outcome(const double* row, int max_new_tokens) {
  StoredOutcome o;
  o.success = success(row);
  o.match = static_cast<int>(row[L::kOutcomeMatch]);
  o.answer_logprob = row[L::kOutcomeLogprob];
  o.stop_id = static_cast<int>(row[L::kOutcomeStopId]);
  const int n = static_cast<int>(row[L::kOutcomeGenerated]);
  for (int k = 0; k < n && k < max_new_tokens; ++k) o.generated.push_back(static_cast<int>(row[L::kOutcomeColumns + k]));
  return o;
}

std::vector<TableShape> LocalizeResults::table_shapes(std::uint64_t pairs, std::uint64_t validation_pairs, std::uint64_t conditions,
                                                      std::uint64_t unrelated_pairs, int max_new_tokens, int layers, int experts,
                                                      int routing_statistics) {
  const auto M = static_cast<std::uint64_t>(max_new_tokens), W = static_cast<std::uint64_t>(L::kOutcomeColumns);
  std::vector<TableShape> t{{pairs, W}, {pairs, M}};
  for (int s = 0; s < routing_statistics; ++s) t.push_back({pairs, static_cast<std::uint64_t>(layers) * static_cast<std::uint64_t>(experts)});
  for (std::uint64_t c = 0; c < conditions; ++c) t.insert(t.end(), {{validation_pairs, W}, {validation_pairs, M}});
  if (unrelated_pairs > 0)
    for (int k = 0; k < 2; ++k) t.insert(t.end(), {{unrelated_pairs, W}, {unrelated_pairs, M}});
  return t;
}

std::string LocalizeResults::asked_outcome() { return std::string(L::kAsked) + "/outcome"; }
std::string LocalizeResults::asked_generated() { return std::string(L::kAsked) + "/generated"; }
std::string LocalizeResults::asked_routing(const std::string& s) { return std::string(L::kAsked) + "/routing/" + s; }
std::string LocalizeResults::condition_outcome(const std::string& c) { return std::string(L::kConditions) + "/" + c + "/outcome"; }
std::string LocalizeResults::condition_generated(const std::string& c) {
  return std::string(L::kConditions) + "/" + c + "/generated";
}
std::string LocalizeResults::unrelated_outcome() { return std::string(L::kUnrelated) + "/asked/outcome"; }
std::string LocalizeResults::unrelated_generated() { return std::string(L::kUnrelated) + "/asked/generated"; }
std::string LocalizeResults::effect_group() { return L::kEffect; }
std::string LocalizeResults::effect_by_language_group(const std::string& l) { return std::string(L::kEffectByLanguage) + "/" + l; }
std::string LocalizeResults::curve_group() { return L::kCurve; }
std::string LocalizeResults::accuracy_group(const std::string& l) { return std::string(L::kAccuracy) + "/" + l; }

void LocalizeResults::write_run_info(const LocalizeRunInfo& i) {
  file_.set_attr(L::kRoot, "layers", i.layers);
  file_.set_attr(L::kRoot, "experts", i.experts);
  file_.set_attr(L::kRoot, "top_k", i.top_k);
  for (auto [k, v] : {std::pair{"statistic", &i.statistic}, std::pair{"method", &i.method},
                      std::pair{"direction", &i.direction}, std::pair{"selection", &i.selection},
                      std::pair{"bucket", &i.bucket}, std::pair{"match", &i.match},
                      std::pair{"bootstrap_unit", &i.bootstrap_unit}})
    file_.set_attr(L::kRoot, k, *v);
}

void LocalizeResults::write_questions(const std::vector<std::string>& ids, const std::vector<std::string>& languages,
                                      const LocalizeSkips& s) {
  file_.h5().create_groups(parent_of(L::kQuestionIds));
  file_.write_strings(L::kQuestionIds, ids);
  file_.write_strings(L::kLanguages, languages);
  const std::string g = L::kSkipped;
  file_.h5().create_groups(g);
  file_.write_strings(g + "/id", s.ids);
  file_.h5().write_int64(g + "/line", {s.lines.size()}, s.lines.data());
  file_.write_strings(g + "/reason", s.reasons);
  std::int64_t total = 0;
  for (const auto& [problem, n] : s.counts) {
    file_.set_attr(g, problem, n);
    total += n;
  }
  file_.set_attr(g, "total", total);
}

void LocalizeResults::write_split(const std::vector<int>& split) {
  file_.write_ints(L::kQuestionSplit, split);
  file_.set_attr(L::kQuestionSplit, "meaning", std::string("0 = discovery, 1 = validation"));
}

void LocalizeResults::write_contrast(const LocalizeContrastTable& t) {
  const std::string g = L::kContrast;
  file_.h5().create_groups(g);
  for (auto [name, v] : {std::pair{"mean_success", &t.mean_success}, std::pair{"mean_failure", &t.mean_failure},
                         std::pair{"effect", &t.effect}, std::pair{"statistic", &t.statistic}, std::pair{"df", &t.df},
                         std::pair{"p", &t.p}, std::pair{"q", &t.q}})
    file_.write_vector(g + "/" + name, *v);
  file_.write_ints(g + "/top_global", t.top_global);
  file_.write_ints(g + "/top_per_layer", t.top_per_layer);
  file_.set_attr(g + "/top_per_layer", "top_n", t.top_n);
  file_.set_attr(g, "n_success", t.n_success);
  file_.set_attr(g, "n_failure", t.n_failure);
  file_.set_attr(g, "n_questions", t.n_questions);
  file_.set_attr(g, "n_mixed_questions", t.n_mixed_questions);
}

void LocalizeResults::write_validation_pairs(const std::vector<int>& rows) {
  file_.h5().create_groups(L::kRoot);
  file_.write_ints(L::kValidationPairs, rows);
}

void LocalizeResults::write_condition_experts(const std::string& c, const std::vector<std::pair<int, int>>& experts) {
  const std::string g = std::string(L::kConditions) + "/" + c;
  file_.h5().create_groups(g);
  std::vector<int> flat;
  for (auto [l, e] : experts) {
    flat.push_back(l);
    flat.push_back(e);
  }
  file_.write_ints(g + "/experts", flat);
}

void LocalizeResults::write_unrelated_questions(const std::vector<std::string>& ids) {
  file_.h5().create_groups(std::string(L::kUnrelated) + "/questions");
  file_.write_strings(std::string(L::kUnrelated) + "/questions/id", ids);
}

namespace {

// The decoding columns of an outcome matrix, checked: generated a count, stop id -1 or a token id.
std::vector<StoredDecode> read_decodes(const ResultsFile& f, const std::string& name) {
  const h5::Array<double> m = f.read_matrix(name);
  if (m.shape.size() != 2 || m.shape[1] < static_cast<std::size_t>(L::kOutcomeColumns))
    h5::fail_damaged(f.path(), "dataset '" + name + "'", fmt::format("expected [rows, >= {}] values", L::kOutcomeColumns));
  const std::vector<bool> done = f.done_rows(name);
  if (done.size() != m.shape[0]) h5::fail_damaged(f.path(), "dataset '" + name + "_done'", "one flag per row expected");
  std::vector<StoredDecode> out(m.shape[0]);
  for (std::size_t r = 0; r < out.size(); ++r) {
    if (!done[r]) continue;
    const double* row = m.data.data() + r * m.shape[1];
    const double generated = row[L::kOutcomeGenerated], stop = row[L::kOutcomeStopId];
    if (!(generated >= 0 && generated <= 1e9 && generated == std::floor(generated)) || !(stop >= -1 && stop == std::floor(stop)))
      h5::fail_damaged(f.path(), "dataset '" + name + "'", fmt::format("row {}: generated {} and stop id {} are not a decoding", r, generated, stop));
    out[r] = {true, static_cast<int>(generated), stop >= 0};
  }
  return out;
}

}  // namespace

LocalizeDecisions read_localize_decisions(const std::string& path) {
  ResultsFile f(path, ResultsFile::Mode::Read);
  if (!f.has(L::kRoot)) fail_input("{}: not a results file of moetrace localize (no {})", path, L::kRoot);
  LocalizeDecisions d;
  d.path = path;
  d.config_text = f.stored_config_text();
  if ((d.has_asked = f.has(LocalizeResults::asked_outcome()))) d.asked = read_decodes(f, LocalizeResults::asked_outcome());
  if ((d.has_unrelated = f.has(LocalizeResults::unrelated_outcome())))
    d.unrelated = read_decodes(f, LocalizeResults::unrelated_outcome());
  if (f.has(L::kConditions))
    for (const std::string& name : f.h5().children(L::kConditions))
      if (f.has(LocalizeResults::condition_outcome(name)))
        d.conditions[name] = read_decodes(f, LocalizeResults::condition_outcome(name));
  return d;
}

}  // namespace moetrace
