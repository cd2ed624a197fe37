#include "localize/localize_match.h"

#include <algorithm>
#include <array>
#include <cstdlib>
#include <memory>

#include <utf8proc.h>

#include "tokenizer/utf8.h"
#include "util/error.h"
#include "util/message.h"

namespace moetrace::localize {
namespace {

// Articles that carry no content of their own, as they read after normalisation (lower case;
// elided forms "l'" become the word "l"). Indefinite articles that double as the numeral "one"
// (de ein/eine, fr un/une, es un/una, it un/uno/una, pt um/uma, nl een) are not listed: in an
// answer to "how many" they are the answer. English "a/an" are, since English spells "one".
struct ArticleList {
  std::string_view language;
  std::span<const std::string_view> words;
};
constexpr std::array<std::string_view, 3> kEn = {"a", "an", "the"};
constexpr std::array<std::string_view, 6> kDe = {"der", "die", "das", "den", "dem", "des"};
constexpr std::array<std::string_view, 5> kFr = {"le", "la", "les", "l", "des"};
constexpr std::array<std::string_view, 6> kEs = {"el", "la", "los", "las", "unos", "unas"};
constexpr std::array<std::string_view, 7> kIt = {"il", "lo", "la", "i", "gli", "le", "l"};
constexpr std::array<std::string_view, 6> kPt = {"o", "a", "os", "as", "uns", "umas"};
constexpr std::array<std::string_view, 2> kNl = {"de", "het"};
constexpr std::array<ArticleList, 7> kArticles = {{{"en", kEn}, {"de", kDe}, {"fr", kFr}, {"es", kEs},
                                                   {"it", kIt}, {"pt", kPt}, {"nl", kNl}}};

std::string primary_subtag(std::string_view language) {
  std::string out(language.substr(0, language.find('-')));
  for (char& c : out)
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
  return out;
}

std::vector<char32_t> decode(std::string_view s) {  // s is valid UTF-8
  std::vector<char32_t> out;
  for (std::size_t i = 0; i < s.size();) {
    utf8proc_int32_t cp = 0;
    const auto n = utf8proc_iterate(reinterpret_cast<const utf8proc_uint8_t*>(s.data() + i),
                                    static_cast<utf8proc_ssize_t>(s.size() - i), &cp);
    MOETRACE_ASSERT(n > 0, "decode: invalid UTF-8 after utf8proc_map");
    out.push_back(static_cast<char32_t>(cp));
    i += static_cast<std::size_t>(n);
  }
  return out;
}

void append_utf8(std::string& out, char32_t cp) {
  utf8proc_uint8_t buf[4];
  const auto n = utf8proc_encode_char(static_cast<utf8proc_int32_t>(cp), buf);
  out.append(reinterpret_cast<const char*>(buf), static_cast<std::size_t>(n));
}

// The code point starting at s[i]; U+FFFD when none does.
char32_t code_point_at(std::string_view s, std::size_t i) {
  utf8proc_int32_t cp = 0;
  const auto n = utf8proc_iterate(reinterpret_cast<const utf8proc_uint8_t*>(s.data() + i),
                                  static_cast<utf8proc_ssize_t>(s.size() - i), &cp);
  return n > 0 ? static_cast<char32_t>(cp) : U'\uFFFD';
}

utf8proc_category_t category(char32_t cp) { return utf8proc_category(static_cast<utf8proc_int32_t>(cp)); }

bool is_punctuation(char32_t cp) {
  const auto c = category(cp);
  return c >= UTF8PROC_CATEGORY_PC && c <= UTF8PROC_CATEGORY_PO;
}

bool is_space(char32_t cp) {
  const auto c = category(cp);
  return c == UTF8PROC_CATEGORY_ZS || c == UTF8PROC_CATEGORY_ZL || c == UTF8PROC_CATEGORY_ZP || c == UTF8PROC_CATEGORY_CC;
}

bool is_digit(char32_t cp) { return category(cp) == UTF8PROC_CATEGORY_ND; }

bool is_word_char(char32_t cp) {  // letters, marks, numbers
  const auto c = category(cp);
  return c >= UTF8PROC_CATEGORY_LU && c <= UTF8PROC_CATEGORY_NO;
}

// Scripts written without spaces between words (see the header).
bool unspaced_script(char32_t cp) {
  struct Range {
    char32_t lo, hi;
  };
  static constexpr Range kRanges[] = {
      {0x0E00, 0x0E7F},   // Thai
      {0x0E80, 0x0EFF},   // Lao
      {0x0F00, 0x0FFF},   // Tibetan
      {0x1000, 0x109F},   // Myanmar
      {0x1780, 0x17FF},   // Khmer
      {0x19E0, 0x19FF},   // Khmer symbols
      {0x3040, 0x309F},   // Hiragana
      {0x30A0, 0x30FF},   // Katakana
      {0x31F0, 0x31FF},   // Katakana phonetic extensions
      {0x3400, 0x4DBF},   // CJK extension A
      {0x4E00, 0x9FFF},   // CJK unified ideographs
      {0xF900, 0xFAFF},   // CJK compatibility ideographs
      {0x20000, 0x3134F}, // CJK extensions B-G
  };
  for (const Range& r : kRanges)
    if (cp >= r.lo && cp <= r.hi) return true;
  return false;
}

// Steps 1-2: lossy UTF-8, then NFKC + case fold + default ignorables removed.
std::vector<char32_t> nfkc_casefold(std::string_view text) {
  const std::string valid = tok::find_invalid_utf8(text) == std::string_view::npos ? std::string(text) : tok::utf8_lossy(text);
  utf8proc_uint8_t* mapped = nullptr;
  const auto n = utf8proc_map(reinterpret_cast<const utf8proc_uint8_t*>(valid.data()),
                              static_cast<utf8proc_ssize_t>(valid.size()), &mapped,
                              static_cast<utf8proc_option_t>(UTF8PROC_STABLE | UTF8PROC_COMPAT | UTF8PROC_COMPOSE |
                                                             UTF8PROC_CASEFOLD | UTF8PROC_IGNORE));
  std::unique_ptr<utf8proc_uint8_t, decltype(&std::free)> hold(mapped, &std::free);
  MOETRACE_ASSERT(n >= 0, std::string("utf8proc_map failed: ") + utf8proc_errmsg(n));
  return decode(std::string_view(reinterpret_cast<const char*>(mapped), static_cast<std::size_t>(n)));
}

}  // namespace

std::span<const std::string_view> articles_for(std::string_view language) {
  const std::string primary = primary_subtag(language);
  for (const ArticleList& a : kArticles)
    if (a.language == primary) return a.words;
  return {};
}

std::string normalise_answer(std::string_view text, std::string_view language) {
  const std::vector<char32_t> cps = nfkc_casefold(text);
  // Steps 3-4: punctuation and white space, split into words.
  std::vector<std::string> words(1);
  for (std::size_t i = 0; i < cps.size(); ++i) {
    const char32_t cp = cps[i];
    if (is_punctuation(cp)) {
      const bool between_digits = i > 0 && i + 1 < cps.size() && is_digit(cps[i - 1]) && is_digit(cps[i + 1]);
      if (between_digits) continue;
      if (!words.back().empty()) words.emplace_back();
    } else if (is_space(cp)) {
      if (!words.back().empty()) words.emplace_back();
    } else {
      append_utf8(words.back(), cp);
    }
  }
  if (words.back().empty()) words.pop_back();
  // Step 5: articles, unless every word is one.
  const auto articles = articles_for(language);
  auto is_article = [&](const std::string& w) { return std::find(articles.begin(), articles.end(), w) != articles.end(); };
  const bool all_articles = std::all_of(words.begin(), words.end(), is_article);
  std::string out;
  for (const std::string& w : words) {
    if (!all_articles && is_article(w)) continue;
    if (!out.empty()) out += ' ';
    out += w;
  }
  return out;
}

MatchRule parse_match_rule(std::string_view text, std::string_view what) {
  if (text == "exact") return MatchRule::Exact;
  if (text == "prefix") return MatchRule::ExactOrPrefix;
  fail_input("{}: unknown match rule \"{}\" (expected \"exact\" or \"prefix\")", what, truncate_for_message(text));
}

std::string_view match_rule_name(MatchRule rule) { return rule == MatchRule::Exact ? "exact" : "prefix"; }

MatchKind match_normalised(std::string_view output, std::string_view answer, MatchRule rule) {
  if (answer.empty() || output.size() < answer.size() || output.substr(0, answer.size()) != answer) return MatchKind::None;
  if (output.size() == answer.size()) return MatchKind::Exact;
  if (rule == MatchRule::Exact) return MatchKind::None;
  // Boundary: the code point after the prefix, and the answer's last one.
  std::size_t last_start = answer.size() - 1;
  while (last_start > 0 && (static_cast<unsigned char>(answer[last_start]) & 0xC0) == 0x80) --last_start;
  const char32_t n = code_point_at(output, answer.size()), l = code_point_at(answer, last_start);
  if (!is_word_char(n) || unspaced_script(n) || unspaced_script(l)) return MatchKind::Prefix;
  return MatchKind::None;
}

MatchKind match_answer(std::string_view decoded, std::span<const std::string> answers, std::string_view language,
                       MatchRule rule) {
  const std::string output = normalise_answer(decoded, language);
  MatchKind best = MatchKind::None;
  for (const std::string& a : answers) best = std::max(best, match_normalised(output, normalise_answer(a, language), rule));
  return best;
}

}  // namespace moetrace::localize
