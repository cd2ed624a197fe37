// Asking the questions (src/localize/localize_ask.h) on the fixture models with a WordLevel
// tokenizer over their 500 ids ("w<i>", id 2 the special EOS "</s>", id 10 a line feed): the output
// is the decoder's, decoded and cut at the line feed; the match kinds and both bucket rules; the
// routing statistic handed to ContrastPair (prompt and generated tokens); pair selection; the
// option words and input errors.
#define BOOST_TEST_MODULE localize_ask
#include <boost/test/unit_test.hpp>

#include <algorithm>
#include <cmath>
#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "backend/backend.h"
#include "engine/device_model.h"
#include "localize/localize_ask.h"
#include "model/model_weights.h"
#include "support/test_paths.h"
#include "word_model.h"
#include "util/error.h"

using namespace moetrace;
using namespace moetrace::localize;

namespace {

constexpr int kEos = 2, kNewline = 10;

Tokenizer word_tokenizer(int vocab, int newline = kNewline) { return test::word_tokenizer(vocab, newline); }

struct Fixture : test::WordModel {
  explicit Fixture(const std::string& m) : WordModel(m, kNewline) {}
};

const std::vector<std::string> kPrompts = {"w11 w57 w203", "w300 w12 w77 w499 w150", "w42", "w64 w65 w66 w67"};

LanguageEntry entry(const std::string& prompt, std::vector<std::string> answers, const std::string& lang) {
  LanguageEntry e;
  e.question = e.prompt = prompt;
  e.answers = std::move(answers);
  for (const auto& a : e.answers) e.normalised_answers.push_back(normalise_answer(a, lang));
  return e;
}

}  // namespace

BOOST_AUTO_TEST_CASE(newline_ids_of_the_tokenizer) {
  const Tokenizer tok = word_tokenizer(500);
  BOOST_TEST(newline_token_ids(tok, 500) == std::vector<int>{kNewline});
  BOOST_TEST(newline_token_ids(tok, 5).empty());  // only ids the model can produce
}

BOOST_AUTO_TEST_CASE(asks_match_and_bucket) {
  for (const std::string& m : {"mixtral-tiny", "qwen3moe-tiny", "olmoe-tiny"}) {
    Fixture f(m);
    // The "line feed" is the second token the model says after prompt 0, so that one output is
    // cut by it.
    DecodeOptions d;
    d.max_new_tokens = 6;
    {
      DecodeRequest r0;
      for (int id : f.tok.encode_ids(kPrompts[0], false)) r0.prompt.push_back(id);
      const int nl = greedy_decode(*f.engine, {r0}, d).front().tokens.at(1);
      BOOST_REQUIRE(nl != kEos);
      for (const std::string& p : kPrompts) BOOST_REQUIRE(p.find("w" + std::to_string(nl) + " ") == std::string::npos);
      f.tok = word_tokenizer(f.weights.config.vocab_size, nl);
      d.stop_ids = {nl, kEos};
    }
    // What the decoder says for each prompt, with the same stops.
    d.capture_routing = true;
    std::vector<DecodeRequest> req;
    for (const std::string& p : kPrompts) {
      DecodeRequest r;
      for (int id : f.tok.encode_ids(p, false)) r.prompt.push_back(id);
      req.push_back(r);
    }
    const auto dec = greedy_decode(*f.engine, req, d);
    // en: the full output is an answer (exact); fr: its first word (prefix); de: never said.
    QuestionSet qs;
    qs.languages = {"en", "fr", "de"};
    std::vector<std::string> outputs;
    for (std::size_t i = 0; i < kPrompts.size(); ++i) {
      std::vector<std::int32_t> ids(dec[i].tokens.begin(), dec[i].tokens.end());
      if (dec[i].stop_id >= 0) ids.push_back(dec[i].stop_id);
      std::string out = f.tok.decode(ids, true);
      if (auto nl = out.find('\n'); nl != std::string::npos) out.resize(nl);
      while (!out.empty() && out.back() == ' ') out.pop_back();  // the word tokenizer joins "w5" and "\n" by a space
      outputs.push_back(out);
      const std::string first_word = out.substr(0, out.find(' '));
      Question q;
      q.id = "q" + std::to_string(i);
      const std::string en = out.empty() ? "w1" : out, fr = first_word.empty() ? "w1" : first_word;
      q.entries = {entry(kPrompts[i], {"w1", en}, "en"), entry(kPrompts[i], {fr}, "fr"), entry(kPrompts[i], {"w1 w1"}, "de")};
      qs.questions.push_back(q);
    }
    AskOptions o;
    o.max_new_tokens = 6;
    o.eos_ids = {kEos};
    o.add_special_tokens = false;
    o.prompts_per_call = 3;
    const auto asked = ask_questions(*f.engine, f.tok, qs, {}, o);
    BOOST_REQUIRE_EQUAL(asked.size(), kPrompts.size() * 3);
    bool some_output = false, some_prefix = false;
    for (const AskedPair& p : asked) {
      const std::string what = m + " q" + std::to_string(p.question) + " " + qs.languages[p.language];
      const DecodeResult& r = dec[p.question];
      BOOST_TEST(p.generated == r.tokens, what);
      BOOST_TEST(p.stop_id == r.stop_id, what);
      BOOST_TEST(p.output.substr(0, outputs[p.question].size()) == outputs[p.question], what);
      BOOST_TEST(p.output.find_first_not_of(' ', outputs[p.question].size()) == std::string::npos, what);
      BOOST_TEST(p.routing.prob_mean == r.routing.prob_mean, what);
      BOOST_TEST(p.routing.selected_last == r.routing.selected_last, what);
      // The routing at the generated tokens is the decoder's too (NaN where no step ran).
      BOOST_TEST(p.routing.generated_positions == r.routing.generated_positions, what);
      BOOST_TEST(has_routing_values(p.routing, RoutingStatistic::SelectedGenerated) == (r.routing.generated_positions > 0), what);
      BOOST_TEST(has_routing_values(p.routing, RoutingStatistic::SelectedLast), what);
      if (r.routing.generated_positions > 0) {
        BOOST_TEST(p.routing.prob_generated == r.routing.prob_generated, what);
        BOOST_TEST(to_contrast_pair(qs, p, RoutingStatistic::LogitGenerated).values == r.routing.logit_generated, what);
      } else {
        BOOST_TEST(std::isnan(p.routing.selected_generated.at(0)), what);
      }
      const bool said = !outputs[p.question].empty();
      some_output = some_output || said;
      if (p.language == 0 && said) {
        BOOST_TEST((p.match == MatchKind::Exact), what);
        BOOST_TEST((p.bucket == Bucket::Success), what);
      }
      if (p.language == 1 && said) {
        const bool one_word = outputs[p.question].find(' ') == std::string::npos;
        BOOST_TEST((p.match == (one_word ? MatchKind::Exact : MatchKind::Prefix)), what);
        BOOST_TEST((p.bucket == Bucket::Success), what);
        some_prefix = some_prefix || !one_word;
      }
      if (p.language == 2 && outputs[p.question].rfind("w1 w1", 0) != 0) {
        BOOST_TEST((p.match == MatchKind::None), what);
        BOOST_TEST((p.bucket == Bucket::Failure), what);
      }
      // ContrastPair carries the chosen statistic.
      const ContrastPair c = to_contrast_pair(qs, p, RoutingStatistic::ProbLast);
      BOOST_TEST(c.question_id == qs.questions[p.question].id);
      BOOST_TEST(c.language == qs.languages[p.language]);
      BOOST_TEST((c.bucket == p.bucket));
      BOOST_TEST(c.values == p.routing.prob_last);
    }
    BOOST_TEST(asked[0].stop_id == d.stop_ids[0]);
    BOOST_TEST(asked[0].generated.size() == 1u);
    BOOST_TEST(asked[0].output == "w" + std::to_string(asked[0].generated[0]) + " ");
    BOOST_TEST(some_output, m << ": every output empty, the match checks tested nothing");
    BOOST_TEST(some_prefix, m << ": no multi-word output, the prefix check tested nothing");

    // Exact rule: the first word alone no longer matches a multi-word output.
    AskOptions exact = o;
    exact.match = MatchRule::Exact;
    for (const AskedPair& p : ask_questions(*f.engine, f.tok, qs, {}, exact))
      if (p.language == 1 && outputs[p.question].find(' ') != std::string::npos)
        BOOST_TEST((p.bucket == Bucket::Failure && p.match == MatchKind::None));

    // answer_logprob rule: the best first-token log p of the answers, against the threshold.
    const AskedPair& p0 = asked.front();
    DecodeRequest r0 = req[0];
    for (const auto& a : qs.questions[0].entries[0].answers) r0.answer_ids.push_back(f.tok.encode_ids(" " + a, false).front());
    const auto lp = greedy_decode(*f.engine, {r0}, DecodeOptions{}).front().answer_logprobs;
    BOOST_TEST(p0.answer_logprob == *std::max_element(lp.begin(), lp.end()));
    AskOptions by_lp = o;
    by_lp.bucket = BucketRule::AnswerLogprob;
    by_lp.logprob_threshold = p0.answer_logprob;
    BOOST_TEST((ask_questions(*f.engine, f.tok, qs, {{0, 0}}, by_lp).front().bucket == Bucket::Success));
    by_lp.logprob_threshold = std::nextafter(p0.answer_logprob, 0.0);
    BOOST_TEST((ask_questions(*f.engine, f.tok, qs, {{0, 0}}, by_lp).front().bucket == Bucket::Failure));

    // Selected pairs come back in the order asked, equal to the same pairs of the full run.
    const auto some = ask_questions(*f.engine, f.tok, qs, {{2, 1}, {0, 2}}, o);
    BOOST_REQUIRE_EQUAL(some.size(), 2u);
    BOOST_TEST(some[0].question == 2u);
    BOOST_TEST(some[0].language == 1u);
    BOOST_TEST(some[0].generated == asked[2 * 3 + 1].generated);
    BOOST_TEST(some[1].routing.prob_mean == asked[0 * 3 + 2].routing.prob_mean);
  }
}

BOOST_AUTO_TEST_CASE(option_words_and_errors) {
  BOOST_TEST((parse_bucket_rule("generation", "k") == BucketRule::Generation));
  BOOST_TEST((parse_bucket_rule("answer_logprob", "k") == BucketRule::AnswerLogprob));
  BOOST_CHECK_THROW(parse_bucket_rule("logprob", "k"), InputError);
  const std::vector<std::string> words = {"prob_mean",     "prob_last",      "logit_mean",      "logit_last",
                                           "selected_mean", "selected_last",  "prob_generated",  "logit_generated",
                                           "selected_generated"};
  BOOST_TEST(words.size() == kRoutingStatisticCount);
  for (const std::string& w : words) BOOST_TEST(routing_statistic_name(parse_routing_statistic(w, "k")) == w);
  BOOST_CHECK_THROW(parse_routing_statistic("generated", "k"), InputError);
  BOOST_CHECK_THROW(parse_routing_statistic("prob", "k"), InputError);
  try {
    parse_routing_statistic("mean", "localize.statistic");
    BOOST_ERROR("no error");
  } catch (const InputError& e) {
    BOOST_TEST(std::string(e.what()).find("localize.statistic") != std::string::npos);
  }
  RoutingSummary s;
  s.prob_mean = {1};
  s.logit_last = {2};
  BOOST_TEST(routing_values(s, RoutingStatistic::ProbMean) == std::vector<double>{1});
  BOOST_TEST(routing_values(s, RoutingStatistic::LogitLast) == std::vector<double>{2});
  s.prob_generated = {3};
  s.logit_generated = {4};
  s.selected_generated = {5};
  BOOST_TEST(routing_values(s, RoutingStatistic::ProbGenerated) == std::vector<double>{3});
  BOOST_TEST(routing_values(s, RoutingStatistic::LogitGenerated) == std::vector<double>{4});
  BOOST_TEST(routing_values(s, RoutingStatistic::SelectedGenerated) == std::vector<double>{5});
  BOOST_TEST(!has_routing_values(s, RoutingStatistic::ProbMean));  // layers 0: nothing captured
  s.layers = s.experts = 1;
  BOOST_TEST(has_routing_values(s, RoutingStatistic::ProbMean));
  BOOST_TEST(!has_routing_values(s, RoutingStatistic::ProbGenerated));
  s.generated_positions = 2;
  BOOST_TEST(has_routing_values(s, RoutingStatistic::ProbGenerated));

  Fixture f("olmoe-tiny");
  QuestionSet qs;
  qs.languages = {"en"};
  Question q;
  q.id = "q";
  q.entries = {entry("w11 w12", {"w13"}, "en")};
  qs.questions = {q};
  AskOptions o;
  o.add_special_tokens = false;
  BOOST_CHECK_THROW(ask_questions(*f.engine, f.tok, qs, {{1, 0}}, o), InputError);
  BOOST_CHECK_THROW(ask_questions(*f.engine, f.tok, qs, {{0, 1}}, o), InputError);
  for (double t : std::vector<double>{0.5, std::nan(""), -INFINITY}) {
    AskOptions bad = o;
    bad.logprob_threshold = t;
    BOOST_CHECK_THROW(ask_questions(*f.engine, f.tok, qs, {}, bad), InputError);
  }
  BOOST_TEST(ask_questions(*f.engine, f.tok, qs, {}, o).size() == 1u);
  // A tokenizer larger than the model: a prompt or answer token outside the model's ids names the question.
  const Tokenizer big = word_tokenizer(f.weights.config.vocab_size + 10);
  const std::string outside = "w" + std::to_string(f.weights.config.vocab_size + 3);
  for (int which = 0; which < 2; ++which) {
    QuestionSet bad = qs;
    LanguageEntry& e = bad.questions[0].entries[0];
    if (which == 0) e.prompt = "w11 " + outside;
    else e.answers = {outside};
    try {
      ask_questions(*f.engine, big, bad, {}, o);
      BOOST_ERROR("no error");
    } catch (const InputError& err) {
      BOOST_TEST(std::string(err.what()).find("question \"q\" (en)") != std::string::npos, err.what());
    }
  }
}
