#include "protocols/localize_inputs.h"

#include <fmt/format.h>

#include "localize/localize_ask.h"
#include "util/error.h"
#include "util/logging.h"

namespace moetrace {

localize::QuestionSet read_localize_questions(const LocalizeConfig& c, const std::filesystem::path& path, const char* key) {
  localize::LoadOptions load;
  load.languages = c.languages;
  load.strict = c.strict;
  load.templates.default_template = c.default_template;
  load.templates.per_language = c.templates;
  return localize::read_questions(path, load, fmt::format("{}: [data] {} = {}", c.source_path.string(), key, path.string()));
}

void screen_localize_questions(const LocalizeConfig& c, const ModelConfig& mc, const Tokenizer& tokenizer,
                               localize::QuestionSet& qs, const std::filesystem::path& path) {
  const localize::PromptLimits limits{c.max_new_tokens, mc.max_position_embeddings, c.add_special_tokens, c.answer_prefix};
  const std::size_t before = qs.skipped.total();
  const std::vector<localize::LateProblem> problems = localize::screen_prompts(tokenizer, qs, limits);
  if (!c.strict && problems.size() == qs.questions.size())  // one per question: none left, the config is the likelier cause
    fail_input("{}: no question this model can ask (the first, line {}: {}); see {}: [ask] max_new_tokens = {}, [templates] "
               "and the model's {} positions", path.string(), qs.questions[problems[0].question].line, problems[0].message,
               c.source_path.string(), c.max_new_tokens, mc.max_position_embeddings);
  localize::skip_questions(qs, problems, c.strict, path.string());
  if (qs.skipped.total() > before)
    spdlog::warn("{}: {} more question(s) skipped, which the model cannot ask ({})", path.string(), qs.skipped.total() - before,
                 qs.skipped.summary());
}

localize::LocalizeOptions localize_options(const LocalizeConfig& c, const ModelConfig& mc) {
  localize::LocalizeOptions o;
  o.ask.max_new_tokens = c.max_new_tokens;
  o.ask.prompts_per_call = static_cast<std::size_t>(c.prompts_per_call);
  o.ask.eos_ids = effective_eos_ids(c, mc.eos_token_ids);  // the model's own ids unless [model] eos_ids
  o.ask.add_special_tokens = c.add_special_tokens;
  o.ask.answer_prefix = c.answer_prefix;
  o.ask.match = c.match;
  o.ask.bucket = c.bucket;
  o.ask.logprob_threshold = c.logprob_threshold;
  o.statistic = c.statistic;
  o.contrast.method = c.method;
  o.contrast.direction = c.direction;
  o.contrast.sign_flips = c.sign_flips;
  o.contrast.top_n = static_cast<std::size_t>(c.top_n);
  o.contrast.seed = c.seed;
  o.seed = c.seed;
  o.selection = c.selection;
  o.control_draws = static_cast<std::uint32_t>(c.control_draws);
  o.bootstrap_resamples = c.bootstrap;
  o.bootstrap_unit = c.bootstrap_unit;
  for (int n : c.curve_n) o.curve_n.push_back(static_cast<std::size_t>(n));
  return o;
}

}  // namespace moetrace
