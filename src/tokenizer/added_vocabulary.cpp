#include "tokenizer/added_vocabulary.h"

#include <algorithm>

#include "tokenizer/utf8.h"

namespace moetrace::tok {

void AddedVocabulary::add(const AddedToken& t) {
  if (t.content.empty()) return;
  auto it = by_content_.find(t.content);
  if (it != by_content_.end()) {
    tokens_[it->second] = t;
    by_id_[t.id] = it->second;
    return;
  }
  const std::size_t idx = tokens_.size();
  tokens_.push_back(t);
  by_content_.emplace(t.content, idx);
  by_id_[t.id] = idx;
  auto& bucket = by_first_byte_[static_cast<unsigned char>(t.content[0])];
  bucket.push_back(idx);
  std::stable_sort(bucket.begin(), bucket.end(),
                   [&](std::size_t a, std::size_t b) { return tokens_[a].content.size() > tokens_[b].content.size(); });
}

std::optional<std::int32_t> AddedVocabulary::find(std::string_view content) const {
  auto it = by_content_.find(content);
  if (it == by_content_.end()) return std::nullopt;
  return tokens_[it->second].id;
}

const AddedToken* AddedVocabulary::by_id(std::int32_t id) const {
  auto it = by_id_.find(id);
  return it == by_id_.end() ? nullptr : &tokens_[it->second];
}

namespace {
// Code point that ends just before byte offset `pos` (pos > 0).
char32_t cp_before(std::string_view s, std::size_t pos, std::size_t& start) {
  std::size_t p = pos - 1;
  while (p > 0 && (static_cast<unsigned char>(s[p]) & 0xC0) == 0x80) --p;
  start = p;
  std::size_t i = p;
  return next_code_point(s, i);
}
}  // namespace

std::vector<Section> AddedVocabulary::split(std::string_view text) const {
  std::vector<Section> out;
  if (tokens_.empty()) {
    if (!text.empty()) out.push_back({0, static_cast<std::uint32_t>(text.size()), -1});
    return out;
  }
  std::size_t text_start = 0;  // start of the pending ordinary-text section
  std::size_t i = 0;
  while (i < text.size()) {
    const auto& bucket = by_first_byte_[static_cast<unsigned char>(text[i])];
    const AddedToken* hit = nullptr;
    for (std::size_t idx : bucket) {
      const AddedToken& t = tokens_[idx];
      if (text.compare(i, t.content.size(), t.content) != 0) continue;
      if (t.single_word) {
        std::size_t tmp;
        if (i > 0 && is_word_char(cp_before(text, i, tmp))) continue;
        std::size_t j = i + t.content.size();
        if (j < text.size() && is_word_char(next_code_point(text, j))) continue;
      }
      hit = &t;
      break;
    }
    if (!hit) {
      ++i;
      continue;
    }
    std::size_t b = i, e = i + hit->content.size();
    if (hit->lstrip) {
      while (b > text_start) {
        std::size_t ps;
        if (!is_unicode_whitespace(cp_before(text, b, ps))) break;
        b = ps;
      }
    }
    if (hit->rstrip) {
      while (e < text.size()) {
        std::size_t j = e;
        if (!is_unicode_whitespace(next_code_point(text, j))) break;
        e = j;
      }
    }
    if (b > text_start)
      out.push_back({static_cast<std::uint32_t>(text_start), static_cast<std::uint32_t>(b), -1});
    out.push_back({static_cast<std::uint32_t>(b), static_cast<std::uint32_t>(e), hit->id});
    text_start = i = e;
  }
  if (text_start < text.size())
    out.push_back({static_cast<std::uint32_t>(text_start), static_cast<std::uint32_t>(text.size()), -1});
  return out;
}

}  // namespace moetrace::tok
