#include "results/localize_report_data.h"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <limits>

#include <fmt/format.h>

#include "results/localize_layout.h"
#include "results/localize_results.h"

namespace moetrace {
namespace {

namespace L = layout::localize;
namespace S = localize_summary;

std::string attr_or(const h5::File& h, const std::string& o, const char* name, const std::string& fallback = "") {
  return h.exists(o) && h.has_attr(o, name) ? h.attr_string(o, name) : fallback;
}

// Reads a localize results file; every check names the file and the dataset.
class Reader {
 public:
  explicit Reader(const std::string& path) : f_(path, ResultsFile::Mode::Read), h_(f_.h5()) {}

  LocalizeReportData read() {
    d_.path = f_.path();
    d_.provenance = read_report_provenance(f_);
    if (!h_.exists(L::kRoot)) h5::fail_damaged(d_.path, std::string("group '") + L::kRoot + "'", "it is missing: not a localize results file");
    read_attrs();
    read_questions();
    read_asked();
    read_contrast();
    read_conditions();
    read_summaries();
    read_unrelated();
    rank_top_experts();
    return std::move(d_);
  }

 private:
  [[noreturn]] void damaged(const std::string& dataset, const std::string& what) const {
    h5::fail_damaged(d_.path, "dataset '" + dataset + "'", what);
  }

  // Integers of a dataset, each checked to lie in [lo, hi].
  std::vector<int> ints(const std::string& name, std::int64_t lo, std::int64_t hi) const {
    std::vector<int> out;
    for (std::int64_t v : h_.read_int(name).data) {
      if (v < lo || v > hi) damaged(name, fmt::format("value {} outside [{}, {}]", v, lo, hi));
      out.push_back(static_cast<int>(v));
    }
    return out;
  }

  std::vector<double> vector_of(const std::string& name, std::size_t n) const {
    auto a = h_.read_double(name);
    if (a.shape.size() != 1 || a.data.size() != n) damaged(name, fmt::format("expected {} values, found {}", n, a.data.size()));
    return std::move(a.data);
  }

  // A [rows, cols] outcome-like matrix; rows must be `rows` when given.
  h5::Array<double> matrix(const std::string& name, std::size_t cols, std::size_t rows = std::numeric_limits<std::size_t>::max()) const {
    auto a = f_.read_matrix(name);
    if (a.shape.size() != 2 || a.shape[1] != cols || (rows != std::numeric_limits<std::size_t>::max() && a.shape[0] != rows))
      damaged(name, fmt::format("expected shape [{}, {}]", rows == std::numeric_limits<std::size_t>::max() ? std::string("rows") : std::to_string(rows), cols));
    return a;
  }

  std::int64_t attr_int_in(const std::string& o, const char* name, std::int64_t lo, std::int64_t hi) const {
    const std::int64_t v = h_.attr_int(o, name);
    if (v < lo || v > hi)
      h5::fail_damaged(d_.path, fmt::format("attribute '{}' of '{}'", name, o), fmt::format("value {} outside [{}, {}]", v, lo, hi));
    return v;
  }

  void read_attrs() {
    const std::string r = L::kRoot;
    constexpr std::int64_t kMax = 1 << 20;  // far beyond any model; keeps layers * experts in range
    d_.layers = attr_int_in(r, "layers", 1, kMax);
    d_.experts = attr_int_in(r, "experts", 1, kMax);
    d_.top_k = attr_int_in(r, "top_k", 1, d_.experts);
    for (auto [name, out] : {std::pair{"statistic", &d_.statistic}, std::pair{"method", &d_.method},
                             std::pair{"direction", &d_.direction}, std::pair{"selection", &d_.selection},
                             std::pair{"bucket", &d_.bucket}, std::pair{"match", &d_.match},
                             std::pair{"bootstrap_unit", &d_.bootstrap_unit}})
      *out = attr_or(h_, r, name);
  }

  std::int64_t flat_size() const { return d_.layers * d_.experts; }

  void read_questions() {
    d_.languages = h_.read_strings(L::kLanguages);
    if (d_.languages.empty()) damaged(L::kLanguages, "no language");
    d_.question_ids = h_.read_strings(L::kQuestionIds);
    // The split is written once the questions are asked: absent from an unfinished run's file.
    if (h_.exists(L::kQuestionSplit) || d_.provenance.completed || h_.exists(L::kContrast)) {
      d_.question_split = ints(L::kQuestionSplit, 0, 1);
      if (d_.question_split.size() != d_.question_ids.size())
        damaged(L::kQuestionSplit, fmt::format("{} values for {} question ids", d_.question_split.size(), d_.question_ids.size()));
    }
    read_skipped();
  }

  // Skip counts by problem: the integer attributes of /localize/skipped (all skipped records, the
  // stored list holds the first ones only), else one per stored reason.
  void read_skipped() {
    const std::string g = L::kSkipped;
    if (!h_.exists(g)) return;
    for (const std::string& name : h_.attr_names(g)) {
      if (name == "total") continue;
      const std::int64_t n = attr_int_in(g, name.c_str(), 0, std::numeric_limits<int>::max());
      if (n > 0) d_.skipped[name] = static_cast<int>(n);
    }
    const std::string reasons = g + "/reason";
    if (d_.skipped.empty() && h_.exists(reasons))
      for (const std::string& r : h_.read_strings(reasons)) ++d_.skipped[r];
  }

  std::size_t pairs() const { return d_.question_ids.size() * d_.languages.size(); }

  void read_asked() {
    const std::string outcome = std::string(L::kAsked) + "/outcome";
    if (!h_.exists(outcome)) return;
    d_.has_asked = true;
    const auto m = matrix(outcome, L::kOutcomeColumns, pairs());
    const auto done = f_.done_rows(outcome);
    const std::size_t nl = d_.languages.size();
    d_.buckets.resize(nl + 1);
    for (std::size_t l = 0; l < nl; ++l) d_.buckets[l].language = d_.languages[l];
    d_.buckets[nl].language = "overall";
    for (std::size_t row = 0; row < m.shape[0]; ++row) {
      if (row >= done.size() || !done[row]) continue;
      const double b = m.data[row * L::kOutcomeColumns + L::kOutcomeBucket];
      if (b != 0 && b != 1) damaged(outcome, fmt::format("row {}: bucket {} is neither 0 nor 1", row, b));
      for (LocalizeBuckets* k : {&d_.buckets[row % nl], &d_.buckets[nl]}) {
        ++k->pairs;
        (b == 1 ? k->success : k->failure)++;
      }
    }
  }

  void read_contrast() {
    const std::string g = L::kContrast;
    if (!h_.exists(g)) return;
    d_.has_contrast = true;
    const auto n = static_cast<std::size_t>(flat_size());
    for (auto [field, out] : {std::pair{"mean_success", &d_.mean_success}, std::pair{"mean_failure", &d_.mean_failure},
                              std::pair{"effect", &d_.effect}, std::pair{"statistic", &d_.statistic_value},
                              std::pair{"df", &d_.df}, std::pair{"p", &d_.p}, std::pair{"q", &d_.q}})
      *out = vector_of(g + "/" + field, n);
    d_.n_success = attr_int_in(g, "n_success", 0, std::numeric_limits<std::int64_t>::max());
    d_.n_failure = attr_int_in(g, "n_failure", 0, std::numeric_limits<std::int64_t>::max());
    d_.contrast_questions = attr_int_in(g, "n_questions", 0, std::numeric_limits<std::int64_t>::max());
    d_.mixed_questions = attr_int_in(g, "n_mixed_questions", 0, d_.contrast_questions);
    const std::string top = g + "/top_global", per_layer = g + "/top_per_layer";
    d_.top_global = ints(top, 0, flat_size() - 1);
    std::vector<int> sorted = d_.top_global;
    std::sort(sorted.begin(), sorted.end());
    if (std::adjacent_find(sorted.begin(), sorted.end()) != sorted.end()) damaged(top, "an expert appears twice");
    // [layer][rank] flat indices (as top_global), each within its row's layer, -1 padded.
    d_.top_per_layer = ints(per_layer, -1, flat_size() - 1);
    if (d_.top_per_layer.size() % static_cast<std::size_t>(d_.layers) != 0)
      damaged(per_layer, fmt::format("{} values is not a multiple of {} layers", d_.top_per_layer.size(), d_.layers));
    d_.top_n = static_cast<std::int64_t>(d_.top_per_layer.size()) / d_.layers;
    for (std::size_t i = 0; i < d_.top_per_layer.size(); ++i) {
      const std::int64_t v = d_.top_per_layer[i], layer = static_cast<std::int64_t>(i) / d_.top_n;
      if (v >= 0 && v / d_.experts != layer)
        damaged(per_layer, fmt::format("entry {} (layer {}) is expert {} of layer {}", i, layer, v % d_.experts, v / d_.experts));
    }
  }

  std::vector<LocalizeExpert> expert_pairs(const std::string& name) const {
    const std::vector<int> v = ints(name, 0, std::max(d_.layers, d_.experts) - 1);
    if (v.size() % 2 != 0) damaged(name, "an odd number of values (expected (layer, expert) pairs)");
    std::vector<LocalizeExpert> out;
    for (std::size_t i = 0; i < v.size(); i += 2) {
      if (v[i] >= d_.layers || v[i + 1] >= d_.experts)
        damaged(name, fmt::format("({}, {}) is not an expert of {} layers x {} experts", v[i], v[i + 1], d_.layers, d_.experts));
      out.push_back({v[i], v[i + 1]});
    }
    return out;
  }

  // The number after `prefix` in `name`, or -1 when `name` is not prefix<number>.
  static std::int64_t suffix_number(const std::string& name, const std::string& prefix) {
    if (name.rfind(prefix, 0) != 0 || name.size() == prefix.size()) return -1;
    std::int64_t v = -1;
    const char* b = name.data() + prefix.size();
    const auto [end, ec] = std::from_chars(b, name.data() + name.size(), v);
    return ec == std::errc() && end == name.data() + name.size() && v >= 0 ? v : -1;
  }

  void read_conditions() {
    if (h_.exists(L::kValidationPairs)) {
      d_.validation_pairs = ints(L::kValidationPairs, 0, static_cast<std::int64_t>(pairs()) - 1);
      if (!std::is_sorted(d_.validation_pairs.begin(), d_.validation_pairs.end()) ||
          std::adjacent_find(d_.validation_pairs.begin(), d_.validation_pairs.end()) != d_.validation_pairs.end())
        damaged(L::kValidationPairs, "not strictly ascending");
    }
    const std::string g = L::kConditions;
    if (!h_.exists(g)) return;
    // Order: chosen, popular, random_<d> by d, curve_<N> by N, unrelated_after; others by name.
    auto key = [](const std::string& n) {
      if (n == "chosen") return std::pair<int, std::int64_t>{0, 0};
      if (n == "popular") return std::pair<int, std::int64_t>{1, 0};
      if (auto d = suffix_number(n, "random_"); d >= 0) return std::pair<int, std::int64_t>{2, d};
      if (auto c = suffix_number(n, "curve_"); c >= 0) return std::pair<int, std::int64_t>{3, c};
      if (n == "unrelated_after") return std::pair<int, std::int64_t>{4, 0};
      return std::pair<int, std::int64_t>{5, 0};
    };
    std::vector<std::string> names = h_.children(g);
    std::stable_sort(names.begin(), names.end(), [&](const std::string& a, const std::string& b) {
      return key(a) != key(b) ? key(a) < key(b) : a < b;
    });
    for (const std::string& name : names) {
      LocalizeCondition c;
      c.name = name;
      const std::string base = g + "/" + name;
      c.experts = expert_pairs(base + "/experts");
      const std::string outcome = base + "/outcome";
      if (h_.exists(outcome)) {
        const auto m = matrix(outcome, L::kOutcomeColumns);
        c.rows = static_cast<std::int64_t>(m.shape[0]);
        for (bool b : f_.done_rows(outcome)) c.rows_done += b;
      }
      d_.conditions.push_back(std::move(c));
    }
  }

  void read_summaries() {
    d_.effect_records = f_.read_summaries(L::kEffect);
    const auto find = summary_or_nan;
    std::vector<std::string> groups = d_.languages;
    groups.push_back("overall");
    for (const std::string& lang : groups) {
      LocalizeLanguageSummary s;
      s.language = lang;
      const auto acc = f_.read_summaries(std::string(L::kAccuracy) + "/" + lang);
      s.asked = find(acc, S::kAsked);
      s.validation_before = find(acc, S::kValidationBefore);
      s.validation_after = find(acc, S::kValidationAfter);
      const std::string eg = std::string(L::kEffectByLanguage) + "/" + lang;
      const auto eff = lang == "overall" ? d_.effect_records : f_.read_summaries(eg);
      s.has_effect = !eff.empty();
      s.chosen = find(eff, S::kChosen);
      s.popular = find(eff, S::kPopular);
      s.random = find(eff, S::kRandom);
      d_.by_language.push_back(std::move(s));
    }
    for (const SummaryRecord& s : f_.read_summaries(L::kCurve)) {
      const std::int64_t n = suffix_number(s.name, S::kCurvePrefix);
      if (n < 1) h5::fail_damaged(d_.path, fmt::format("group '{}/{}'", L::kCurve, s.name), "its name is not n_<number>");
      d_.curve.push_back({n, s});
    }
    std::sort(d_.curve.begin(), d_.curve.end(), [](const auto& a, const auto& b) { return a.n < b.n; });
  }

  void read_unrelated() {
    const std::string ids = std::string(L::kUnrelated) + "/questions/id";
    if (!h_.exists(L::kUnrelated)) return;
    d_.unrelated_questions = static_cast<std::int64_t>(h_.read_strings(ids).size());
    const std::string outcome = std::string(L::kUnrelated) + "/asked/outcome";
    if (!h_.exists(outcome)) return;
    const auto m = matrix(outcome, L::kOutcomeColumns);
    const auto done = f_.done_rows(outcome);
    for (std::size_t row = 0; row < m.shape[0]; ++row) {
      if (row >= done.size() || !done[row]) continue;
      ++d_.unrelated_pairs;
      d_.unrelated_correct_before += m.data[row * L::kOutcomeColumns + L::kOutcomeBucket] == 1;
    }
  }

  LocalizeContrastRow contrast_row(int rank, std::int64_t flat) const {
    LocalizeContrastRow r;
    r.rank = rank;
    r.at = {static_cast<int>(flat / d_.experts), static_cast<int>(flat % d_.experts)};
    const auto i = static_cast<std::size_t>(flat);
    r.mean_success = d_.mean_success[i];
    r.mean_failure = d_.mean_failure[i];
    r.effect = d_.effect[i];
    r.statistic = d_.statistic_value[i];
    r.df = d_.df[i];
    r.p = d_.p[i];
    r.q = d_.q[i];
    return r;
  }

  // The ranking the selection used: the global top_n, or the top_n of every layer (per_layer);
  // rows in the deactivated (chosen) set are marked.
  void rank_top_experts() {
    if (!d_.has_contrast) return;
    const std::size_t top_n = static_cast<std::size_t>(d_.top_n);
    if (d_.selection == "per_layer") {
      for (std::int64_t l = 0; l < d_.layers; ++l)
        for (std::size_t k = 0; k < top_n; ++k)
          if (const int i = d_.top_per_layer[static_cast<std::size_t>(l) * top_n + k]; i >= 0)
            d_.top_experts.push_back(contrast_row(static_cast<int>(k) + 1, i));
    } else {
      for (std::size_t k = 0; k < std::min(top_n, d_.top_global.size()); ++k)
        d_.top_experts.push_back(contrast_row(static_cast<int>(k) + 1, d_.top_global[k]));
    }
    if (const LocalizeCondition* chosen = d_.condition("chosen"))
      for (LocalizeContrastRow& r : d_.top_experts)
        r.chosen = std::find(chosen->experts.begin(), chosen->experts.end(), r.at) != chosen->experts.end();
  }

  ResultsFile f_;
  h5::File& h_;
  LocalizeReportData d_;
};

}  // namespace

bool is_localize_file(const std::string& path) {
  ResultsFile f(path, ResultsFile::Mode::Read);
  return f.h5().exists(layout::localize::kRoot);
}

const SummaryRecord* LocalizeReportData::effect_record(const std::string& name) const {
  for (const auto& s : effect_records)
    if (s.name == name) return &s;
  return nullptr;
}

const LocalizeCondition* LocalizeReportData::condition(const std::string& name) const {
  for (const auto& c : conditions)
    if (c.name == name) return &c;
  return nullptr;
}

std::size_t LocalizeReportData::random_draws() const {
  return static_cast<std::size_t>(std::count_if(conditions.begin(), conditions.end(),
                                                [](const LocalizeCondition& c) { return c.name.rfind("random_", 0) == 0; }));
}

LocalizeReportData read_localize_report_data(const std::string& path) { return Reader(path).read(); }

}  // namespace moetrace
