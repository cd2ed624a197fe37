// Answer normalisation and matching (docs/localize.md, "Answer matching"): each rule on its own,
// the article table per language, and the exact / prefix match with its boundary rule.
#define BOOST_TEST_MODULE localize_match
#include <boost/test/unit_test.hpp>

#include <ostream>
#include <string>
#include <vector>

#include "localize/localize_match.h"
#include "tokenizer/utf8.h"
#include "support/input_error.h"
#include "util/error.h"

namespace moetrace::localize {
std::ostream& operator<<(std::ostream& os, MatchKind k) {
  return os << (k == MatchKind::Exact ? "exact" : k == MatchKind::Prefix ? "prefix" : "none");
}
}  // namespace moetrace::localize

using namespace moetrace;
using namespace moetrace::localize;

namespace {

std::string norm(const std::string& s, const std::string& lang = "ja") { return normalise_answer(s, lang); }

MatchKind match(const std::string& decoded, std::vector<std::string> answers, const std::string& lang = "en",
                MatchRule rule = MatchRule::ExactOrPrefix) {
  return match_answer(decoded, answers, lang, rule);
}

}  // namespace

// "ja" has no articles: these cases isolate one rule each.
BOOST_AUTO_TEST_CASE(nfkc) {
  BOOST_TEST(norm("\uFB01n") == "fin");                    // ligature fi
  BOOST_TEST(norm("\uFF30\uFF41\uFF52\uFF49\uFF53") == "paris");  // fullwidth Latin
  BOOST_TEST(norm("\u2460\u00B2") == "12");                // circled one, superscript two
  BOOST_TEST(norm("e\u0301") == norm("\u00E9"));           // decomposed = composed
  BOOST_TEST(norm("e\u0301") == "\u00E9");                 // and composed (NFKC, not NFKD)
  BOOST_TEST(norm("\uFF76\uFF9E") == "\u30AC");            // halfwidth katakana ka + voiced mark -> ga
  BOOST_TEST(norm("\u2163") == "iv");                      // Roman numeral four
}

BOOST_AUTO_TEST_CASE(case_fold) {
  BOOST_TEST(norm("PARIS") == "paris");
  BOOST_TEST(norm("STRASSE") == norm("Stra\u00DFe"));      // sharp s folds to ss
  BOOST_TEST(norm("\u039F\u0394\u039F\u03A3") == norm("\u03BF\u03B4\u03BF\u03C2"));  // final sigma
  BOOST_TEST(norm("\u0414\u041E\u041D") == "\u0434\u043E\u043D");  // Cyrillic
}

BOOST_AUTO_TEST_CASE(default_ignorables_removed) {
  BOOST_TEST(norm("Mont\u00ADblanc") == "montblanc");      // soft hyphen
  BOOST_TEST(norm("ab\u200Bcd") == "abcd");                // zero-width space
  BOOST_TEST(norm("\u0642\u0637\u0628\u200C\u0632\u0627\u062F\u0647") == "\u0642\u0637\u0628\u0632\u0627\u062F\u0647");  // ZWNJ
}

BOOST_AUTO_TEST_CASE(punctuation) {
  BOOST_TEST(norm("Paris!") == "paris");
  BOOST_TEST(norm("\u00ABParis\u00BB") == "paris");        // guillemets
  BOOST_TEST(norm("\"Paris.\"") == "paris");
  BOOST_TEST(norm("Jean-Paul") == "jean paul");            // between letters: a space
  BOOST_TEST(norm("Jean\u2014Paul") == "jean paul");       // em dash
  BOOST_TEST(norm("1,000") == "1000");                     // between digits: removed
  BOOST_TEST(norm("3.5") == "35");
  BOOST_TEST(norm("1,000.") == "1000");
  BOOST_TEST(norm("\u6771\u4EAC\u3002") == "\u6771\u4EAC");  // ideographic full stop
  BOOST_TEST(norm("\u0661\u066B\u0665") == "\u0661\u0665");  // Arabic-Indic digits around the Arabic decimal separator
  BOOST_TEST(norm("a\u060Cb") == "a b");                   // Arabic comma
  BOOST_TEST(norm("(x)") == "x");
  // Symbols are kept.
  BOOST_TEST(norm("$5") == "$5");
  BOOST_TEST(norm("C++") == "c++");
  BOOST_TEST(norm("50\u00B0") == "50\u00B0");
}

BOOST_AUTO_TEST_CASE(white_space) {
  BOOST_TEST(norm("  Paris \t\n France  ") == "paris france");
  BOOST_TEST(norm("Paris\u00A0France") == "paris france");  // no-break space
  BOOST_TEST(norm("Paris\u3000France") == "paris france");  // ideographic space
  BOOST_TEST(norm("Paris\u2028France") == "paris france");  // line separator
  BOOST_TEST(norm(std::string("a\0b", 3)) == "a b");        // control characters count as space
  BOOST_TEST(norm(" \t ") == "");
  BOOST_TEST(norm("") == "");
}

BOOST_AUTO_TEST_CASE(invalid_utf8_becomes_replacement_character) {
  BOOST_TEST(norm("Par\xFFis") == "par\uFFFDis");
  BOOST_TEST(norm("Salzburg \xE5\xB9") == "salzburg \uFFFD");  // cut inside a character: one maximal subpart
}

BOOST_AUTO_TEST_CASE(articles_per_language) {
  BOOST_TEST(normalise_answer("The Beatles", "en") == "beatles");
  BOOST_TEST(normalise_answer("an apple a day", "en") == "apple day");
  BOOST_TEST(normalise_answer("Das Schwarze Meer", "de") == "schwarze meer");
  BOOST_TEST(normalise_answer("der Herr der Ringe", "de") == "herr ringe");
  BOOST_TEST(normalise_answer("ein", "de") == "ein");             // doubles as "one": kept
  BOOST_TEST(normalise_answer("eine Katze", "de") == "eine katze");
  BOOST_TEST(normalise_answer("La Mer Noire", "fr") == "mer noire");
  BOOST_TEST(normalise_answer("l'homme", "fr") == "homme");       // elided article
  BOOST_TEST(normalise_answer("un", "fr") == "un");
  BOOST_TEST(normalise_answer("Los Angeles", "es") == "angeles");
  BOOST_TEST(normalise_answer("unos libros", "es") == "libros");
  BOOST_TEST(normalise_answer("Il Gattopardo", "it") == "gattopardo");
  BOOST_TEST(normalise_answer("l'Aquila", "it") == "aquila");
  BOOST_TEST(normalise_answer("O Alquimista", "pt") == "alquimista");
  BOOST_TEST(normalise_answer("O Alquimista", "pt-BR") == "alquimista");  // primary subtag
  BOOST_TEST(normalise_answer("De Nachtwacht", "nl") == "nachtwacht");
  BOOST_TEST(normalise_answer("het", "nl") == "het");             // every word an article: kept
  BOOST_TEST(normalise_answer("A", "en") == "a");
  BOOST_TEST(normalise_answer("The The", "en") == "the the");
  // Another language's articles are words.
  BOOST_TEST(normalise_answer("The Beatles", "de") == "the beatles");
  BOOST_TEST(normalise_answer("Die Hard", "en") == "die hard");
  BOOST_TEST(normalise_answer("The Beatles", "ja") == "the beatles");
  // Only whole words: "theatre" is not "the" + "atre".
  BOOST_TEST(normalise_answer("Theatre", "en") == "theatre");
  BOOST_TEST(articles_for("EN").size() == 3u);
  BOOST_TEST(articles_for("sv").empty());
  BOOST_TEST(articles_for("").empty());
}

BOOST_AUTO_TEST_CASE(exact_match) {
  BOOST_TEST(match("Paris", {"Paris"}, "en", MatchRule::Exact) == MatchKind::Exact);
  BOOST_TEST(match("  the PARIS. ", {"Paris"}, "en", MatchRule::Exact) == MatchKind::Exact);
  BOOST_TEST(match("Paris, France", {"Paris"}, "en", MatchRule::Exact) == MatchKind::None);
  BOOST_TEST(match("Lyon", {"Paris", "Lyon"}, "fr", MatchRule::Exact) == MatchKind::Exact);
  BOOST_TEST(match("1 000", {"1000"}, "en", MatchRule::Exact) == MatchKind::None);  // a space is not punctuation
  BOOST_TEST(match("1,000", {"1000"}, "en", MatchRule::Exact) == MatchKind::Exact);
}

BOOST_AUTO_TEST_CASE(prefix_match) {
  BOOST_TEST(match("Paris, France", {"Paris"}) == MatchKind::Prefix);
  BOOST_TEST(match("Paris is the capital", {"Paris"}) == MatchKind::Prefix);
  BOOST_TEST(match("Parisian", {"Paris"}) == MatchKind::None);      // not at a word boundary
  BOOST_TEST(match("1945", {"19"}) == MatchKind::None);
  BOOST_TEST(match("1945 AD", {"1945"}) == MatchKind::Prefix);
  BOOST_TEST(match("50$", {"50"}) == MatchKind::Prefix);            // a symbol is a boundary
  BOOST_TEST(match("Pari", {"Paris"}) == MatchKind::None);          // output shorter than the answer
  BOOST_TEST(match("France Paris", {"Paris"}) == MatchKind::None);  // a prefix, not a substring
  BOOST_TEST(match("\u6771\u4EAC\u90FD", {"\u6771\u4EAC"}, "ja") == MatchKind::Prefix);  // Han after Han
  BOOST_TEST(match("1756\u5E74", {"1756"}, "ja") == MatchKind::Prefix);                  // Han after a digit
  BOOST_TEST(match("\u0E01\u0E23\u0E38\u0E07\u0E40\u0E17\u0E1E", {"\u0E01\u0E23\u0E38\u0E07"}, "th") == MatchKind::Prefix);  // Thai
  BOOST_TEST(match("\u0431\u0435\u0440\u043B\u0438\u043D\u0435", {"\u0431\u0435\u0440\u043B\u0438\u043D"}, "ru") ==
             MatchKind::None);  // Cyrillic is spaced
  // The best kind over all answers; the rule switches prefix matches off.
  BOOST_TEST(match("Paris", {"Paris, France", "Paris"}) == MatchKind::Exact);
  BOOST_TEST(match("Paris France", {"Paris", "Paris France"}) == MatchKind::Exact);
  BOOST_TEST(match("Paris France", {"Paris"}, "en", MatchRule::Exact) == MatchKind::None);
}

BOOST_AUTO_TEST_CASE(empty_never_matches) {
  BOOST_TEST(match("", {"Paris"}) == MatchKind::None);
  BOOST_TEST(match("Paris", {"..."}) == MatchKind::None);  // normalises to ""
  BOOST_TEST(match("...", {"..."}) == MatchKind::None);
  BOOST_TEST(match("anything", {}) == MatchKind::None);
  BOOST_TEST(match_normalised("paris", "", MatchRule::ExactOrPrefix) == MatchKind::None);
}

BOOST_AUTO_TEST_CASE(rule_names) {
  BOOST_TEST(static_cast<int>(parse_match_rule("exact", "k")) == static_cast<int>(MatchRule::Exact));
  BOOST_TEST(static_cast<int>(parse_match_rule("prefix", "k")) == static_cast<int>(MatchRule::ExactOrPrefix));
  BOOST_TEST(match_rule_name(MatchRule::Exact) == "exact");
  BOOST_TEST(match_rule_name(MatchRule::ExactOrPrefix) == "prefix");
  const std::string msg = test::input_error_of([] { parse_match_rule("Exact", "[localize] match"); });
  BOOST_TEST(msg.find("[localize] match: unknown match rule \"Exact\"") != std::string::npos, msg);
}

BOOST_AUTO_TEST_CASE(random_inputs_give_normal_forms) {
  // Random byte strings from a mixed alphabet (ASCII, Latin-1, CJK, Arabic, combining marks,
  // ignorables, broken sequences): the result is valid UTF-8 with single inner spaces and no
  // spaces at the ends, and normalising it again changes nothing.
  const std::vector<std::string> pieces = {"a", "B", " ", "\t", ".", ",", "-", "'", "1", "9", "\xC3\xA9", "e\xCC\x81",
                                           "\xC3\x9F", "\xEF\xAC\x81", "\xE6\x9D\xB1", "\xE3\x80\x82", "\xD8\x8C",
                                           "\xD9\xA1", "\xC2\xAD", "\xE2\x80\x8B", "\xC2\xA0", "\xFF", "\xE5\xB9",
                                           "the", "la", "l'", "\xCE\xA3", "\xEF\xBC\xB0", "$", "\xE2\x85\xA3"};
  std::uint64_t state = 12345;
  auto next = [&] {
    state = state * 6364136223846793005ull + 1442695040888963407ull;
    return state >> 33;
  };
  for (int round = 0; round < 2000; ++round) {
    std::string s;
    const int len = static_cast<int>(next() % 12);
    for (int i = 0; i < len; ++i) s += pieces[next() % pieces.size()];
    for (const char* lang : {"en", "fr", "ja"}) {
      const std::string n = normalise_answer(s, lang);
      BOOST_TEST_CONTEXT("input '" << s << "' (" << lang << ") -> '" << n << "'") {
        BOOST_TEST(tok::find_invalid_utf8(n) == std::string::npos);
        BOOST_TEST(normalise_answer(n, lang) == n);
        BOOST_TEST(n.find("  ") == std::string::npos);
        BOOST_TEST((n.empty() || (n.front() != ' ' && n.back() != ' ')));
        BOOST_TEST(n.find('\t') == std::string::npos);
        if (!n.empty()) BOOST_TEST(match_normalised(n, n, MatchRule::Exact) == MatchKind::Exact);
      }
    }
  }
}
