// The question file of router-contrast localisation (docs/localize.md, "Data format"): a good file
// loads as written; each kind of bad record is skipped and counted (lenient) or is an InputError
// naming the file, the line and the id (strict); file-level problems are always an InputError.
#define BOOST_TEST_MODULE localize_data
#include <boost/test/unit_test.hpp>

#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "localize/localize_data.h"
#include "support/input_error.h"
#include "support/test_paths.h"
#include "util/error.h"

namespace fs = std::filesystem;
using namespace moetrace;
using namespace moetrace::localize;
using test::input_error_of;

namespace {

const std::string kHeader = R"({"format": "moetrace-localize", "version": 1, "languages": ["en", "de", "fr"], "source": "hand-made"})";

// A well-formed question line in all three languages.
std::string good(const std::string& id, const std::string& answer_en = "Paris") {
  return R"({"id": ")" + id + R"(", "languages": {"en": {"question": "Capital of France?", "answers": [")" + answer_en +
         R"("]}, "de": {"question": "Hauptstadt Frankreichs?", "answers": ["Paris"], "output_type": "Stadt"}, )"
         R"("fr": {"question": "Capitale de la France ?", "answers": ["Paris", "la ville de Paris"]}}})";
}

fs::path write_file(const std::vector<std::string>& lines, const std::string& sep = "\n") {
  static const fs::path dir = test::fresh_temp_dir("localize-data");
  static int counter = 0;
  const fs::path p = dir / ("q" + std::to_string(counter++) + ".jsonl");
  std::ofstream out(p, std::ios::binary);
  for (const auto& l : lines) out << l << sep;
  return p;
}

void expect_mentions(const std::string& msg, std::initializer_list<std::string> parts) {
  BOOST_TEST_MESSAGE(msg);
  for (const std::string& p : parts)
    BOOST_TEST(msg.find(p) != std::string::npos, "message '" << msg << "' should mention '" << p << "'");
}

struct BadCase {
  std::string name;
  std::string line;  // placed as line 3, between two good questions
  RecordProblem problem;
  std::string mention;  // part of the message
  std::string id;       // the id the message names ("" when unreadable)
};

std::vector<BadCase> bad_cases() {
  const std::string en = R"("en": {"question": "Q?", "answers": ["A"]})";
  const std::string de = R"("de": {"question": "F?", "answers": ["A"]})";
  const std::string fr = R"("fr": {"question": "Q ?", "answers": ["A"]})";
  auto rec = [&](const std::string& id, const std::string& langs) {
    return R"({"id": ")" + id + R"(", "languages": {)" + langs + "}}";
  };
  return {
      {"raw invalid UTF-8", rec("u1", en + ", " + de + R"(, "fr": {"question": "Qu)" + std::string("\xC3\x28") +
                                                R"( ?", "answers": ["A"]})"),
       RecordProblem::InvalidUtf8, "invalid UTF-8 at byte", "u1"},
      {"overlong encoding", rec("u2", en + ", " + de + R"(, "fr": {"question": ")" + std::string("\xC0\xAF") + R"(", "answers": ["A"]})"),
       RecordProblem::InvalidUtf8, "invalid UTF-8", "u2"},
      {"encoded surrogate", rec("u3", en + ", " + de + R"(, "fr": {"question": ")" + std::string("\xED\xA0\x80") + R"(", "answers": ["A"]})"),
       RecordProblem::InvalidUtf8, "invalid UTF-8", "u3"},
      {"escaped lone surrogate", rec("u4", en + ", " + de + R"(, "fr": {"question": "\ud800", "answers": ["A"]})"),
       RecordProblem::InvalidUtf8, "surrogate", ""},
      {"not JSON", R"({"id": "j1", "languages": )", RecordProblem::MalformedJson, "not valid JSON", ""},
      {"not an object", R"(["j2"])", RecordProblem::MalformedJson, "must be a JSON object", ""},
      {"duplicate key", R"({"id": "j3", "id": "j4", "languages": {}})", RecordProblem::MalformedJson, "appears twice", ""},
      {"no id", R"({"languages": {)" + en + ", " + de + ", " + fr + "}}", RecordProblem::BadId, "no field 'id'", ""},
      {"numeric id", R"({"id": 7, "languages": {)" + en + ", " + de + ", " + fr + "}}", RecordProblem::BadId, "must be a string", ""},
      {"empty id", rec("", en + ", " + de + ", " + fr), RecordProblem::BadId, "'id' is empty", ""},
      {"long id", rec(std::string(300, 'x'), en + ", " + de + ", " + fr), RecordProblem::BadId, "more than the 256", "xxxx"},
      {"duplicate id", good("q1"), RecordProblem::DuplicateId, "first used on line 2", "q1"},
      {"unknown language", rec("l1", en + ", " + de + ", " + fr + R"(, "es": {"question": "P?", "answers": ["A"]})"),
       RecordProblem::UnknownLanguage, "language 'es' is not in the header", "l1"},
      {"missing language", rec("l2", en + ", " + fr), RecordProblem::MissingLanguage, "language 'de' is missing", "l2"},
      {"no languages", R"({"id": "l3"})", RecordProblem::MissingLanguage, "no field 'languages'", "l3"},
      {"empty question", rec("e1", en + ", " + de + R"(, "fr": {"question": "  ", "answers": ["A"]})"),
       RecordProblem::EmptyQuestion, "language 'fr': the question is empty", "e1"},
      // Unicode White_Space only: U+3000, U+00A0 (raw), U+2028 and U+0085 (escaped).
      {"white-space question", rec("e7", en + ", " + de + R"(, "fr": {"question": "　 \u2028\u0085", "answers": ["A"]})"),
       RecordProblem::EmptyQuestion, "language 'fr': the question is empty or only white space", "e7"},
      {"white-space answer", rec("e8", en + ", " + de + R"(, "fr": {"question": "Q ?", "answers": ["　"]})"),
       RecordProblem::EmptyAnswer, "answer 0 is empty", "e8"},
      {"no question", rec("e2", en + ", " + de + R"(, "fr": {"answers": ["A"]})"), RecordProblem::EmptyQuestion,
       "no field 'question'", "e2"},
      {"empty answer", rec("e3", en + ", " + de + R"(, "fr": {"question": "Q ?", "answers": ["A", ""]})"),
       RecordProblem::EmptyAnswer, "answer 1 is empty", "e3"},
      {"blank answer", rec("e4", en + ", " + de + R"(, "fr": {"question": "Q ?", "answers": [" \t"]})"),
       RecordProblem::EmptyAnswer, "answer 0 is empty", "e4"},
      {"punctuation-only answer", rec("e6", en + ", " + de + R"(, "fr": {"question": "Q ?", "answers": ["A", "« ! »"]})"),
       RecordProblem::EmptyAnswer, "answer 1 (\"« ! »\") is empty after normalisation", "e6"},
      {"no answers", rec("e5", en + ", " + de + R"(, "fr": {"question": "Q ?", "answers": []})"), RecordProblem::EmptyAnswer,
       "'answers' is empty", "e5"},
      {"unknown record field", R"({"id": "f1", "langs": {}})", RecordProblem::BadField, "unknown field 'langs'", "f1"},
      {"unknown entry field", rec("f2", en + ", " + de + R"(, "fr": {"question": "Q ?", "answer": ["A"], "answers": ["A"]})"),
       RecordProblem::BadField, "unknown field 'answer'", "f2"},
      {"answers not a list", rec("f3", en + ", " + de + R"(, "fr": {"question": "Q ?", "answers": "A"})"),
       RecordProblem::BadField, "'answers' must be a list", "f3"},
      {"answer not a string", rec("f4", en + ", " + de + R"(, "fr": {"question": "Q ?", "answers": [4]})"),
       RecordProblem::BadField, "answer 0 must be a string", "f4"},
      {"long question", rec("t1", en + ", " + de + R"(, "fr": {"question": ")" + std::string(20000, 'q') + R"(", "answers": ["A"]})"),
       RecordProblem::TooLong, "more than the 16384 allowed", "t1"},
      {"too many answers", rec("t2", en + ", " + de + R"(, "fr": {"question": "Q ?", "answers": [)" + [] {
         std::string s;
         for (int i = 0; i < 65; ++i) s += std::string(i ? ", " : "") + "\"a\"";
         return s;
       }() + "]}"),
       RecordProblem::TooLong, "65 answers", "t2"},
  };
}

}  // namespace

BOOST_AUTO_TEST_CASE(good_file_loads_as_written) {
  // CRLF line ends, a blank line and a trailing blank line are accepted.
  const fs::path p = write_file({kHeader, good("q1"), "", good("q2", "City of Paris")}, "\r\n");
  const QuestionSet s = read_questions(p);
  BOOST_TEST(s.source == "hand-made");
  BOOST_TEST(s.languages == (std::vector<std::string>{"en", "de", "fr"}));
  BOOST_REQUIRE(s.questions.size() == 2u);
  BOOST_TEST(s.questions[0].id == "q1");
  BOOST_TEST(s.questions[0].line == 2u);
  BOOST_TEST(s.questions[1].line == 4u);
  BOOST_REQUIRE(s.questions[1].entries.size() == 3u);
  BOOST_TEST(s.questions[1].entries[0].answers == (std::vector<std::string>{"City of Paris"}));
  BOOST_TEST(s.questions[1].entries[1].question == "Hauptstadt Frankreichs?");
  BOOST_TEST(s.questions[1].entries[1].output_type == "Stadt");
  BOOST_TEST(s.questions[1].entries[1].prompt == "Hauptstadt Frankreichs?");  // default template
  BOOST_TEST(s.questions[1].entries[2].answers == (std::vector<std::string>{"Paris", "la ville de Paris"}));
  BOOST_TEST(s.questions[1].entries[2].normalised_answers == (std::vector<std::string>{"paris", "ville de paris"}));
  BOOST_TEST(s.questions[1].entries[0].normalised_answers == (std::vector<std::string>{"city of paris"}));
  BOOST_TEST(s.skipped.total() == 0u);
  BOOST_TEST(s.skipped.summary() == "no question skipped");
}

BOOST_AUTO_TEST_CASE(language_selection_orders_and_ignores_the_rest) {
  // A question lacking 'fr' is fine when only de and en are asked for, in that order.
  const std::string no_fr =
      R"({"id": "q9", "languages": {"en": {"question": "Q?", "answers": ["A"]}, "de": {"question": "F?", "answers": ["B"]}}})";
  LoadOptions o;
  o.languages = {"de", "en"};
  const QuestionSet s = read_questions(write_file({kHeader, good("q1"), no_fr}), o);
  BOOST_TEST(s.languages == (std::vector<std::string>{"de", "en"}));
  BOOST_REQUIRE(s.questions.size() == 2u);
  BOOST_TEST(s.questions[1].entries[0].answers[0] == "B");
  BOOST_TEST(s.questions[1].entries[1].answers[0] == "A");

  o.languages = {"de", "es"};
  expect_mentions(input_error_of([&] { read_questions(write_file({kHeader, good("q1")}), o, "[localize] questions"); }),
                  {"[localize] questions", "language 'es' is not among the file's languages", "en, de, fr"});
  o.languages = {"de", "de"};
  expect_mentions(input_error_of([&] { read_questions(write_file({kHeader, good("q1")}), o); }), {"selected twice"});
}

BOOST_AUTO_TEST_CASE(each_bad_record_is_skipped_and_counted) {
  for (const BadCase& c : bad_cases()) {
    BOOST_TEST_CONTEXT(c.name) {
      const fs::path p = write_file({kHeader, good("q1"), c.line, good("q2")});
      const QuestionSet s = read_questions(p);
      BOOST_REQUIRE(s.questions.size() == 2u);
      BOOST_TEST(s.questions[0].id == "q1");
      BOOST_TEST(s.questions[1].id == "q2");
      BOOST_TEST(s.skipped.total() == 1u);
      BOOST_TEST(s.skipped.count(c.problem) == 1u, "counted as " << problem_name(c.problem));
      BOOST_REQUIRE(s.skipped.details.size() == 1u);
      const SkippedRecord& r = s.skipped.details[0];
      BOOST_TEST(r.line == 3u);
      BOOST_TEST(static_cast<int>(r.problem) == static_cast<int>(c.problem));
      BOOST_TEST(r.id.rfind(c.id, 0) == 0u, "id '" << r.id << "' should start with '" << c.id << "'");
      expect_mentions(r.message, {"line 3", c.mention});
      if (!c.id.empty()) expect_mentions(r.message, {"(id \"" + c.id});
      expect_mentions(s.skipped.summary(), {"1 question skipped: 1 " + std::string(problem_name(c.problem))});
    }
  }
}

BOOST_AUTO_TEST_CASE(each_bad_record_is_an_error_when_strict) {
  LoadOptions o;
  o.strict = true;
  for (const BadCase& c : bad_cases()) {
    BOOST_TEST_CONTEXT(c.name) {
      const fs::path p = write_file({kHeader, good("q1"), c.line, good("q2")});
      expect_mentions(input_error_of([&] { read_questions(p, o); }), {p.string(), "line 3", c.mention});
    }
  }
}

BOOST_AUTO_TEST_CASE(duplicate_id_keeps_the_first) {
  const QuestionSet s = read_questions(write_file({kHeader, good("q1", "First"), good("q1", "Second")}));
  BOOST_REQUIRE(s.questions.size() == 1u);
  BOOST_TEST(s.questions[0].entries[0].answers[0] == "First");
  // A skipped record still owns its id: a later record with that id is a duplicate.
  const std::string missing = R"({"id": "q5", "languages": {"en": {"question": "Q?", "answers": ["A"]}}})";
  const QuestionSet t = read_questions(write_file({kHeader, missing, good("q5"), good("q6")}));
  BOOST_TEST(t.skipped.count(RecordProblem::MissingLanguage) == 1u);
  BOOST_TEST(t.skipped.count(RecordProblem::DuplicateId) == 1u);
  BOOST_REQUIRE(t.questions.size() == 1u);
  BOOST_TEST(t.questions[0].id == "q6");
}

BOOST_AUTO_TEST_CASE(counts_are_complete_and_details_bounded) {
  std::vector<std::string> lines{kHeader, good("keep")};
  for (int i = 0; i < 150; ++i) lines.push_back(good("keep"));
  for (int i = 0; i < 7; ++i) lines.push_back("not json " + std::to_string(i));
  const QuestionSet s = read_questions(write_file(lines));
  BOOST_TEST(s.questions.size() == 1u);
  BOOST_TEST(s.skipped.count(RecordProblem::DuplicateId) == 150u);
  BOOST_TEST(s.skipped.count(RecordProblem::MalformedJson) == 7u);
  BOOST_TEST(s.skipped.total() == 157u);
  BOOST_TEST(s.skipped.details.size() == kMaxSkipDetails);
  BOOST_TEST(s.skipped.summary() == "157 questions skipped: 7 malformed JSON, 150 duplicate id");
}

BOOST_AUTO_TEST_CASE(questions_found_unusable_after_loading_are_skipped_or_named) {
  const fs::path p = write_file({kHeader, good("q1"), good("q2"), good("q3")});
  const std::vector<LateProblem> problems{{2, RecordProblem::TooLong, "language 'de': the prompt is 70 tokens"},
                                          {0, RecordProblem::EmptyQuestion, "language 'en': no token"},
                                          {2, RecordProblem::EmptyAnswer, "a second problem of q3: not counted"}};
  QuestionSet s = read_questions(p);
  skip_questions(s, problems, false, p.string());
  BOOST_REQUIRE(s.questions.size() == 1u);
  BOOST_TEST(s.questions[0].id == "q2");
  BOOST_TEST(s.skipped.summary() == "2 questions skipped: 1 empty question, 1 too long");
  BOOST_REQUIRE(s.skipped.details.size() == 2u);
  BOOST_TEST(s.skipped.details[0].message == "line 4 (id \"q3\"): language 'de': the prompt is 70 tokens");
  BOOST_TEST(s.skipped.details[0].line == 4u);
  BOOST_TEST(s.questions[0].entries.size() == 3u);
  QuestionSet k = read_questions(p);  // the questions before the first skipped one stay whole
  skip_questions(k, {{2, RecordProblem::TooLong, "x"}}, false, p.string());
  BOOST_REQUIRE(k.questions.size() == 2u);
  for (const Question& q : k.questions) BOOST_TEST(q.entries.size() == 3u);
  BOOST_TEST(k.questions[0].entries[0].prompt == "Capital of France?");
  QuestionSet t = read_questions(p);
  expect_mentions(input_error_of([&] { skip_questions(t, problems, true, p.string()); }),
                  {p.string(), "line 4 (id \"q3\")", "70 tokens"});
  QuestionSet u = read_questions(p);
  expect_mentions(input_error_of([&] {
                    skip_questions(u, {{0, RecordProblem::TooLong, "x"}, {1, RecordProblem::TooLong, "y"}, {2, RecordProblem::TooLong, "z"}},
                                   false, p.string());
                  }),
                  {p.string(), "no usable question", "3 too long"});
}

BOOST_AUTO_TEST_CASE(no_usable_question_is_an_error) {
  const fs::path p = write_file({kHeader, "[1]", R"({"id": "x"})"});
  expect_mentions(input_error_of([&] { read_questions(p); }),
                  {p.string(), "no usable question", "2 questions skipped", "1 malformed JSON", "1 missing language"});
  const fs::path only_header = write_file({kHeader});
  expect_mentions(input_error_of([&] { read_questions(only_header); }), {"no usable question", "no question skipped"});
}

BOOST_AUTO_TEST_CASE(bad_headers_are_errors) {
  struct H {
    std::string header, mention;
  };
  const std::vector<H> cases = {
      {R"({"id": "q1", "languages": {}})", "unknown header field 'id'"},
      {R"({"format": "moetrace-localise", "version": 1, "languages": ["en"]})", "must be \"moetrace-localize\""},
      {R"({"format": "moetrace-localize", "version": 2, "languages": ["en"]})", "'version' must be an integer in [1, 1]"},
      {R"({"format": "moetrace-localize", "version": 1.0, "languages": ["en"]})", "'version'"},
      {R"({"format": "moetrace-localize", "languages": ["en"]})", "no field 'version'"},
      {R"({"format": "moetrace-localize", "version": 1, "languages": []})", "list of 1 to 1000"},
      {R"({"format": "moetrace-localize", "version": 1, "languages": ["EN"]})", "'EN' is not a language code"},
      {R"({"format": "moetrace-localize", "version": 1, "languages": ["en", "en"]})", "listed twice"},
      {R"({"format": "moetrace-localize", "version": 1, "languages": [3]})", "must be a string"},
      {R"({"format": "moetrace-localize", "version": 1, "languages": ["en"], "source": 5})", "'source'"},
      {"[1, 2]", "the first line must be the header"},
      {"{\"format\": \"moetrace-localize\xC3\"}", "invalid UTF-8"},
      {"{", "not valid JSON"},
  };
  for (const H& h : cases) {
    BOOST_TEST_CONTEXT(h.header) {
      const fs::path p = write_file({h.header, good("q1")});
      expect_mentions(input_error_of([&] { read_questions(p); }), {p.string(), "line 1", h.mention});
    }
  }
  const fs::path empty = write_file({"", "  "});
  expect_mentions(input_error_of([&] { read_questions(empty); }), {"empty file"});
  expect_mentions(input_error_of([&] { read_questions(empty.parent_path()); }), {empty.parent_path().string()});
  expect_mentions(input_error_of([&] { read_questions(empty.parent_path() / "absent.jsonl"); }), {"absent.jsonl"});
}

BOOST_AUTO_TEST_CASE(templates_render_and_are_checked) {
  BOOST_TEST(render_prompt("Q: {question} Only a {output_type}.\nA:", "Who?", "name") == "Q: Who? Only a name.\nA:");
  BOOST_TEST(render_prompt("{{literal}} {question}", "x", "") == "{literal} x");
  BOOST_TEST(template_uses_output_type("{question} {output_type}"));
  BOOST_TEST(!template_uses_output_type("{question} {{output_type}}"));
  for (const auto& [tpl, mention] : std::vector<std::pair<std::string, std::string>>{
           {"no placeholder", "exactly once, found 0"},
           {"{question} and {question}", "exactly once, found 2"},
           {"{question} {answer}", "unknown placeholder at byte 11"},
           {"{question} {", "unknown placeholder"},
           {"{question} }", "lone '}' at byte 11"},
           {"{question} \xFF", "invalid UTF-8 at byte 11"}}) {
    BOOST_TEST_CONTEXT(tpl) { expect_mentions(input_error_of([&] { check_prompt_template(tpl, "[localize] template"); }), {"[localize] template", mention}); }
  }

  LoadOptions o;
  o.templates.default_template = "Q: {question}\nA:";
  o.templates.per_language["de"] = "F: {question} Nur als {output_type}.\nA:";
  const std::string de_without_type =
      R"({"id": "q2", "languages": {"en": {"question": "Q?", "answers": ["A"]}, "de": {"question": "F?", "answers": ["A"]}, "fr": {"question": "Q ?", "answers": ["A"]}}})";
  const QuestionSet s = read_questions(write_file({kHeader, good("q1"), de_without_type}), o);
  BOOST_REQUIRE(s.questions.size() == 1u);
  BOOST_TEST(s.questions[0].entries[0].prompt == "Q: Capital of France?\nA:");
  BOOST_TEST(s.questions[0].entries[1].prompt == "F: Hauptstadt Frankreichs? Nur als Stadt.\nA:");
  BOOST_TEST(s.skipped.count(RecordProblem::BadField) == 1u);
  expect_mentions(s.skipped.details.at(0).message, {"line 3 (id \"q2\")", "language 'de'", "output_type"});

  o.templates.per_language["es"] = "{question}";
  expect_mentions(input_error_of([&] { read_questions(write_file({kHeader, good("q1")}), o); }), {"'es'", "not a selected language"});
  o.templates.per_language.erase("es");
  o.templates.default_template = "{prompt}";
  expect_mentions(input_error_of([&] { read_questions(write_file({kHeader, good("q1")}), o); }), {"default", "unknown placeholder"});
}

BOOST_AUTO_TEST_CASE(language_codes) {
  for (const char* ok : {"en", "yue", "zh-Hans", "pt-BR", "sr-Latn-RS", "de-1996"}) BOOST_TEST(valid_language_code(ok), ok);
  for (const char* bad : {"", "e", "engl", "EN", "en-", "en--x", "en_US", "en-abcdefghi", "zh-Hans ", "-en", "en-ü"})
    BOOST_TEST(!valid_language_code(bad), bad);
}

BOOST_AUTO_TEST_CASE(mutated_files_load_or_are_input_errors) {
  // Deterministic byte mutations of a good file (flip, delete, insert, duplicate a line): every one
  // either loads (lenient or strict) or is an InputError, never another exception or a crash.
  std::string base = kHeader + "\n";
  for (int i = 0; i < 6; ++i) base += good("q" + std::to_string(i)) + "\n";
  std::uint64_t state = 0x9E3779B97F4A7C15ull;
  auto next = [&] {
    state ^= state << 13;
    state ^= state >> 7;
    state ^= state << 17;
    return state;
  };
  const char alphabet[] = "{}[]\":,\\ \n\xC3\xFF\x80\xED" "abu0";
  int loaded = 0, refused = 0;
  for (int round = 0; round < 600; ++round) {
    std::string text = base;
    const int edits = 1 + static_cast<int>(next() % 4);
    for (int e = 0; e < edits; ++e) {
      const std::size_t at = next() % text.size();
      switch (next() % 4) {
        case 0: text[at] = alphabet[next() % (sizeof(alphabet) - 1)]; break;
        case 1: text.erase(at, 1 + next() % 8); break;
        case 2: text.insert(at, 1, alphabet[next() % (sizeof(alphabet) - 1)]); break;
        default: {
          const std::size_t start = text.rfind('\n', at);
          const std::size_t from = start == std::string::npos ? 0 : start + 1;
          const std::size_t end = text.find('\n', at);
          text += text.substr(from, end == std::string::npos ? std::string::npos : end - from + 1);
        }
      }
      if (text.empty()) text = "x";
    }
    const fs::path p = write_file({text}, "");
    for (const bool strict : {false, true}) {
      LoadOptions o;
      o.strict = strict;
      try {
        const QuestionSet s = read_questions(p, o);
        BOOST_TEST(!s.questions.empty());
        ++loaded;
      } catch (const InputError&) {
        ++refused;
      }
    }
  }
  BOOST_TEST_MESSAGE(loaded << " loads, " << refused << " refusals");
  BOOST_TEST(loaded > 0);
  BOOST_TEST(refused > 0);
}
