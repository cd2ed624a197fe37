#include "tokenizer/normalizers.h"

#include <cstdlib>

#include <nlohmann/json.hpp>
#include <utf8proc.h>

#include "tokenizer/regex.h"
#include "tokenizer/utf8.h"
#include "util/error.h"

namespace moetrace::tok {

std::string Normalizer::normalize_text(std::string_view s) const {
  auto n = NormalizedString::from_original(s, 0);
  normalize(n);
  return n.text;
}

namespace {

using json = nlohmann::json;

std::string utf8proc_normalize(std::string_view s, int options) {
  utf8proc_uint8_t* out = nullptr;
  const auto len = utf8proc_map(reinterpret_cast<const utf8proc_uint8_t*>(s.data()),
                                static_cast<utf8proc_ssize_t>(s.size()), &out,
                                static_cast<utf8proc_option_t>(options));
  if (len < 0) throw InputError(std::string("Unicode normalisation failed: ") + utf8proc_errmsg(len));
  std::string r(reinterpret_cast<const char*>(out), static_cast<std::size_t>(len));
  std::free(out);
  return r;
}

// NFC / NFD / NFKC / NFKD. The text is cut into chunks that normalise independently (a starter and
// the non-starters after it, merged with the previous chunk when normalising them together
// differs); an unchanged chunk keeps its per-character alignment, a changed one maps every output
// byte to the chunk's original range.
class UnicodeNormalizer : public Normalizer {
 public:
  UnicodeNormalizer(int options) : options_(options | UTF8PROC_STABLE) {}
  void normalize(NormalizedString& s) const override {
    bool ascii = true;
    for (unsigned char c : s.text)
      if (c >= 0x80) {
        ascii = false;
        break;
      }
    if (ascii) return;
    const std::string whole = utf8proc_normalize(s.text, options_);
    if (whole == s.text) return;

    // Chunk boundaries: before every starter (combining class 0).
    std::vector<std::size_t> cuts;
    std::size_t i = 0;
    while (i < s.text.size()) {
      const std::size_t at = i;
      const char32_t cp = next_code_point(s.text, i);
      const auto* prop = utf8proc_get_property(static_cast<utf8proc_int32_t>(cp));
      if (at == 0 || prop->combining_class == 0) cuts.push_back(at);
    }
    cuts.push_back(s.text.size());
    // Merge neighbours that interact (e.g. Hangul jamo, composing starters).
    std::vector<std::size_t> merged{0};
    std::string prev_norm;
    for (std::size_t k = 0; k + 1 < cuts.size(); ++k) {
      const std::size_t b = merged.back(), e = cuts[k + 1];
      if (k == 0) {
        merged.push_back(e);
        continue;
      }
      const std::size_t pb = merged[merged.size() - 2];
      const std::string_view prev(s.text.data() + pb, b - pb), cur(s.text.data() + b, e - b);
      const std::string together = utf8proc_normalize(std::string(prev) + std::string(cur), options_);
      if (together == utf8proc_normalize(prev, options_) + utf8proc_normalize(cur, options_))
        merged.push_back(e);
      else
        merged.back() = e;
    }
    NormalizedString out;
    out.text.reserve(whole.size());
    for (std::size_t k = 0; k + 1 < merged.size(); ++k) {
      const std::size_t b = merged[k], e = merged[k + 1];
      const std::string_view chunk(s.text.data() + b, e - b);
      const std::string norm = utf8proc_normalize(chunk, options_);
      if (norm == chunk)
        out.append_from(s, b, e);
      else
        out.append(norm, s.start[b], s.end[e - 1]);
    }
    if (out.text != whole) {
      // Chunking did not reproduce the whole-string result: keep the exact text, coarse alignment.
      NormalizedString coarse;
      coarse.append(whole, s.start.front(), s.end.back());
      s = std::move(coarse);
      return;
    }
    s = std::move(out);
  }

 private:
  int options_;
};

class PrependNormalizer : public Normalizer {
 public:
  explicit PrependNormalizer(std::string p) : prepend_(std::move(p)) {}
  void normalize(NormalizedString& s) const override {
    if (s.empty()) return;
    NormalizedString out;
    out.text.reserve(s.size() + prepend_.size());
    std::size_t first = 0;
    next_code_point(s.text, first);
    out.append(prepend_, s.start[0], s.end[first - 1]);
    out.append_from(s, 0, s.size());
    s = std::move(out);
  }

 private:
  std::string prepend_;
};

class ReplaceNormalizer : public Normalizer {
 public:
  ReplaceNormalizer(std::string literal, std::unique_ptr<Regex> re, std::string content)
      : literal_(std::move(literal)), re_(std::move(re)), content_(std::move(content)) {}
  void normalize(NormalizedString& s) const override {
    std::vector<std::pair<std::size_t, std::size_t>> matches;
    if (re_) {
      matches = re_->find_all(s.text);
    } else if (!literal_.empty()) {
      for (std::size_t p = s.text.find(literal_); p != std::string::npos; p = s.text.find(literal_, p + literal_.size()))
        matches.emplace_back(p, p + literal_.size());
    }
    if (matches.empty()) return;
    NormalizedString out;
    out.text.reserve(s.size());
    std::size_t pos = 0;
    for (auto [b, e] : matches) {
      out.append_from(s, pos, b);
      if (!content_.empty()) out.append(content_, s.start[b], s.end[e - 1]);
      pos = e;
    }
    out.append_from(s, pos, s.size());
    s = std::move(out);
  }

 private:
  std::string literal_;
  std::unique_ptr<Regex> re_;
  std::string content_;
};

class StripNormalizer : public Normalizer {
 public:
  StripNormalizer(bool left, bool right) : left_(left), right_(right) {}
  void normalize(NormalizedString& s) const override {
    std::size_t b = 0, e = s.size();
    if (left_) {
      while (b < e) {
        std::size_t i = b;
        if (!is_unicode_whitespace(next_code_point(s.text, i))) break;
        b = i;
      }
    }
    if (right_) {
      while (e > b) {
        std::size_t p = e - 1;
        while (p > b && (static_cast<unsigned char>(s.text[p]) & 0xC0) == 0x80) --p;
        std::size_t i = p;
        if (!is_unicode_whitespace(next_code_point(s.text, i))) break;
        e = p;
      }
    }
    if (b != 0 || e != s.size()) s = s.slice(b, e);
  }

 private:
  bool left_, right_;
};

class SequenceNormalizer : public Normalizer {
 public:
  explicit SequenceNormalizer(std::vector<std::unique_ptr<Normalizer>> parts) : parts_(std::move(parts)) {}
  void normalize(NormalizedString& s) const override {
    for (const auto& p : parts_) p->normalize(s);
  }

 private:
  std::vector<std::unique_ptr<Normalizer>> parts_;
};

std::string get_string(const json& j, const char* key, const std::string& where) {
  if (!j.contains(key) || !j[key].is_string())
    fail_input("{}: normalizer {} needs a string \"{}\"", where, j.value("type", std::string("?")), key);
  return j[key].get<std::string>();
}

}  // namespace

std::unique_ptr<Normalizer> make_normalizer(const json& j, const std::string& where) {
  if (j.is_null()) return nullptr;
  if (!j.is_object() || !j.contains("type") || !j["type"].is_string())
    fail_input("{}: \"normalizer\" must be null or an object with a \"type\"", where);
  const std::string type = j["type"].get<std::string>();
  if (type == "NFC") return std::make_unique<UnicodeNormalizer>(UTF8PROC_COMPOSE);
  if (type == "NFD") return std::make_unique<UnicodeNormalizer>(UTF8PROC_DECOMPOSE);
  if (type == "NFKC") return std::make_unique<UnicodeNormalizer>(UTF8PROC_COMPOSE | UTF8PROC_COMPAT);
  if (type == "NFKD") return std::make_unique<UnicodeNormalizer>(UTF8PROC_DECOMPOSE | UTF8PROC_COMPAT);
  if (type == "Prepend") return std::make_unique<PrependNormalizer>(get_string(j, "prepend", where));
  if (type == "Strip") return std::make_unique<StripNormalizer>(j.value("strip_left", true), j.value("strip_right", true));
  if (type == "Replace") {
    const json& pat = j.value("pattern", json());
    std::string content = get_string(j, "content", where);
    if (pat.is_object() && pat.contains("String") && pat["String"].is_string())
      return std::make_unique<ReplaceNormalizer>(pat["String"].get<std::string>(), nullptr, std::move(content));
    if (pat.is_object() && pat.contains("Regex") && pat["Regex"].is_string())
      return std::make_unique<ReplaceNormalizer>(
          "", std::make_unique<Regex>(pat["Regex"].get<std::string>(), where + ": Replace normalizer"), std::move(content));
    fail_input("{}: Replace normalizer needs \"pattern\": {{\"String\": ...}} or {{\"Regex\": ...}}", where);
  }
  if (type == "Sequence") {
    if (!j.contains("normalizers") || !j["normalizers"].is_array())
      fail_input("{}: Sequence normalizer needs a \"normalizers\" array", where);
    std::vector<std::unique_ptr<Normalizer>> parts;
    for (const auto& p : j["normalizers"]) {
      auto n = make_normalizer(p, where);
      if (n) parts.push_back(std::move(n));
    }
    return std::make_unique<SequenceNormalizer>(std::move(parts));
  }
  fail_input("{}: unsupported tokenizer feature: normalizer type \"{}\" (supported: NFC, NFD, NFKC, NFKD, Prepend, "
             "Replace, Strip, Sequence)",
             where, type);
}

}  // namespace moetrace::tok
