#include "tokenizer/tokenizer.h"

#include <algorithm>

#include "tokenizer/tokenizer_json.h"
#include "tokenizer/utf8.h"
#include "util/error.h"
#include "util/input_file.h"
#include "util/json_input.h"

namespace moetrace {

struct Tokenizer::Impl {
  tok::Components c;
  std::string source;
  std::size_t vocab_size = 0;
};

namespace {

std::shared_ptr<Tokenizer::Impl> make_impl(std::string_view tokenizer_json, const nlohmann::json& config,
                                           const std::string& where) {
  tok::TokenizerFile tj = tok::parse_tokenizer_json(tokenizer_json, where);
  auto impl = std::make_shared<Tokenizer::Impl>();
  try {
    impl->c = tok::build_components(tj, config, where);
  } catch (const nlohmann::json::exception& e) {
    fail_input("{}: unreadable value: {}", where, e.what());
  }
  impl->source = where;
  impl->vocab_size = impl->c.model->vocab_size();
  for (const auto& t : impl->c.added.tokens())
    impl->vocab_size = std::max(impl->vocab_size, static_cast<std::size_t>(t.id) + 1);
  return impl;
}

// transformers' clean_up_tokenization.
std::string clean_up_spaces(std::string s) {
  static const std::pair<const char*, const char*> kRules[] = {
      {" .", "."}, {" ?", "?"}, {" !", "!"}, {" ,", ","}, {" ' ", "'"},
      {" n't", "n't"}, {" 'm", "'m"}, {" 's", "'s"}, {" 've", "'ve"}, {" 're", "'re"}};
  for (auto [from, to] : kRules) {
    const std::string f(from), t(to);
    std::string out;
    std::size_t pos = 0;
    for (std::size_t p = s.find(f); p != std::string::npos; p = s.find(f, pos)) {
      out.append(s, pos, p - pos);
      out += t;
      pos = p + f.size();
    }
    out.append(s, pos, std::string::npos);
    s = std::move(out);
  }
  return s;
}

}  // namespace

Tokenizer Tokenizer::from_path(const std::filesystem::path& path) {
  std::filesystem::path file = path;
  switch (input_path_kind(path, "tokenizer")) {
    case PathKind::Directory:
      file = path / "tokenizer.json";
      if (input_path_kind(file, "tokenizer") == PathKind::Missing)
        fail_input("no tokenizer.json in folder {} (moetrace reads Hugging Face tokenizer.json files only)",
                   path.string());
      break;
    case PathKind::Missing: fail_input("tokenizer {} does not exist", path.string());
    default: break;  // a regular file, or something read_regular_file names
  }
  const std::string text = read_regular_file(file, "tokenizer", kMaxTokenizerJsonBytes);
  nlohmann::json config;
  const auto config_file = file.parent_path() / "tokenizer_config.json";
  if (input_path_kind(config_file, "tokenizer config") != PathKind::Missing) config = tok::read_json_file(config_file);
  Tokenizer t;
  t.impl_ = make_impl(text, config, file.string());
  return t;
}

Tokenizer Tokenizer::from_json_text(const std::string& tokenizer_json, const std::string& tokenizer_config,
                                    const std::string& where) {
  nlohmann::json config;
  if (!tokenizer_config.empty()) config = parse_json_input(tokenizer_config, "tokenizer_config for " + where);
  Tokenizer t;
  t.impl_ = make_impl(tokenizer_json, config, where);
  return t;
}

Encoding Tokenizer::encode(std::string_view text, bool add_special_tokens) const {
  const tok::Components& c = impl_->c;
  if (const auto bad = tok::find_invalid_utf8(text); bad != std::string_view::npos)
    fail_input("text to tokenize is not valid UTF-8 (byte {} of {})", bad, text.size());
  Encoding enc;
  enc.ids.reserve(text.size() / 3 + 4);
  std::vector<tok::NormalizedString> pieces;
  std::vector<tok::ModelToken> mt;
  for (const tok::Section& s : c.added.split(text)) {
    if (s.added_id >= 0) {
      enc.ids.push_back(s.added_id);
      enc.tokens.push_back(c.added.by_id(s.added_id)->content);
      enc.offsets.emplace_back(s.begin, s.end);
      enc.special.push_back(0);
      continue;
    }
    auto ns = tok::NormalizedString::from_original(text.substr(s.begin, s.end - s.begin), s.begin);
    if (c.normalizer) c.normalizer->normalize(ns);
    if (ns.empty()) continue;
    pieces.clear();
    pieces.push_back(std::move(ns));
    if (c.pre_tokenizer) c.pre_tokenizer->pre_tokenize(pieces, s.begin == 0);
    for (const auto& p : pieces) {
      mt.clear();
      c.model->tokenize(p.text, mt);
      for (const auto& m : mt) {
        enc.ids.push_back(m.id);
        const std::string* t = c.model->id_to_token(m.id);
        enc.tokens.push_back(t ? *t : std::string());
        enc.offsets.emplace_back(p.start[m.begin], p.end[m.end - 1]);
        enc.special.push_back(0);
      }
    }
  }
  if (c.post_processor) c.post_processor->process(enc, add_special_tokens);
  return enc;
}

std::string Tokenizer::decode(const std::vector<std::int32_t>& ids, bool skip_special_tokens) const {
  const tok::Components& c = impl_->c;
  std::vector<std::string> tokens;
  tokens.reserve(ids.size());
  for (std::int32_t id : ids) {
    if (const auto* a = c.added.by_id(id)) {
      if (skip_special_tokens && a->special) continue;
      tokens.push_back(a->content);
    } else if (const std::string* t = c.model->id_to_token(id)) {
      tokens.push_back(*t);
    } else {
      fail_input("token id {} is not in the vocabulary of {} ({} ids)", id, impl_->source, impl_->vocab_size);
    }
  }
  std::string out;
  if (c.decoder) {
    c.decoder->decode_chain(tokens);
    for (const auto& t : tokens) out += t;
  } else {
    for (std::size_t i = 0; i < tokens.size(); ++i) {
      if (i) out += ' ';
      out += tokens[i];
    }
  }
  if (c.clean_up_tokenization_spaces) out = clean_up_spaces(std::move(out));
  return out;
}

std::optional<std::int32_t> Tokenizer::token_to_id(std::string_view token) const {
  if (auto id = impl_->c.added.find(token)) return id;
  return impl_->c.model->token_to_id(token);
}

std::optional<std::string> Tokenizer::id_to_token(std::int32_t id) const {
  if (const auto* a = impl_->c.added.by_id(id)) return a->content;
  if (const std::string* t = impl_->c.model->id_to_token(id)) return *t;
  return std::nullopt;
}

std::size_t Tokenizer::vocab_size() const { return impl_->vocab_size; }

std::optional<std::int32_t> Tokenizer::unk_id() const { return impl_->c.model->unk_id(); }
const std::string& Tokenizer::model_type() const { return impl_->c.model_type; }
const std::string& Tokenizer::source() const { return impl_->source; }

}  // namespace moetrace
