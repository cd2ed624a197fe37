#pragma once
// Answer normalisation and matching for router-contrast localisation (docs/localize.md, "Answer
// matching"). Both the decoded text and each accepted answer are normalised, then compared:
//
//   1. bytes that are not UTF-8 become U+FFFD (decoded text may end inside a character);
//   2. Unicode NFKC with case folding, default-ignorable code points removed (soft hyphen,
//      zero-width space/joiners): utf8proc_map(STABLE | COMPAT | COMPOSE | CASEFOLD | IGNORE);
//   3. punctuation (general category P*) is removed between two decimal digits ("1,000" -> "1000")
//      and becomes a space elsewhere ("Jean-Paul" -> "jean paul", "l'homme" -> "l homme");
//      symbols (S*) are kept;
//   4. white space (Z*, and control characters) becomes a space; runs collapse to one space and
//      the ends are trimmed;
//   5. the language's articles (articles_for) are dropped as whole words, unless every word is
//      one ("The The", "A" stay as they are).
//
// Exact match: normalised texts equal. Prefix match: the normalised output starts with the
// normalised answer at a boundary: the output ends there, or the next code point is not a letter,
// mark or number, or the next code point or the answer's last one belongs to a script written
// without spaces (Han, Hiragana, Katakana, Thai, Lao, Khmer, Myanmar, Tibetan): "paris france"
// starts with "paris", "1756年" with "1756", but "parisian" does not start with "paris" nor "1945"
// with "19". An answer that normalises to "" never matches.
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace moetrace::localize {

// Articles dropped for `language` (its primary subtag, lower case: "pt-BR" -> pt); empty when the
// language has no entry. The table (docs/localize.md) lists en, de, fr, es, it, pt, nl.
std::span<const std::string_view> articles_for(std::string_view language);

std::string normalise_answer(std::string_view text, std::string_view language);

enum class MatchRule : std::uint8_t { Exact, ExactOrPrefix };
enum class MatchKind : std::uint8_t { None, Prefix, Exact };  // ordered: better is larger

// "exact" or "prefix" (= exact or prefix); InputError naming `what` otherwise.
MatchRule parse_match_rule(std::string_view text, std::string_view what);
std::string_view match_rule_name(MatchRule rule);

// Both arguments already normalised.
MatchKind match_normalised(std::string_view output, std::string_view answer, MatchRule rule);

// The best match of `decoded` against any of `answers` (normalised here).
MatchKind match_answer(std::string_view decoded, std::span<const std::string> answers, std::string_view language,
                       MatchRule rule);

}  // namespace moetrace::localize
