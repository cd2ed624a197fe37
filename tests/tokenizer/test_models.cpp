// Models, normalisers, pre-tokenizers and decoders on hand-written tokenizer.json files.
#include <boost/test/unit_test.hpp>

#include "tokenizer_fixtures.h"

using namespace moetrace;
using namespace moetrace::test_tok;
using Ids = std::vector<std::int32_t>;

namespace {
std::vector<std::string> tokens_of(const Tokenizer& t, const std::string& s, bool special = false) {
  return t.encode(s, special).tokens;
}
using Strs = std::vector<std::string>;
}  // namespace

BOOST_AUTO_TEST_SUITE(models)

BOOST_AUTO_TEST_CASE(wordlevel_with_whitespace_pre_tokenizer) {
  const Tokenizer t = make(wordlevel_json());
  BOOST_TEST(t.model_type() == "WordLevel");
  BOOST_TEST(t.encode_ids("the cat sat.") == (Ids{1, 2, 3, 4}), boost::test_tools::per_element());
  BOOST_TEST(t.encode_ids("the  dog\tsat") == (Ids{1, 0, 3}), boost::test_tools::per_element());
  BOOST_TEST(t.encode_ids("Zoë é") == (Ids{6, 5}), boost::test_tools::per_element());
  BOOST_TEST(t.encode_ids("").empty());
  // No decoder: tokens joined with spaces (Hugging Face convention).
  BOOST_TEST(t.decode({1, 2, 3, 4}) == "the cat sat .");
  BOOST_TEST(t.decode({1, 0}, /*skip_special_tokens=*/true) == "the");
  const Encoding e = t.encode("the cat", false);
  BOOST_TEST(e.offsets[1].first == 4u);
  BOOST_TEST(e.offsets[1].second == 7u);
}

BOOST_AUTO_TEST_CASE(the_unknown_token_is_the_model_s_own) {
  // Whatever the unk token is called, unknown words map to it and unk_id() names it.
  json j = wordlevel_json();
  j["model"]["vocab"] = {{"<unk>", 0}, {"the", 1}, {"[UNK]", 2}};
  j["model"]["unk_token"] = "<unk>";
  j["added_tokens"][0]["content"] = "<unk>";
  const Tokenizer t = make(j);
  BOOST_TEST_REQUIRE(t.unk_id().has_value());
  BOOST_TEST(*t.unk_id() == 0);
  BOOST_TEST(t.encode_ids("the dog", false) == (Ids{1, 0}), boost::test_tools::per_element());
  BOOST_TEST(*make(sentencepiece_json()).unk_id() == 0);  // BPE: "<unk>"
  BOOST_TEST(!make(neox_json()).unk_id().has_value());    // byte-level BPE needs none
}

BOOST_AUTO_TEST_CASE(wordlevel_with_whitespace_split) {
  json j = wordlevel_json();
  j["pre_tokenizer"] = {{"type", "WhitespaceSplit"}};
  const Tokenizer t = make(j);
  BOOST_TEST(t.encode_ids("the cat sat.") == (Ids{1, 2, 0}), boost::test_tools::per_element());
}

BOOST_AUTO_TEST_CASE(neox_byte_level_bpe) {
  const Tokenizer t = make(neox_json());
  BOOST_TEST(t.model_type() == "BPE");
  BOOST_TEST(tokens_of(t, "the cat") == (Strs{"the", "\u0120cat"}), boost::test_tools::per_element());
  // Lowest merge rank first: (i, s) comes before (Ġ, i), so " is" stays "Ġ" "is".
  BOOST_TEST(tokens_of(t, " Paris is in") == (Strs{"\u0120Paris", "\u0120", "is", "\u0120in"}),
             boost::test_tools::per_element());
  // The GPT-2 regex splits contractions off.
  BOOST_TEST(tokens_of(t, "I'm") == (Strs{"I", "'m"}), boost::test_tools::per_element());
  // Byte-level: every string round-trips, whatever its script.
  for (const std::string s : {"the cat", "Émile Zola", "東京 👨‍👩‍👧", "tabs\tand\nnewlines  ", ""}) {
    BOOST_TEST(t.decode(t.encode_ids(s)) == s);
  }
  // é is merged from its two UTF-8 bytes.
  BOOST_TEST(tokens_of(t, "é") == (Strs{"\u00c3\u00a9"}), boost::test_tools::per_element());
}

BOOST_AUTO_TEST_CASE(neox_add_prefix_space) {
  json j = neox_json();
  j["pre_tokenizer"]["add_prefix_space"] = true;
  const Tokenizer t = make(j);
  // The prefix space is its own token here: no merge joins "Ġ" and "the".
  BOOST_TEST(tokens_of(t, "the cat") == (Strs{"\u0120", "the", "\u0120cat"}), boost::test_tools::per_element());
}

BOOST_AUTO_TEST_CASE(qwen_style_split_regex_and_nfc) {
  const Tokenizer t = make(qwen_style_json());
  // Case-insensitive contractions, single digits.
  BOOST_TEST(tokens_of(t, "DON'T") == (Strs{"D", "O", "N", "'T"}), boost::test_tools::per_element());
  // The GPT-2 regex of ByteLevel is case-sensitive: "'T" is not a contraction there.
  BOOST_TEST(tokens_of(make(neox_json()), "DON'T") == (Strs{"D", "O", "N", "'", "T"}), boost::test_tools::per_element());
  const auto toks = tokens_of(t, "IT'S 42");
  BOOST_TEST(toks == (Strs{"I", "T", "'", "S", "\u0120", "4", "2"}), boost::test_tools::per_element());
  // NFC: e + combining acute becomes é (one token); its offsets cover both original characters.
  const Encoding e = t.encode("Cafe\u0301!", false);
  BOOST_TEST(e.tokens.back() == "!");
  BOOST_TEST(e.tokens[e.size() - 2] == "\u00c3\u00a9");
  BOOST_TEST(e.offsets[e.size() - 2].first == 3u);
  BOOST_TEST(e.offsets[e.size() - 2].second == 6u);
  BOOST_TEST(t.decode(e.ids) == "Caf\u00e9!");  // normalised text comes back
}

BOOST_AUTO_TEST_CASE(sentencepiece_bpe_with_byte_fallback) {
  const Tokenizer t = make(sentencepiece_json());
  const auto id = [&](const char* s) { return *t.token_to_id(s); };
  BOOST_TEST(t.encode_ids("ab ab") == (Ids{1, id("\u2581ab"), id("\u2581ab")}), boost::test_tools::per_element());
  BOOST_TEST(t.encode_ids("ab ab", false) == (Ids{id("\u2581ab"), id("\u2581ab")}), boost::test_tools::per_element());
  BOOST_TEST(t.encode_ids(" Paris", false) == (Ids{id("\u2581"), id("\u2581Paris")}), boost::test_tools::per_element());
  // € is not in the vocabulary: its three UTF-8 bytes become <0xE2> <0x82> <0xAC>.
  const Encoding e = t.encode("a\u20ac", false);
  BOOST_TEST(e.ids == (Ids{id("\u2581a"), 3 + 0xE2, 3 + 0x82, 3 + 0xAC}), boost::test_tools::per_element());
  for (std::size_t k = 1; k < 4; ++k) {
    BOOST_TEST(e.offsets[k].first == 1u);
    BOOST_TEST(e.offsets[k].second == 4u);
  }
  BOOST_TEST(t.decode(e.ids) == "a\u20ac");
  BOOST_TEST(t.decode(t.encode_ids("ab ab")) == "<s> ab ab");
  BOOST_TEST(t.decode(t.encode_ids("ab ab"), true) == "ab ab");
  BOOST_TEST(t.decode(t.encode_ids(" Paris", false)) == " Paris");
  // Invalid byte sequences decode to one U+FFFD per byte.
  BOOST_TEST(t.decode({3 + 0xE2, 3 + 0x82}) == "\ufffd\ufffd");
  // Empty text: no Prepend, only BOS.
  BOOST_TEST(t.encode_ids("") == (Ids{1}), boost::test_tools::per_element());
}

BOOST_AUTO_TEST_CASE(sentencepiece_unk_is_fused_without_byte_tokens) {
  json j = sentencepiece_json();
  j["model"]["byte_fallback"] = false;
  const Tokenizer t = make(j);
  BOOST_TEST(t.encode_ids("a\u20ac\u20ac", false) == (Ids{*t.token_to_id("\u2581a"), 0}), boost::test_tools::per_element());
}

BOOST_AUTO_TEST_CASE(metaspace_pre_tokenizer_and_decoder) {
  json j = sentencepiece_json();
  j["normalizer"] = nullptr;
  j["pre_tokenizer"] = {{"type", "Metaspace"}, {"replacement", "\u2581"}, {"prepend_scheme", "first"}, {"split", false}};
  j["decoder"] = {{"type", "Metaspace"}, {"replacement", "\u2581"}, {"prepend_scheme", "first"}, {"split", false}};
  const Tokenizer t = make(j);
  const Ids ids = t.encode_ids("ab ab", false);
  BOOST_TEST(ids == (Ids{*t.token_to_id("\u2581ab"), *t.token_to_id("\u2581ab")}), boost::test_tools::per_element());
  BOOST_TEST(t.decode(ids) == "ab ab");
}

BOOST_AUTO_TEST_CASE(split_behaviours) {
  json j = wordlevel_json();
  j["model"]["vocab"] = {{"[UNK]", 0}, {"a-", 1}, {"b", 2}, {"a", 3}, {"-b", 4}, {"-", 5}, {"--", 6}};
  auto with = [&](const char* behavior, bool invert = false) {
    json k = j;
    k["pre_tokenizer"] = {{"type", "Split"}, {"pattern", {{"String", "-"}}}, {"behavior", behavior}, {"invert", invert}};
    return make(k);
  };
  BOOST_TEST(with("MergedWithPrevious").encode_ids("a-b") == (Ids{1, 2}), boost::test_tools::per_element());
  BOOST_TEST(with("MergedWithNext").encode_ids("a-b") == (Ids{3, 4}), boost::test_tools::per_element());
  BOOST_TEST(with("Isolated").encode_ids("a-b") == (Ids{3, 5, 2}), boost::test_tools::per_element());
  BOOST_TEST(with("Removed").encode_ids("a-b") == (Ids{3, 2}), boost::test_tools::per_element());
  BOOST_TEST(with("Contiguous").encode_ids("a--b") == (Ids{3, 6, 2}), boost::test_tools::per_element());
}

BOOST_AUTO_TEST_CASE(merges_as_strings_or_pairs_agree) {
  json pairs = neox_json();
  json strings = neox_json();
  json m = json::array();
  for (const auto& p : pairs["model"]["merges"]) m.push_back(p[0].get<std::string>() + " " + p[1].get<std::string>());
  strings["model"]["merges"] = m;
  const std::string s = "the cat is in Paris";
  BOOST_TEST(make(pairs).encode_ids(s) == make(strings).encode_ids(s), boost::test_tools::per_element());
}

BOOST_AUTO_TEST_SUITE_END()
