// Added / special tokens, the post-processor, offsets.
#include <boost/test/unit_test.hpp>

#include "tokenizer_fixtures.h"

using namespace moetrace;
using namespace moetrace::test_tok;
using Ids = std::vector<std::int32_t>;

BOOST_AUTO_TEST_SUITE(added_tokens_and_offsets)

BOOST_AUTO_TEST_CASE(special_tokens_in_text_are_single_tokens) {
  const Tokenizer t = make(neox_json());
  const Encoding e = t.encode("the<|endoftext|>cat", false);
  BOOST_TEST(e.ids == (Ids{*t.token_to_id("the"), 1000, *t.token_to_id("cat")}), boost::test_tools::per_element());
  BOOST_TEST(e.offsets[1].first == 3u);
  BOOST_TEST(e.offsets[1].second == 16u);
  BOOST_TEST(t.decode(e.ids) == "the<|endoftext|>cat");
  BOOST_TEST(t.decode(e.ids, /*skip_special_tokens=*/true) == "thecat");
  BOOST_TEST(*t.id_to_token(1000) == "<|endoftext|>");
  BOOST_TEST(t.vocab_size() == 1001u);
}

BOOST_AUTO_TEST_CASE(sentencepiece_sections_are_normalised_separately) {
  const Tokenizer t = make(sentencepiece_json());
  const auto id = [&](const char* s) { return *t.token_to_id(s); };
  // As in Hugging Face tokenizers and transformers.js: "<s>" is found first, then "ab" gets its own "▁".
  BOOST_TEST(t.encode_ids("<s>ab", false) == (Ids{1, id("\u2581ab")}), boost::test_tools::per_element());
  BOOST_TEST(t.encode_ids("<s>ab", true) == (Ids{1, 1, id("\u2581ab")}), boost::test_tools::per_element());
}

BOOST_AUTO_TEST_CASE(lstrip_and_rstrip_absorb_whitespace) {
  json j = neox_json();
  j["added_tokens"].push_back({{"id", 1001}, {"content", "<mask>"}, {"special", true}, {"normalized", false},
                               {"lstrip", true}, {"rstrip", true}, {"single_word", false}});
  const Tokenizer t = make(j);
  const Encoding e = t.encode("the  <mask>  cat", false);
  BOOST_TEST(e.ids == (Ids{*t.token_to_id("the"), 1001, *t.token_to_id("cat")}), boost::test_tools::per_element());
  BOOST_TEST(e.offsets[1].first == 3u);
  BOOST_TEST(e.offsets[1].second == 13u);
}

BOOST_AUTO_TEST_CASE(single_word_added_token) {
  json j = neox_json();
  j["added_tokens"].push_back({{"id", 1002}, {"content", "cat"}, {"special", false}, {"normalized", false},
                               {"lstrip", false}, {"rstrip", false}, {"single_word", true}});
  const Tokenizer t = make(j);
  BOOST_TEST(t.encode_ids("cat") == (Ids{1002}), boost::test_tools::per_element());
  BOOST_TEST(t.encode_ids("a cat.") == (Ids{*t.token_to_id("a"), *t.token_to_id("\u0120"), 1002, *t.token_to_id(".")}),
             boost::test_tools::per_element());
  // Inside a word it is not matched.
  BOOST_TEST(t.encode_ids("cats").front() != 1002);
}

BOOST_AUTO_TEST_CASE(post_processor_bos_template) {
  const Tokenizer t = make(sentencepiece_json());
  const Encoding with = t.encode("ab", true), without = t.encode("ab", false);
  BOOST_TEST(with.size() == without.size() + 1);
  BOOST_TEST(with.ids[0] == 1);
  BOOST_TEST(with.special[0] == 1);
  BOOST_TEST(with.offsets[0].first == 0u);
  BOOST_TEST(with.offsets[0].second == 0u);
  // ByteLevel post-processor adds nothing.
  const Tokenizer q = make(qwen_style_json());
  BOOST_TEST(q.encode_ids("the cat", true) == q.encode_ids("the cat", false), boost::test_tools::per_element());
}

BOOST_AUTO_TEST_CASE(offsets_are_utf8_byte_ranges_of_the_input) {
  const Tokenizer t = make(qwen_style_json());
  const std::string s = "Zoë 東京 🙂";
  const Encoding e = t.encode(s, false);
  // Offsets tile the input (byte-level BPE loses nothing) and never cut a character.
  std::size_t pos = 0;
  for (std::size_t i = 0; i < e.size(); ++i) {
    BOOST_TEST(e.offsets[i].first <= e.offsets[i].second);
    BOOST_TEST(e.offsets[i].first <= pos);
    pos = std::max(pos, e.offsets[i].second);
    const unsigned char lead = static_cast<unsigned char>(s[e.offsets[i].first]);
    BOOST_TEST((lead & 0xC0) != 0x80);
  }
  BOOST_TEST(pos == s.size());
  // The tokens of "東" (3 bytes, no merges) all report the whole character.
  bool found = false;
  for (std::size_t i = 0; i < e.size(); ++i)
    if (e.offsets[i].first == 5 && e.offsets[i].second == 8) found = true;
  BOOST_TEST(found);
}

BOOST_AUTO_TEST_CASE(sentencepiece_offsets_include_the_space) {
  const Tokenizer t = make(sentencepiece_json());
  const Encoding e = t.encode("ab Paris", false);
  BOOST_TEST(e.tokens.back() == "\u2581Paris");
  BOOST_TEST(e.offsets.back().first == 2u);  // the space that became ▁
  BOOST_TEST(e.offsets.back().second == 8u);
  BOOST_TEST(e.offsets.front().first == 0u);  // the prepended ▁ belongs to the first character
  BOOST_TEST(e.offsets.front().second == 2u);
}

BOOST_AUTO_TEST_CASE(neox_trim_offsets) {
  json j = neox_json();
  j["post_processor"]["trim_offsets"] = true;
  const Encoding e = make(j).encode("the cat", false);
  BOOST_TEST(e.offsets[1].first == 4u);  // "Ġcat" without its space
  BOOST_TEST(e.offsets[1].second == 7u);
}

BOOST_AUTO_TEST_SUITE_END()
