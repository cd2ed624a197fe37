// `moetrace report` for localize files: text tables, JSON and CSV (fields: docs/report.md).
#include "protocols/localize_report.h"

#include <cmath>

#include <fmt/format.h>
#include <fmt/ostream.h>
#include <nlohmann/json.hpp>

#include "protocols/report.h"
#include "protocols/report_format.h"
#include "protocols/report_provenance_format.h"
#include "results/localize_results.h"

namespace moetrace {
namespace {

using json = nlohmann::ordered_json;
namespace S = localize_summary;

std::string expert_name(const LocalizeExpert& e) { return fmt::format("L{}E{:03d}", e.layer, e.expert); }

std::string interval(const SummaryRecord* s) {
  if (!s || std::isnan(s->mean)) return "n/a";
  return fmt::format("{} [{}, {}]", format_value(s->mean), format_value(s->ci_low), format_value(s->ci_high));
}

std::string share(const SummaryRecord& s) {
  return std::isnan(s.mean) ? "n/a" : fmt::format("{:.3f}", s.mean);
}

// A p- or q-value: fixed for ordinary sizes, scientific when tiny.
std::string pvalue(double v) {
  if (std::isnan(v)) return "n/a";
  return v >= 1e-3 || v == 0 ? fmt::format("{:.4f}", v) : fmt::format("{:.2e}", v);
}

std::string expert_list(const std::vector<LocalizeExpert>& v, std::size_t limit = 24) {
  std::string s;
  for (std::size_t i = 0; i < v.size() && i < limit; ++i) {
    if (i) s += ' ';
    s += expert_name(v[i]);
  }
  if (v.size() > limit) s += fmt::format(" ... ({} more)", v.size() - limit);
  return s;
}

void print_header(const LocalizeReportData& d, std::ostream& out) {
  fmt::print(out, "moetrace report: {} (localize)\n", d.path);
  print_report_provenance(d.provenance, out);
  fmt::print(out, "  {} layers x {} experts (top-{} routing); bucket {} (match {}); contrast {} of {} ({}), "
                  "selection {}; bootstrap over {}s\n",
             d.layers, d.experts, d.top_k, d.bucket, d.match, d.method, d.statistic, d.direction, d.selection,
             d.bootstrap_unit);
  int disc = 0, val = 0;
  for (int s : d.question_split) (s == 0 ? disc : val)++;
  fmt::print(out, "\nQuestions: {} ({}) x {} languages = {} pairs\n", d.question_ids.size(),
             d.question_split.empty() ? std::string("not split yet") : fmt::format("{} discovery, {} validation", disc, val),
             d.languages.size(), d.question_ids.size() * d.languages.size());
  for (const auto& [reason, n] : d.skipped) fmt::print(out, "  skipped {:>6}  {}\n", n, reason);
}

void print_buckets(const LocalizeReportData& d, std::ostream& out) {
  if (!d.has_asked) {
    fmt::print(out, "  not asked yet\n");
    return;
  }
  fmt::print(out, "\nBuckets by language (all asked pairs)\n");
  fmt::print(out, "  {:<10} {:>7} {:>8} {:>8} {:>9}\n", "language", "pairs", "success", "failure", "accuracy");
  for (const LocalizeBuckets& b : d.buckets)
    fmt::print(out, "  {:<10} {:>7} {:>8} {:>8} {:>9}\n", b.language, b.pairs, b.success, b.failure,
               std::isnan(b.accuracy()) ? std::string("n/a") : fmt::format("{:.3f}", b.accuracy()));
}

void print_top_experts(const LocalizeReportData& d, std::ostream& out) {
  if (!d.has_contrast) return;
  fmt::print(out, "\nContrast on discovery pairs: {} success, {} failure, {} questions ({} answered in some "
                  "languages and not others)\n",
             d.n_success, d.n_failure, d.contrast_questions, d.mixed_questions);
  fmt::print(out, "Top experts ({}; * = deactivated as the chosen set)\n",
             d.selection == "per_layer" ? fmt::format("top {} of every layer", d.top_n)
                                        : fmt::format("global top {}", d.top_n));
  fmt::print(out, "  {:>4}  {:>5}  {:>6}  {:>12}  {:>12}  {:>11}  {:>11}  {:>9}  {:>9}\n", "rank", "layer", "expert",
             "mean succ.", "mean fail.", "effect", "statistic", "p", "q");
  for (const LocalizeContrastRow& r : d.top_experts)
    fmt::print(out, "  {:>4}  {:>5}  {:>6}  {:>12}  {:>12}  {:>11}  {:>11}  {:>9}  {:>9}{}\n", r.rank, r.at.layer,
               r.at.expert, format_value(r.mean_success), format_value(r.mean_failure), format_value(r.effect),
               format_value(r.statistic), pvalue(r.p), pvalue(r.q), r.chosen ? " *" : "");
}

void print_effect(const LocalizeReportData& d, std::ostream& out) {
  if (const LocalizeCondition* c = d.condition(LocalizeResults::chosen_condition()))
    fmt::print(out, "\nDeactivated: chosen {} experts: {}\n", c->experts.size(), expert_list(c->experts));
  if (const LocalizeCondition* c = d.condition(LocalizeResults::popular_condition()))
    fmt::print(out, "  popular control (top {} by routing frequency): {}\n", c->experts.size(), expert_list(c->experts));
  if (const std::size_t draws = d.random_draws())
    fmt::print(out, "  random control: {} draws of {} experts, matched to the chosen set's layers\n", draws,
               d.condition(LocalizeResults::random_condition(0)) ? d.condition(LocalizeResults::random_condition(0))->experts.size() : 0);
  if (d.effect_records.empty()) return;
  fmt::print(out, "\nDeactivation effect on validation pairs ({} pairs): share of previously correct pairs turned "
                  "wrong, 95% bootstrap intervals\n",
             d.validation_pairs.size());
  fmt::print(out, "  {:<26} {:>6}  {:<38} {:>9}\n", "condition", "n", "share [95% CI]", "p (flip)");
  for (auto [name, label] : {std::pair{S::kChosen, "chosen"}, std::pair{S::kPopular, "popular control"},
                             std::pair{S::kRandom, "random control (mean)"}, std::pair{S::kChosenMinusRandom, "chosen - random"},
                             std::pair{S::kChosenMinusPopular, "chosen - popular"}}) {
    const SummaryRecord* s = d.effect_record(name);
    if (!s) continue;
    const bool diff = std::string(name).find("_minus_") != std::string::npos;
    fmt::print(out, "  {:<26} {:>6}  {:<38} {:>9}\n", label, s->n, interval(s), diff ? pvalue(s->p_value) : "");
  }
  const SummaryRecord* vr = d.effect_record(S::kChosenMinusRandom);
  const SummaryRecord* vp = d.effect_record(S::kChosenMinusPopular);
  const bool both = vr && vp && !std::isnan(vr->ci_low) && !std::isnan(vp->ci_low) && vr->ci_low > 0 && vp->ci_low > 0;
  fmt::print(out, "Verdict: chosen - random {}, chosen - popular {}: {}\n", interval_verdict(vr), interval_verdict(vp),
             both ? "the chosen experts' effect exceeds both controls"
                  : "the chosen experts' effect is not shown to exceed both controls");
  fmt::print(out, "\nTurned right (share of previously wrong validation pairs answered correctly after; near 0 expected)\n");
  for (auto [name, label] : {std::pair{S::kChosenTurnedRight, "chosen"}, std::pair{S::kPopularTurnedRight, "popular control"},
                             std::pair{S::kRandomTurnedRight, "random control (mean)"}})
    if (const SummaryRecord* s = d.effect_record(name))
      fmt::print(out, "  {:<26} {:>6}  {}\n", label, s->n, interval(s));
}

void print_languages(const LocalizeReportData& d, std::ostream& out) {
  bool any = false;
  for (const auto& s : d.by_language) any |= !std::isnan(s.asked.mean) || s.has_effect;
  if (!any) return;
  fmt::print(out, "\nBy language: accuracy (asked; validation before / after deactivating the chosen set) and "
                  "turned-wrong shares\n");
  fmt::print(out, "  {:<10} {:>7} {:>8} {:>8} {:>8} {:>8} {:>8} {:>8}\n", "language", "asked", "before", "after",
             "n", "chosen", "popular", "random");
  for (const LocalizeLanguageSummary& s : d.by_language)
    fmt::print(out, "  {:<10} {:>7} {:>8} {:>8} {:>8} {:>8} {:>8} {:>8}\n", s.language, share(s.asked),
               share(s.validation_before), share(s.validation_after), s.chosen.n, share(s.chosen), share(s.popular),
               share(s.random));
}

void print_curve(const LocalizeReportData& d, std::ostream& out) {
  if (d.curve.empty()) return;
  fmt::print(out, "\nEffect vs N (global top N deactivated): share of previously correct validation pairs turned wrong\n");
  for (const LocalizeCurvePoint& c : d.curve)
    fmt::print(out, "  N = {:>5}  n = {:>6}  {}\n", c.n, c.share.n, interval(&c.share));
  if (const SummaryRecord* r = d.effect_record(S::kRandom))
    fmt::print(out, "  random control at the chosen size: {}\n", interval(r));
}

void print_specificity(const LocalizeReportData& d, std::ostream& out) {
  const SummaryRecord* s = d.effect_record(S::kUnrelatedTurnedWrong);
  if (!s && d.unrelated_questions == 0) return;
  fmt::print(out, "\nSpecificity: {} unrelated questions, {} pairs, {} correct before; share turned wrong with the "
                  "chosen set deactivated: {}\n",
             d.unrelated_questions, d.unrelated_pairs, d.unrelated_correct_before, interval(s));
}

json summary_json(const SummaryRecord& s) {
  return {{"name", s.name},           {"n", s.n},
          {"mean", json_number(s.mean)},   {"ci_low", json_number(s.ci_low)},
          {"ci_high", json_number(s.ci_high)}, {"frac_positive", json_number(s.frac_positive)},
          {"p_sign_flip", json_number(s.p_value)}};
}

json experts_json(const std::vector<LocalizeExpert>& v) {
  json a = json::array();
  for (const LocalizeExpert& e : v) a.push_back(json::array({e.layer, e.expert}));
  return a;
}

json contrast_row_json(const LocalizeContrastRow& r) {
  return {{"rank", r.rank},
          {"layer", r.at.layer},
          {"expert", r.at.expert},
          {"mean_success", json_number(r.mean_success)},
          {"mean_failure", json_number(r.mean_failure)},
          {"effect", json_number(r.effect)},
          {"statistic", json_number(r.statistic)},
          {"df", json_number(r.df)},
          {"p", json_number(r.p)},
          {"q", json_number(r.q)},
          {"chosen", r.chosen}};
}

std::vector<std::string> summary_fields(const std::string& group, const SummaryRecord& s) {
  return {group, s.name, std::to_string(s.n), csv_number(s.mean), csv_number(s.ci_low), csv_number(s.ci_high),
          csv_number(s.frac_positive), csv_number(s.p_value)};
}

std::vector<std::string> contrast_fields(const LocalizeContrastRow& r) {
  return {std::to_string(r.rank), std::to_string(r.at.layer), std::to_string(r.at.expert), csv_number(r.mean_success),
          csv_number(r.mean_failure), csv_number(r.effect), csv_number(r.statistic), csv_number(r.df),
          csv_number(r.p), csv_number(r.q), r.chosen ? "1" : "0"};
}

}  // namespace

std::string interval_verdict(const SummaryRecord* s) {
  if (!s || std::isnan(s->ci_low) || std::isnan(s->ci_high)) return "not computed";
  return s->ci_low > 0 || s->ci_high < 0 ? "excludes zero" : "includes zero";
}

std::optional<LocalizeCsvTable> parse_localize_csv_table(const std::string& name) {
  for (auto [n, t] : {std::pair{"buckets", LocalizeCsvTable::Buckets}, std::pair{"experts", LocalizeCsvTable::Experts},
                      std::pair{"effects", LocalizeCsvTable::Effects}, std::pair{"languages", LocalizeCsvTable::Languages},
                      std::pair{"curve", LocalizeCsvTable::Curve}, std::pair{"contrast", LocalizeCsvTable::Contrast}})
    if (name == n) return t;
  return std::nullopt;
}

void print_localize_report(const LocalizeReportData& d, std::ostream& out) {
  print_header(d, out);
  print_buckets(d, out);
  print_top_experts(d, out);
  print_effect(d, out);
  print_languages(d, out);
  print_curve(d, out);
  print_specificity(d, out);
}

void write_localize_report_json(const LocalizeReportData& d, std::ostream& out) {
  json j;
  j["format"] = "moetrace-localize-report/1";
  j["file"] = d.path;
  j["provenance"] = report_provenance_json(d.provenance);
  j["run"] = {{"layers", d.layers},       {"experts", d.experts},     {"top_k", d.top_k},
              {"statistic", d.statistic}, {"method", d.method},       {"direction", d.direction},
              {"selection", d.selection}, {"bucket", d.bucket},       {"match", d.match},
              {"bootstrap_unit", d.bootstrap_unit}, {"top_n", d.top_n}};
  int disc = 0, val = 0;
  for (int s : d.question_split) (s == 0 ? disc : val)++;
  j["questions"] = {{"count", d.question_ids.size()}, {"discovery", disc}, {"validation", val},
                    {"languages", d.languages}, {"skipped", d.skipped},
                    {"validation_pairs", d.validation_pairs.size()}};
  json buckets = json::array();
  for (const LocalizeBuckets& b : d.buckets)
    buckets.push_back({{"language", b.language}, {"pairs", b.pairs}, {"success", b.success}, {"failure", b.failure},
                       {"accuracy", json_number(b.accuracy())}});
  j["buckets"] = buckets;
  j["contrast"] = nullptr;
  if (d.has_contrast) {
    json top = json::array();
    for (const LocalizeContrastRow& r : d.top_experts) top.push_back(contrast_row_json(r));
    j["contrast"] = {{"n_success", d.n_success}, {"n_failure", d.n_failure}, {"n_questions", d.contrast_questions},
                     {"n_mixed_questions", d.mixed_questions}, {"top_global", d.top_global}, {"top_experts", top}};
  }
  json conditions = json::array();
  for (const LocalizeCondition& c : d.conditions)
    conditions.push_back({{"name", c.name}, {"experts", experts_json(c.experts)}, {"rows", c.rows},
                          {"rows_done", c.rows_done}});
  j["conditions"] = conditions;
  json effect = json::array();
  for (const SummaryRecord& s : d.effect_records) effect.push_back(summary_json(s));
  j["effect"] = effect;
  j["verdict"] = {{"chosen_minus_random", interval_verdict(d.effect_record(S::kChosenMinusRandom))},
                  {"chosen_minus_popular", interval_verdict(d.effect_record(S::kChosenMinusPopular))}};
  json langs = json::array();
  for (const LocalizeLanguageSummary& s : d.by_language)
    langs.push_back({{"language", s.language}, {"asked", summary_json(s.asked)},
                     {"validation_before", summary_json(s.validation_before)},
                     {"validation_after", summary_json(s.validation_after)}, {"chosen", summary_json(s.chosen)},
                     {"popular", summary_json(s.popular)}, {"random", summary_json(s.random)}});
  j["by_language"] = langs;
  json curve = json::array();
  for (const LocalizeCurvePoint& c : d.curve) {
    json row = summary_json(c.share);
    row["experts"] = c.n;
    curve.push_back(row);
  }
  j["curve"] = curve;
  const SummaryRecord* u = d.effect_record(S::kUnrelatedTurnedWrong);
  j["specificity"] = {{"unrelated_questions", d.unrelated_questions}, {"unrelated_pairs", d.unrelated_pairs},
                      {"correct_before", d.unrelated_correct_before},
                      {"turned_wrong", u ? summary_json(*u) : json(nullptr)}};
  out << j.dump(2) << "\n";
}

namespace {

const std::vector<std::string> summary_head{"group", "record", "n", "mean", "ci_low", "ci_high", "frac_positive",
                                            "p_sign_flip"};
const std::vector<std::string> contrast_head{"rank", "layer", "expert", "mean_success", "mean_failure", "effect",
                                             "statistic", "df", "p", "q", "chosen"};

void write_effects_csv(const LocalizeReportData& d, std::ostream& out) {
  csv_row(out, summary_head);
  for (const SummaryRecord& s : d.effect_records) csv_row(out, summary_fields("effect", s));
  for (const LocalizeLanguageSummary& l : d.by_language) {
    for (const SummaryRecord* s : {&l.asked, &l.validation_before, &l.validation_after})
      if (!std::isnan(s->mean) || s->n > 0) csv_row(out, summary_fields("accuracy/" + l.language, *s));
    if (l.has_effect && l.language != "overall")
      for (const SummaryRecord* s : {&l.chosen, &l.popular, &l.random})
        csv_row(out, summary_fields("effect_by_language/" + l.language, *s));
  }
  for (const LocalizeCurvePoint& c : d.curve) csv_row(out, summary_fields("curve", c.share));
}

// Every (layer, expert), rank = position in the global ranking (empty beyond it).
void write_contrast_csv(const LocalizeReportData& d, std::ostream& out) {
  csv_row(out, contrast_head);
  if (!d.has_contrast) return;
  std::vector<int> rank(d.effect.size(), 0);
  for (std::size_t k = 0; k < d.top_global.size(); ++k) rank[static_cast<std::size_t>(d.top_global[k])] = static_cast<int>(k) + 1;
  const LocalizeCondition* chosen = d.condition(LocalizeResults::chosen_condition());
  for (std::size_t i = 0; i < d.effect.size(); ++i) {
    const LocalizeExpert at{static_cast<int>(static_cast<std::int64_t>(i) / d.experts),
                            static_cast<int>(static_cast<std::int64_t>(i) % d.experts)};
    LocalizeContrastRow r{rank[i], at, d.mean_success[i], d.mean_failure[i], d.effect[i], d.statistic_value[i],
                          d.df[i], d.p[i], d.q[i],
                          chosen && std::find(chosen->experts.begin(), chosen->experts.end(), at) != chosen->experts.end()};
    std::vector<std::string> f = contrast_fields(r);
    if (r.rank == 0) f[0] = "";
    csv_row(out, f);
  }
}

}  // namespace

void write_localize_report_csv(const LocalizeReportData& d, LocalizeCsvTable table, std::ostream& out) {
  switch (table) {
    case LocalizeCsvTable::Buckets:
      csv_row(out, {"language", "pairs", "success", "failure", "accuracy"});
      for (const LocalizeBuckets& b : d.buckets)
        csv_row(out, {b.language, std::to_string(b.pairs), std::to_string(b.success), std::to_string(b.failure),
                      csv_number(b.accuracy())});
      return;
    case LocalizeCsvTable::Experts:
      csv_row(out, contrast_head);
      for (const LocalizeContrastRow& r : d.top_experts) csv_row(out, contrast_fields(r));
      return;
    case LocalizeCsvTable::Effects:
      write_effects_csv(d, out);
      return;
    case LocalizeCsvTable::Languages:
      csv_row(out, {"language", "pairs", "success", "accuracy_asked", "validation_before", "validation_after",
                    "turned_wrong_n", "chosen", "chosen_ci_low", "chosen_ci_high", "popular", "random"});
      for (std::size_t i = 0; i < d.by_language.size(); ++i) {
        const LocalizeLanguageSummary& s = d.by_language[i];
        const bool b = i < d.buckets.size();
        csv_row(out, {s.language, b ? std::to_string(d.buckets[i].pairs) : "", b ? std::to_string(d.buckets[i].success) : "",
                      csv_number(s.asked.mean), csv_number(s.validation_before.mean), csv_number(s.validation_after.mean),
                      std::to_string(s.chosen.n), csv_number(s.chosen.mean), csv_number(s.chosen.ci_low),
                      csv_number(s.chosen.ci_high), csv_number(s.popular.mean), csv_number(s.random.mean)});
      }
      return;
    case LocalizeCsvTable::Curve:
      csv_row(out, {"experts", "n", "mean", "ci_low", "ci_high"});
      for (const LocalizeCurvePoint& c : d.curve)
        csv_row(out, {std::to_string(c.n), std::to_string(c.share.n), csv_number(c.share.mean),
                      csv_number(c.share.ci_low), csv_number(c.share.ci_high)});
      return;
    case LocalizeCsvTable::Contrast:
      write_contrast_csv(d, out);
      return;
  }
}

}  // namespace moetrace
