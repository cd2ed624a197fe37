// The C++ loader on the converter's output (tools/multiloko_to_json.py on the hand-made tree in
// tests/localize/data/multiloko, run by the ctest fixture multiloko_converter). The folder of the
// converted files is the last argument after `--`. The few-shot templates the converter writes
// (templates_en.toml) are read with toml++ as a config would be and rendered by the loader.
#define BOOST_TEST_MODULE localize_multiloko
#include <boost/test/unit_test.hpp>

#include <filesystem>
#include <string>
#include <vector>

#include <toml++/toml.h>

#include "localize/localize_data.h"
#include "support/input_error.h"
#include "util/error.h"

namespace fs = std::filesystem;
using namespace moetrace;
using namespace moetrace::localize;

namespace {

fs::path converted(const std::string& name) {
  const auto& suite = boost::unit_test::framework::master_test_suite();
  BOOST_REQUIRE_MESSAGE(suite.argc >= 2, "usage: test_localize_multiloko -- <folder of converted files>");
  return fs::path(suite.argv[suite.argc - 1]) / name;
}

std::vector<std::string> ids(const QuestionSet& s) {
  std::vector<std::string> out;
  for (const auto& q : s.questions) out.push_back(q.id);
  return out;
}

}  // namespace

BOOST_AUTO_TEST_CASE(english_sourced_set_loads_with_bad_records_counted) {
  const QuestionSet s = read_questions(converted("multiloko_en.jsonl"));
  BOOST_TEST(s.languages == (std::vector<std::string>{"en", "fr", "de"}));
  BOOST_TEST(s.source == "MultiLoKo dev, english-sourced, human translations");
  BOOST_TEST(ids(s) == (std::vector<std::string>{"001_Eiffel_Tower.txt", "002_Danube.txt", "003_Mozart.txt"}));
  // 003_Mozart.txt#2: French byte not UTF-8; 004: empty English target; 005: no French.
  BOOST_TEST(s.skipped.total() == 3u);
  BOOST_TEST(s.skipped.count(RecordProblem::InvalidUtf8) == 1u);
  BOOST_TEST(s.skipped.count(RecordProblem::EmptyAnswer) == 1u);
  BOOST_TEST(s.skipped.count(RecordProblem::MissingLanguage) == 1u);
  BOOST_REQUIRE(s.skipped.details.size() == 3u);
  BOOST_TEST(s.skipped.details[0].id == "003_Mozart.txt#2");
  BOOST_TEST(s.skipped.details[2].message.find("language 'fr' is missing") != std::string::npos);
  const Question& danube = s.questions[1];
  BOOST_TEST(danube.entries[0].answers == (std::vector<std::string>{"Black Sea", "the Black Sea"}));
  BOOST_TEST(danube.entries[1].answers == (std::vector<std::string>{"la mer Noire"}));
  BOOST_TEST(danube.entries[2].question == "In welches Meer mündet die Donau?");
  BOOST_TEST(danube.entries[2].output_type == "Name");
}

BOOST_AUTO_TEST_CASE(selecting_languages_recovers_questions) {
  LoadOptions o;
  o.languages = {"de", "en"};
  o.templates.default_template = "Q: {question} ({output_type})\nA:";
  const QuestionSet s = read_questions(converted("multiloko_en.jsonl"), o);
  // 005_Alps.txt comes back; 003_Mozart.txt#2 stays out: UTF-8 is checked on the whole line.
  BOOST_TEST(ids(s) == (std::vector<std::string>{"001_Eiffel_Tower.txt", "002_Danube.txt", "003_Mozart.txt",
                                                 "005_Alps.txt"}));
  BOOST_TEST(s.skipped.total() == 2u);
  BOOST_TEST(s.skipped.count(RecordProblem::InvalidUtf8) == 1u);
  BOOST_TEST(s.skipped.count(RecordProblem::EmptyAnswer) == 1u);
  BOOST_TEST(s.questions[2].entries[0].prompt == "Q: In welcher Stadt wurde Mozart geboren? (Ort)\nA:");
  BOOST_TEST(s.questions[2].entries[1].prompt == "Q: In which city was Mozart born? (place)\nA:");
}

BOOST_AUTO_TEST_CASE(strict_names_the_first_bad_record) {
  LoadOptions o;
  o.strict = true;
  const fs::path p = converted("multiloko_en.jsonl");
  const std::string msg = test::input_error_of([&] { read_questions(p, o); });
  BOOST_TEST(msg.find(p.string() + ": line 5 (id \"003_Mozart.txt#2\"): invalid UTF-8") != std::string::npos, msg);
}

BOOST_AUTO_TEST_CASE(other_conversions_load) {
  const QuestionSet de = read_questions(converted("multiloko_de.jsonl"));
  BOOST_TEST(de.languages == (std::vector<std::string>{"de", "en"}));
  BOOST_TEST(ids(de) == (std::vector<std::string>{"010_Brandenburger_Tor.txt", "011_Zugspitze.txt"}));
  BOOST_TEST(de.questions[1].entries[1].answers == (std::vector<std::string>{"Zugspitze", "the Zugspitze"}));

  const QuestionSet machine = read_questions(converted("multiloko_machine.jsonl"));
  BOOST_TEST(ids(machine) == (std::vector<std::string>{"001_Eiffel_Tower.txt"}));
  // 004 (empty English target) lacks German too: a missing language is found before the entries.
  BOOST_TEST(machine.skipped.count(RecordProblem::MissingLanguage) == 5u);
  BOOST_TEST(machine.skipped.count(RecordProblem::EmptyAnswer) == 0u);

  const QuestionSet en_de = read_questions(converted("multiloko_en_de.jsonl"));
  BOOST_TEST(en_de.languages == (std::vector<std::string>{"en", "de"}));
  BOOST_TEST(en_de.questions.size() == 5u);
}

BOOST_AUTO_TEST_CASE(few_shot_templates_render_through_the_loader) {
  const toml::table doc = toml::parse_file(converted("templates_en.toml").string());
  const toml::table* t = doc["templates"].as_table();
  BOOST_REQUIRE(t != nullptr);
  LoadOptions o;
  for (const auto& [code, value] : *t) {
    BOOST_REQUIRE(value.is_string());
    const std::string tpl = value.value<std::string>().value();
    BOOST_CHECK_NO_THROW(check_prompt_template(tpl, "templates " + std::string(code.str())));
    BOOST_TEST(template_uses_output_type(tpl));
    o.templates.per_language[std::string(code.str())] = tpl;
  }
  BOOST_TEST(o.templates.per_language.size() == 3u);
  const QuestionSet s = read_questions(converted("multiloko_en_t.jsonl"), o);
  BOOST_REQUIRE(s.questions.size() == 3u);
  const Question& danube = s.questions[1];
  // English: the five examples (escaped braces and the backslash come out literally), then the question.
  const std::string en = danube.entries[0].prompt;
  BOOST_TEST(en.rfind("Q: Which river flows through Vienna? (name)\nA: Danube\n\n", 0) == 0u, en);
  BOOST_TEST(en.find("Q: What does the set {1, 2} contain besides 1? (number)\nA: 2\n\n") != std::string::npos, en);
  BOOST_TEST(en.find("Q: Which novel begins with \"Call me Ishmael\"? (title)\nA: Moby-Dick\n\n") != std::string::npos, en);
  BOOST_TEST(en.find("(character)\nA: \\\n\n") != std::string::npos, en);
  const std::string tail = "Q: Into which sea does the Danube flow? (name)\nA:";
  BOOST_TEST(en.size() > tail.size());
  BOOST_TEST(en.compare(en.size() - tail.size(), tail.size(), tail) == 0, en);
  BOOST_TEST(danube.entries[1].prompt ==
                 "Q: Quel fleuve traverse Lyon avec la Sa\u00f4ne ? (nom)\nA: le Rh\u00f4ne\n\n"
                 "Q: Dans quelle mer se jette le Danube ? (nom)\nA:",
             danube.entries[1].prompt);
  BOOST_TEST(danube.entries[2].prompt ==
                 "Q: Welcher Fluss flie\u00dft durch K\u00f6ln? (Name)\nA: Rhein\n\n"
                 "Q: Wie viele Bundesl\u00e4nder hat \u00d6sterreich? Bitte nur die Zahl. (Zahl)\nA: 9\n\n"
                 "Q: In welches Meer m\u00fcndet die Donau? (Name)\nA:",
             danube.entries[2].prompt);
}
