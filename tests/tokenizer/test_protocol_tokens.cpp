// Subject spans from the subject's characters, and the object-token rules.
#include <boost/test/unit_test.hpp>

#include "tokenizer_fixtures.h"
#include "tokenizer/protocol_tokens.h"
#include "util/error.h"

using namespace moetrace;
using namespace moetrace::test_tok;
using Ids = std::vector<std::int32_t>;

BOOST_AUTO_TEST_SUITE(protocol_tokens)

BOOST_AUTO_TEST_CASE(format_prompt_records_the_subject) {
  const FormattedPrompt p = format_prompt("The mother tongue of {} is", "Émile Zola");
  BOOST_TEST(p.text == "The mother tongue of Émile Zola is");
  BOOST_TEST(p.text.substr(p.subject_begin, p.subject_end - p.subject_begin) == "Émile Zola");
  BOOST_TEST(format_prompt("{{braces}} {}", "x").text == "{braces} x");
  BOOST_CHECK_THROW(format_prompt("no field", "x"), InputError);
  BOOST_CHECK_THROW(format_prompt("{} and {}", "x"), InputError);
  BOOST_CHECK_THROW(format_prompt("{0}", "x"), InputError);
}

BOOST_AUTO_TEST_CASE(subject_span_byte_level) {
  const Tokenizer t = make(qwen_style_json());
  const PromptTokens pt = tokenize_prompt(t, "The cat of {} is in", "Zoë Ström");
  const Ids span(pt.ids.begin() + pt.subject.first, pt.ids.begin() + pt.subject.last);
  // No merge joins "Ġ" and "Z" in this vocabulary, so the space before the subject is a token of
  // its own and stays out of the span.
  BOOST_TEST(t.decode(span) == "Zoë Ström");
  BOOST_TEST(t.decode(Ids(pt.ids.begin(), pt.ids.begin() + pt.subject.first)) == "The cat of ");
}

BOOST_AUTO_TEST_CASE(subject_span_at_start_and_non_latin) {
  const Tokenizer t = make(qwen_style_json());
  const PromptTokens pt = tokenize_prompt(t, "{} は日本にあります", "東京タワー");
  BOOST_TEST(pt.subject.first == 0u);
  BOOST_TEST(t.decode(Ids(pt.ids.begin(), pt.ids.begin() + pt.subject.last)) == "東京タワー");
}

BOOST_AUTO_TEST_CASE(subject_span_sentencepiece) {
  const Tokenizer t = make(sentencepiece_json());
  const PromptTokens pt = tokenize_prompt(t, "ab {} ab", "Paris");
  BOOST_TEST(pt.subject.size() == 1u);
  BOOST_TEST(pt.ids[pt.subject.first] == *t.token_to_id("\u2581Paris"));
  BOOST_TEST(pt.ids.front() != 1);  // no BOS in protocol runs
}

BOOST_AUTO_TEST_CASE(find_subject_span_needs_overlap) {
  const Tokenizer t = make(qwen_style_json());
  const Encoding e = t.encode("the cat", false);
  BOOST_CHECK_THROW(find_subject_span(e, 3, 3), InputError);
  const TokenSpan s = find_subject_span(e, 4, 5);  // "c" of " cat"
  BOOST_TEST(s.first == 1u);
  BOOST_TEST(s.last == 2u);
}

BOOST_AUTO_TEST_CASE(object_token_rules) {
  const Tokenizer t = make(sentencepiece_json());
  // Bare "ab" is one token ("▁ab" after Prepend); " ab" is "▁" "▁ab".
  const ObjectToken bare = object_token(t, "ab", ObjectRule::BareThenSpace);
  BOOST_TEST(bare.single);
  BOOST_TEST(bare.id == *t.token_to_id("\u2581ab"));
  BOOST_TEST(bare.text == "ab");
  const ObjectToken lead = object_token(t, "ab", ObjectRule::LeadingSpace);
  BOOST_TEST(!lead.single);
  BOOST_TEST(lead.ids.size() == 2u);
  BOOST_TEST(lead.text == " ab");

  const Tokenizer q = make(neox_json());
  // Bare "Paris" is several tokens, so bare_then_space falls back to " Paris" (one token).
  const ObjectToken paris = object_token(q, "Paris", ObjectRule::BareThenSpace);
  BOOST_TEST(paris.single);
  BOOST_TEST(paris.text == " Paris");
  BOOST_TEST(paris.id == *q.token_to_id("\u0120Paris"));
  // A multi-token object is reported as such.
  const ObjectToken multi = object_token(q, "Zola", ObjectRule::LeadingSpace);
  BOOST_TEST(!multi.single);
  BOOST_TEST(multi.id == -1);
  BOOST_TEST(multi.ids.size() > 1u);

  BOOST_TEST(to_string(parse_object_rule("leading_space")) == std::string("leading_space"));
  BOOST_TEST(to_string(parse_object_rule("bare_then_space")) == std::string("bare_then_space"));
  BOOST_CHECK_THROW(parse_object_rule("bare"), InputError);
}

BOOST_AUTO_TEST_SUITE_END()
