#pragma once
// Parallel multilingual questions for router-contrast localisation (docs/localize.md, "Data
// format"): a JSON Lines file whose first line is a header naming the languages and whose every
// other line is one question with, per language, the question text and its accepted answers.
//
// Every file is hostile input. File-level problems (unreadable, too large, a bad header, a language
// the config asks for that the header lacks, no usable question) are an InputError naming the file.
// Record-level problems (a line that is not JSON or not UTF-8, a bad or duplicate id, a missing or
// unknown language, an empty question or answer, a wrong field) skip the question and are counted
// by kind; with `strict` the first one is an InputError naming the file, the line and the id.
#include <array>
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <map>
#include <string>
#include <string_view>
#include <vector>

namespace moetrace::localize {

inline constexpr std::string_view kFormatName = "moetrace-localize";
inline constexpr std::int64_t kFormatVersion = 1;

// Bounds on what a file may hold (docs/localize.md). A question is a sentence or a few; few-shot
// context belongs in the prompt template, not in the data.
inline constexpr std::uint64_t kMaxQuestionFileBytes = std::uint64_t{1} << 30;
inline constexpr std::size_t kMaxLanguages = 1000;
inline constexpr std::size_t kMaxIdBytes = 256;
inline constexpr std::size_t kMaxQuestionBytes = 16384;
inline constexpr std::size_t kMaxAnswerBytes = 1024;
inline constexpr std::size_t kMaxAnswers = 64;
inline constexpr std::size_t kMaxOutputTypeBytes = 256;
inline constexpr std::size_t kMaxSourceBytes = 1024;
inline constexpr std::size_t kMaxTemplateBytes = std::size_t{1} << 20;
// Skipped records kept with their full message (all are counted).
inline constexpr std::size_t kMaxSkipDetails = 100;

// Why a question was skipped. The first problem found is reported (checks run in this order on a
// line: UTF-8, JSON, top-level fields, id, duplicate id, unknown languages, missing languages, then
// each selected language's entry).
enum class RecordProblem : std::uint8_t {
  InvalidUtf8,      // raw bytes that are not UTF-8, or an escaped lone surrogate (\ud800)
  MalformedJson,    // not JSON, not an object, a duplicate key, nesting too deep
  BadId,            // "id" missing, not a string, empty or longer than kMaxIdBytes
  DuplicateId,      // an earlier line has the same id (the first record with an id owns it)
  UnknownLanguage,  // a language the header does not list
  MissingLanguage,  // a selected language is absent
  EmptyQuestion,    // question text empty or only white space (Unicode White_Space: U+3000, U+00A0, ...),
                    // or a prompt that tokenizes to no token (found after loading, skip_questions)
  EmptyAnswer,      // no accepted answer, or one that is blank, normalises to "" (localize_match.h) or
                    // tokenizes to no token (found after loading, skip_questions)
  BadField,         // unknown field, wrong type, output_type missing where the template needs it
  TooLong,          // a string or list longer than the bounds above, or a prompt that with max_new_tokens
                    // does not fit the model's positions (found after loading, skip_questions)
};
inline constexpr std::size_t kRecordProblemCount = 10;
std::string_view problem_name(RecordProblem p);  // "invalid UTF-8", "duplicate id", ...

struct SkippedRecord {
  std::size_t line = 0;  // 1-based line of the file
  std::string id;        // "" when the id could not be read
  RecordProblem problem = RecordProblem::MalformedJson;
  std::string message;  // "line 7 (id \"q3\"): ..." (without the file name)
};

struct SkipReport {
  std::array<std::size_t, kRecordProblemCount> counts{};
  std::vector<SkippedRecord> details;  // the first kMaxSkipDetails skipped records
  std::size_t total() const;
  std::size_t count(RecordProblem p) const { return counts[static_cast<std::size_t>(p)]; }
  // "3 questions skipped: 1 missing language, 2 duplicate id" ("no question skipped" when none).
  std::string summary() const;
};

// One language of a question.
struct LanguageEntry {
  std::string question;              // the question text as in the file
  std::string output_type;           // optional ("" when absent), e.g. "year", "name"
  std::string prompt;                // the question rendered through the language's template
  std::vector<std::string> answers;  // accepted answers, as in the file, at least one
  std::vector<std::string> normalised_answers;  // normalise_answer(answers[i], language), none empty
};

struct Question {
  std::string id;
  std::size_t line = 0;
  std::vector<LanguageEntry> entries;  // parallel to QuestionSet::languages
};

// Prompt templates (config): "{question}" is replaced by the question text, "{output_type}" by the
// entry's output_type, "{{" and "}}" are literal braces; any other brace is an error. "{question}"
// must occur exactly once. A language without its own template uses `default_template`.
struct PromptTemplates {
  std::string default_template = "{question}";
  std::map<std::string, std::string> per_language;
};

// InputError naming `what` (e.g. "[localize.templates] de") unless `tpl` follows the rules above.
void check_prompt_template(std::string_view tpl, std::string_view what);
bool template_uses_output_type(std::string_view tpl);  // tpl must have passed the check
std::string render_prompt(std::string_view tpl, std::string_view question, std::string_view output_type);

struct LoadOptions {
  std::vector<std::string> languages;  // those to load, in this order; empty = all, header order
  bool strict = false;                 // first bad record is an InputError
  PromptTemplates templates;
};

struct QuestionSet {
  std::string source;                  // the header's free-text "source" ("" when absent)
  std::vector<std::string> languages;  // the selected languages
  std::vector<Question> questions;     // usable questions, in file order
  SkipReport skipped;
};

// A language code as the format accepts it: a BCP-47-like tag, 2-3 lowercase letters, then
// optional "-" subtags of 1-8 letters or digits ("en", "zh-Hans", "pt-BR", "yue").
bool valid_language_code(std::string_view code);

// Reads and checks the file. `what` names where the path came from in file-level messages (e.g.
// "[localize] questions").
QuestionSet read_questions(const std::filesystem::path& path, const LoadOptions& options = {},
                           const std::string& what = "question file");

// A problem of a loaded question that only the model or tokenizer reveals (localize_ask.h,
// screen_prompts): the index into QuestionSet::questions, the kind, and the message without the
// file name and line ("language 'de': the prompt is 70 tokens ...").
struct LateProblem {
  std::size_t question = 0;
  RecordProblem problem = RecordProblem::TooLong;
  std::string message;
};

// Removes the questions with a problem as the loader skips a bad record: counted in `skipped` (the
// first kMaxSkipDetails kept with their message); with `strict` the first problem is an InputError
// naming `file`, the line and the id. InputError naming `file` when no usable question remains.
void skip_questions(QuestionSet& set, const std::vector<LateProblem>& problems, bool strict, const std::string& file);

}  // namespace moetrace::localize
