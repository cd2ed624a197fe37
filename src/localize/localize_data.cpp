#include "localize/localize_data.h"

#include <algorithm>
#include <optional>
#include <set>
#include <unordered_map>
#include <utility>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "localize/localize_match.h"
#include "tokenizer/utf8.h"
#include "util/error.h"
#include "util/input_file.h"
#include "util/json_input.h"
#include "util/message.h"

namespace moetrace::localize {
namespace {

using nlohmann::json;

constexpr std::array<std::string_view, kRecordProblemCount> kProblemNames = {
    "invalid UTF-8", "malformed JSON", "bad id", "duplicate id", "unknown language", "missing language",
    "empty question", "empty answer", "bad field", "too long"};

// A record-level problem, raised while checking one line and caught by the line loop.
struct RecordError {
  RecordProblem problem;
  std::string message;
};

[[noreturn]] void bad_record(RecordProblem p, std::string message) { throw RecordError{p, std::move(message)}; }

bool blank(std::string_view s) {
  return std::all_of(s.begin(), s.end(), [](char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v'; });
}

// Empty or only Unicode White_Space (U+3000, U+00A0, U+2028, ...) in valid UTF-8: nothing to ask.
bool blank_text(std::string_view s) {
  for (std::size_t i = 0; i < s.size();)
    if (!tok::is_unicode_whitespace(tok::next_code_point(s, i))) return false;
  return true;
}

// The id of a parsed record when it has a readable one, for messages.
std::string id_for_message(const json& j) {
  if (j.is_object() && j.contains("id") && j["id"].is_string()) return shorten(j["id"].get<std::string>(), 60);
  return {};
}

std::string line_label(std::size_t line, std::string_view id) {
  if (id.empty()) return fmt::format("line {}", line);
  return fmt::format("line {} (id \"{}\")", line, id);
}

const std::string& string_value(const json& v, std::string_view where, std::size_t max_bytes) {
  if (!v.is_string()) bad_record(RecordProblem::BadField, fmt::format("{} must be a string, got {}", where, json_for_message(v)));
  const auto& s = v.get_ref<const std::string&>();
  if (s.size() > max_bytes)
    bad_record(RecordProblem::TooLong,
               fmt::format("{} is {} bytes long, more than the {} allowed: \"{}\"", where, s.size(), max_bytes, shorten(s)));
  return s;
}

struct Header {
  std::string source;
  std::vector<std::string> languages;
};

Header read_header(std::string_view text, const std::string& file, std::size_t line) {
  const std::string where = fmt::format("{}: line {} (header)", file, line);
  if (const auto bad = tok::find_invalid_utf8(text); bad != std::string_view::npos)
    fail_input("{}: invalid UTF-8 at byte {}", where, bad);
  const json j = parse_json_input(text, where);
  if (!j.is_object())
    fail_input("{}: the first line must be the header object {{\"format\": \"{}\", \"version\": {}, \"languages\": [...]}}",
               where, kFormatName, kFormatVersion);
  for (const auto& [key, value] : j.items())
    if (key != "format" && key != "version" && key != "languages" && key != "source")
      fail_input("{}: unknown header field '{}'", where, shorten(key));
  for (const char* key : {"format", "version", "languages"})
    if (!j.contains(key)) fail_input("{}: the header has no field '{}'", where, key);
  if (json_string(j["format"], where, "format") != kFormatName)
    fail_input("{}: field 'format' must be \"{}\", got {}", where, kFormatName, json_for_message(j["format"]));
  json_integer(j["version"], kFormatVersion, kFormatVersion, where, "version");
  Header h;
  if (j.contains("source")) {
    h.source = json_string(j["source"], where, "source");
    if (h.source.size() > kMaxSourceBytes) fail_input("{}: field 'source' is longer than {} bytes", where, kMaxSourceBytes);
  }
  const json& langs = j["languages"];
  if (!langs.is_array() || langs.empty() || langs.size() > kMaxLanguages)
    fail_input("{}: field 'languages' must be a list of 1 to {} language codes", where, kMaxLanguages);
  std::set<std::string> seen;
  for (const json& v : langs) {
    const std::string code = json_string(v, where, "languages");
    if (!valid_language_code(code))
      fail_input("{}: '{}' is not a language code (2-3 lowercase letters, then '-' subtags: en, zh-Hans, pt-BR)", where,
                 shorten(code));
    if (!seen.insert(code).second) fail_input("{}: language '{}' is listed twice", where, code);
    h.languages.push_back(code);
  }
  return h;
}

std::string join(const std::vector<std::string>& v) {
  std::string out;
  for (const auto& s : v) out += (out.empty() ? "" : ", ") + s;
  return out;
}

// What the loader needs per selected language.
struct LanguagePlan {
  std::string code;
  std::string template_text;
  bool needs_output_type = false;
};

std::vector<LanguagePlan> plan_languages(const Header& header, const LoadOptions& options, const std::string& file,
                                         const std::string& what) {
  const std::vector<std::string>& chosen = options.languages.empty() ? header.languages : options.languages;
  const std::set<std::string> in_file(header.languages.begin(), header.languages.end());
  std::set<std::string> seen;
  std::vector<LanguagePlan> plan;
  for (const std::string& code : chosen) {
    if (!in_file.count(code))
      fail_input("{} ({}): language '{}' is not among the file's languages ({})", what, file, shorten(code),
                 shorten(join(header.languages), 200));
    if (!seen.insert(code).second) fail_input("{}: language '{}' is selected twice", what, code);
  }
  check_prompt_template(options.templates.default_template, "prompt template (default)");
  for (const auto& [code, tpl] : options.templates.per_language) {
    if (!seen.count(code))
      fail_input("prompt template for language '{}': not a selected language of {} ({})", shorten(code), file,
                 shorten(join(chosen), 200));
    check_prompt_template(tpl, fmt::format("prompt template for '{}'", code));
  }
  for (const std::string& code : chosen) {
    const auto it = options.templates.per_language.find(code);
    LanguagePlan p{code, it == options.templates.per_language.end() ? options.templates.default_template : it->second};
    p.needs_output_type = template_uses_output_type(p.template_text);
    plan.push_back(std::move(p));
  }
  return plan;
}

LanguageEntry read_entry(const json& e, const LanguagePlan& plan) {
  const std::string where = fmt::format("language '{}'", plan.code);
  if (!e.is_object()) bad_record(RecordProblem::BadField, fmt::format("{} must be an object with 'question' and 'answers'", where));
  for (const auto& [key, value] : e.items())
    if (key != "question" && key != "answers" && key != "output_type")
      bad_record(RecordProblem::BadField, fmt::format("{}: unknown field '{}'", where, shorten(key)));
  LanguageEntry entry;
  if (!e.contains("question")) bad_record(RecordProblem::EmptyQuestion, fmt::format("{}: no field 'question'", where));
  entry.question = string_value(e["question"], where + ": 'question'", kMaxQuestionBytes);
  if (blank_text(entry.question)) bad_record(RecordProblem::EmptyQuestion, fmt::format("{}: the question is empty or only white space", where));
  if (!e.contains("answers")) bad_record(RecordProblem::EmptyAnswer, fmt::format("{}: no field 'answers'", where));
  const json& answers = e["answers"];
  if (!answers.is_array()) bad_record(RecordProblem::BadField, fmt::format("{}: 'answers' must be a list of strings", where));
  if (answers.empty()) bad_record(RecordProblem::EmptyAnswer, fmt::format("{}: 'answers' is empty", where));
  if (answers.size() > kMaxAnswers)
    bad_record(RecordProblem::TooLong, fmt::format("{}: {} answers, more than the {} allowed", where, answers.size(), kMaxAnswers));
  for (std::size_t i = 0; i < answers.size(); ++i) {
    const std::string& a = string_value(answers[i], fmt::format("{}: answer {}", where, i), kMaxAnswerBytes);
    if (blank_text(a)) bad_record(RecordProblem::EmptyAnswer, fmt::format("{}: answer {} is empty", where, i));
    std::string normalised = normalise_answer(a, plan.code);
    if (normalised.empty())
      bad_record(RecordProblem::EmptyAnswer,
                 fmt::format("{}: answer {} (\"{}\") is empty after normalisation (punctuation only?)", where, i, shorten(a)));
    entry.answers.push_back(a);
    entry.normalised_answers.push_back(std::move(normalised));
  }
  if (e.contains("output_type")) entry.output_type = string_value(e["output_type"], where + ": 'output_type'", kMaxOutputTypeBytes);
  if (plan.needs_output_type && blank_text(entry.output_type))
    bad_record(RecordProblem::BadField,
               fmt::format("{}: no 'output_type', which the language's prompt template uses", where));
  entry.prompt = render_prompt(plan.template_text, entry.question, entry.output_type);
  return entry;
}

Question read_record(const json& j) {
  if (!j.is_object()) bad_record(RecordProblem::MalformedJson, "a question must be a JSON object");
  for (const auto& [key, value] : j.items())
    if (key != "id" && key != "languages" && key != "meta")
      bad_record(RecordProblem::BadField, fmt::format("unknown field '{}'", shorten(key)));
  Question q;
  if (!j.contains("id")) bad_record(RecordProblem::BadId, "no field 'id'");
  if (!j["id"].is_string()) bad_record(RecordProblem::BadId, fmt::format("'id' must be a string, got {}", json_for_message(j["id"])));
  q.id = j["id"].get<std::string>();
  if (q.id.empty()) bad_record(RecordProblem::BadId, "'id' is empty");
  if (q.id.size() > kMaxIdBytes)
    bad_record(RecordProblem::BadId, fmt::format("'id' is {} bytes long, more than the {} allowed", q.id.size(), kMaxIdBytes));
  return q;
}

void read_languages(Question& q, const json& j, const std::vector<LanguagePlan>& plan, const std::set<std::string>& header_langs) {
  if (!j.contains("languages")) bad_record(RecordProblem::MissingLanguage, "no field 'languages'");
  const json& langs = j["languages"];
  if (!langs.is_object()) bad_record(RecordProblem::BadField, "'languages' must be an object keyed by language code");
  for (const auto& [code, value] : langs.items())
    if (!header_langs.count(code))
      bad_record(RecordProblem::UnknownLanguage, fmt::format("language '{}' is not in the header", shorten(code)));
  for (const LanguagePlan& p : plan)
    if (!langs.contains(p.code)) bad_record(RecordProblem::MissingLanguage, fmt::format("language '{}' is missing", p.code));
  for (const LanguagePlan& p : plan) q.entries.push_back(read_entry(langs[p.code], p));
}

}  // namespace

std::string_view problem_name(RecordProblem p) { return kProblemNames.at(static_cast<std::size_t>(p)); }

std::size_t SkipReport::total() const {
  std::size_t t = 0;
  for (auto c : counts) t += c;
  return t;
}

std::string SkipReport::summary() const {
  if (total() == 0) return "no question skipped";
  std::string out = fmt::format("{} question{} skipped:", total(), total() == 1 ? "" : "s");
  bool first = true;
  for (std::size_t i = 0; i < kRecordProblemCount; ++i) {
    if (!counts[i]) continue;
    out += fmt::format("{} {} {}", first ? "" : ",", counts[i], kProblemNames[i]);
    first = false;
  }
  return out;
}

bool valid_language_code(std::string_view code) {
  auto lower = [](char c) { return c >= 'a' && c <= 'z'; };
  auto alnum = [](char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9'); };
  std::size_t i = 0;
  while (i < code.size() && lower(code[i])) ++i;
  if (i < 2 || i > 3) return false;
  while (i < code.size()) {
    if (code[i] != '-') return false;
    const std::size_t start = ++i;
    while (i < code.size() && alnum(code[i])) ++i;
    if (i - start < 1 || i - start > 8) return false;
  }
  return true;
}

namespace {

// Walks a template: calls on_text(literal) and on_field(name) in order; InputError naming `what`.
template <typename Text, typename Field>
void walk_template(std::string_view tpl, std::string_view what, Text on_text, Field on_field) {
  std::size_t i = 0;
  while (i < tpl.size()) {
    const char c = tpl[i];
    if (c == '{' && i + 1 < tpl.size() && tpl[i + 1] == '{') {
      on_text("{");
      i += 2;
    } else if (c == '}' && i + 1 < tpl.size() && tpl[i + 1] == '}') {
      on_text("}");
      i += 2;
    } else if (c == '{') {
      const std::size_t close = tpl.find('}', i);
      const std::string_view name = close == std::string_view::npos ? tpl.substr(i) : tpl.substr(i + 1, close - i - 1);
      if (close == std::string_view::npos || (name != "question" && name != "output_type"))
        fail_input("{}: unknown placeholder at byte {} (only {{question}} and {{output_type}}; write {{{{ and }}}} for braces): \"{}\"",
                   what, i, shorten(tpl.substr(i), 40));
      on_field(name);
      i = close + 1;
    } else if (c == '}') {
      fail_input("{}: lone '}}' at byte {} (write }}}} for a brace)", what, i);
    } else {
      const std::size_t next = tpl.find_first_of("{}", i);
      const std::size_t end = next == std::string_view::npos ? tpl.size() : next;
      on_text(tpl.substr(i, end - i));
      i = end;
    }
  }
}

}  // namespace

void check_prompt_template(std::string_view tpl, std::string_view what) {
  if (tpl.size() > kMaxTemplateBytes) fail_input("{}: longer than {} bytes", what, kMaxTemplateBytes);
  if (const auto bad = tok::find_invalid_utf8(tpl); bad != std::string_view::npos)
    fail_input("{}: invalid UTF-8 at byte {}", what, bad);
  int questions = 0;
  walk_template(tpl, what, [](std::string_view) {}, [&](std::string_view name) { questions += name == "question"; });
  if (questions != 1) fail_input("{}: must contain {{question}} exactly once, found {} times", what, questions);
}

bool template_uses_output_type(std::string_view tpl) {
  bool uses = false;
  walk_template(tpl, "prompt template", [](std::string_view) {}, [&](std::string_view name) { uses |= name == "output_type"; });
  return uses;
}

std::string render_prompt(std::string_view tpl, std::string_view question, std::string_view output_type) {
  std::string out;
  walk_template(tpl, "prompt template", [&](std::string_view text) { out += text; },
                [&](std::string_view name) { out += name == "question" ? question : output_type; });
  return out;
}

QuestionSet read_questions(const std::filesystem::path& path, const LoadOptions& options, const std::string& what) {
  const std::string file = path.string();
  const std::string text = read_input_file(path, what, kMaxQuestionFileBytes);

  QuestionSet set;
  std::optional<std::vector<LanguagePlan>> plan;
  std::set<std::string> header_langs;
  std::unordered_map<std::string, std::size_t> first_line_of_id;

  std::size_t line_no = 0;
  std::size_t pos = 0;
  while (pos < text.size()) {
    const std::size_t nl = text.find('\n', pos);
    std::string_view line = std::string_view(text).substr(pos, nl == std::string::npos ? std::string::npos : nl - pos);
    pos = nl == std::string::npos ? text.size() : nl + 1;
    ++line_no;
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    if (blank(line)) continue;

    if (!plan) {
      const Header h = read_header(line, file, line_no);
      set.source = h.source;
      header_langs.insert(h.languages.begin(), h.languages.end());
      plan = plan_languages(h, options, file, what);
      for (const auto& p : *plan) set.languages.push_back(p.code);
      continue;
    }

    std::string id;
    try {
      if (const auto bad = tok::find_invalid_utf8(line); bad != std::string_view::npos) {
        try {
          id = id_for_message(parse_json_input(tok::utf8_lossy(line), file));
        } catch (const InputError&) {
        }
        bad_record(RecordProblem::InvalidUtf8, fmt::format("invalid UTF-8 at byte {} of the line", bad));
      }
      json j;
      try {
        j = parse_json_input(line, line_label(line_no, ""));
      } catch (const InputError& e) {
        const std::string msg = e.what();
        // nlohmann reports escaped lone surrogates (\ud800) as a parse error naming them.
        bad_record(msg.find("surrogate") != std::string::npos ? RecordProblem::InvalidUtf8 : RecordProblem::MalformedJson, msg);
      }
      id = id_for_message(j);
      Question q = read_record(j);
      if (const auto [it, fresh] = first_line_of_id.emplace(q.id, line_no); !fresh)
        bad_record(RecordProblem::DuplicateId, fmt::format("duplicate id, first used on line {}", it->second));
      read_languages(q, j, *plan, header_langs);
      q.line = line_no;
      set.questions.push_back(std::move(q));
    } catch (const RecordError& e) {
      // Messages from parse_json_input already start with "line N"; the others get the label.
      const std::string label = line_label(line_no, id);
      std::string message = e.message.rfind(line_label(line_no, ""), 0) == 0 ? e.message : label + ": " + e.message;
      if (options.strict) fail_input("{}: {}", file, message);
      set.skipped.counts[static_cast<std::size_t>(e.problem)]++;
      if (set.skipped.details.size() < kMaxSkipDetails)
        set.skipped.details.push_back({line_no, id, e.problem, std::move(message)});
    }
  }
  if (!plan) fail_input("{}: empty file (expected the header line {{\"format\": \"{}\", ...}})", file, kFormatName);
  if (set.questions.empty()) fail_input("{}: no usable question ({})", file, set.skipped.summary());
  return set;
}

void skip_questions(QuestionSet& set, const std::vector<LateProblem>& problems, bool strict, const std::string& file) {
  std::vector<char> drop(set.questions.size(), 0);
  for (const LateProblem& p : problems) {
    if (p.question >= set.questions.size() || drop[p.question]) continue;  // one problem per question, the first
    const Question& q = set.questions[p.question];
    std::string message = fmt::format("{}: {}", line_label(q.line, shorten(q.id, 60)), p.message);
    if (strict) fail_input("{}: {}", file, message);
    drop[p.question] = 1;
    set.skipped.counts[static_cast<std::size_t>(p.problem)]++;
    if (set.skipped.details.size() < kMaxSkipDetails)
      set.skipped.details.push_back({q.line, shorten(q.id, 60), p.problem, std::move(message)});
  }
  std::size_t kept = 0;
  for (std::size_t i = 0; i < set.questions.size(); ++i)
    if (!drop[i]) {
      if (kept != i) set.questions[kept] = std::move(set.questions[i]);  // never a self-move: it empties
      ++kept;
    }
  set.questions.resize(kept);
  if (set.questions.empty()) fail_input("{}: no usable question ({})", file, set.skipped.summary());
}

}  // namespace moetrace::localize
