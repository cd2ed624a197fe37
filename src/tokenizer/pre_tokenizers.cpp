#include "tokenizer/pre_tokenizers.h"

#include <nlohmann/json.hpp>

#include "tokenizer/byte_level.h"
#include "tokenizer/regex.h"
#include "tokenizer/utf8.h"
#include "util/error.h"

namespace moetrace::tok {
namespace {

using json = nlohmann::json;
using Ranges = std::vector<std::pair<std::size_t, std::size_t>>;

// The pre-tokenizer regex GPT-2 and GPT-NeoX use inside ByteLevel (use_regex: true).
constexpr const char* kGpt2Pattern =
    R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+)";

enum class Behavior { Removed, Isolated, MergedWithPrevious, MergedWithNext, Contiguous };

// A segment of the string, flagged as delimiter or not.
struct Seg { std::size_t b, e; bool delim; };
using Pieces = std::vector<std::pair<std::size_t, std::size_t>>;

// Segments covering the whole string of `size` bytes, each flagged as delimiter or not.
std::vector<Seg> segments(std::size_t size, const Ranges& matches_in, bool invert) {
  std::vector<Seg> segs;
  std::size_t pos = 0;
  for (auto [b, e] : matches_in) {
    if (b > pos) segs.push_back({pos, b, invert});
    segs.push_back({b, e, !invert});
    pos = e;
  }
  if (pos < size) segs.push_back({pos, size, invert});
  return segs;
}

// The pieces (byte ranges) the segments become under the Hugging Face SplitDelimiterBehavior `behavior`.
Pieces pieces_of(const std::vector<Seg>& segs, Behavior behavior) {
  Pieces pieces;
  switch (behavior) {
    case Behavior::Removed:
      for (const auto& g : segs)
        if (!g.delim) pieces.emplace_back(g.b, g.e);
      break;
    case Behavior::Isolated:
      for (const auto& g : segs) pieces.emplace_back(g.b, g.e);
      break;
    case Behavior::MergedWithPrevious: {
      // A delimiter joins the piece before it unless that piece is itself a delimiter.
      bool prev_delim = false;
      for (const auto& g : segs) {
        if (g.delim && !prev_delim && !pieces.empty())
          pieces.back().second = g.e;
        else
          pieces.emplace_back(g.b, g.e);
        prev_delim = g.delim;
      }
      break;
    }
    case Behavior::MergedWithNext: {
      // A delimiter joins the piece after it unless that piece is itself a delimiter.
      Pieces rev;
      bool next_delim = false;
      for (auto it = segs.rbegin(); it != segs.rend(); ++it) {
        if (it->delim && !next_delim && !rev.empty())
          rev.back().first = it->b;
        else
          rev.emplace_back(it->b, it->e);
        next_delim = it->delim;
      }
      pieces.assign(rev.rbegin(), rev.rend());
      break;
    }
    case Behavior::Contiguous: {
      bool last_delim = false;
      for (const auto& g : segs) {
        if (g.delim && last_delim && !pieces.empty())
          pieces.back().second = g.e;
        else
          pieces.emplace_back(g.b, g.e);
        last_delim = g.delim;
      }
      break;
    }
  }
  return pieces;
}

// Splits `s` at the delimiter matches, following the Hugging Face SplitDelimiterBehavior semantics.
void split_by_matches(const NormalizedString& s, const Ranges& matches_in, bool invert, Behavior behavior,
                      std::vector<NormalizedString>& out) {
  for (auto [b, e] : pieces_of(segments(s.size(), matches_in, invert), behavior))
    if (e > b) out.push_back(s.slice(b, e));
}

class SplitPreTokenizer : public PreTokenizer {
 public:
  SplitPreTokenizer(std::string literal, std::unique_ptr<Regex> re, Behavior behavior, bool invert)
      : literal_(std::move(literal)), re_(std::move(re)), behavior_(behavior), invert_(invert) {}
  void pre_tokenize(std::vector<NormalizedString>& pieces, bool) const override {
    std::vector<NormalizedString> out;
    out.reserve(pieces.size() * 4);
    for (const auto& p : pieces) {
      Ranges m;
      if (re_) {
        m = re_->find_all(p.text);
      } else if (!literal_.empty()) {
        for (std::size_t q = p.text.find(literal_); q != std::string::npos; q = p.text.find(literal_, q + literal_.size()))
          m.emplace_back(q, q + literal_.size());
      }
      split_by_matches(p, m, invert_, behavior_, out);
    }
    pieces = std::move(out);
  }

 private:
  std::string literal_;
  std::unique_ptr<Regex> re_;
  Behavior behavior_;
  bool invert_;
};

class ByteLevelPreTokenizer : public PreTokenizer {
 public:
  ByteLevelPreTokenizer(bool add_prefix_space, bool use_regex, const std::string& where)
      : add_prefix_space_(add_prefix_space) {
    if (use_regex) re_ = std::make_unique<Regex>(kGpt2Pattern, where + ": ByteLevel pre_tokenizer");
  }
  void pre_tokenize(std::vector<NormalizedString>& pieces, bool) const override {
    std::vector<NormalizedString> out;
    out.reserve(pieces.size());
    for (auto& p : pieces) {
      if (add_prefix_space_ && !p.empty() && p.text[0] != ' ') {
        NormalizedString q;
        q.append(" ", p.start[0], p.start[0]);
        q.append_from(p, 0, p.size());
        p = std::move(q);
      }
      if (re_) {
        std::vector<NormalizedString> split;
        split_by_matches(p, re_->find_all(p.text), false, Behavior::Isolated, split);
        for (auto& s : split) out.push_back(byte_level_encode(s));
      } else {
        out.push_back(byte_level_encode(p));
      }
    }
    pieces = std::move(out);
  }

 private:
  bool add_prefix_space_;
  std::unique_ptr<Regex> re_;
};

class RegexKeepPreTokenizer : public PreTokenizer {
 public:
  // Keeps only the matches of `pattern` (Whitespace: \w+|[^\w\s]+, WhitespaceSplit: \S+).
  RegexKeepPreTokenizer(const char* pattern, const std::string& where) : re_(pattern, where) {}
  void pre_tokenize(std::vector<NormalizedString>& pieces, bool) const override {
    std::vector<NormalizedString> out;
    for (const auto& p : pieces)
      for (auto [b, e] : re_.find_all(p.text)) out.push_back(p.slice(b, e));
    pieces = std::move(out);
  }

 private:
  Regex re_;
};

class MetaspacePreTokenizer : public PreTokenizer {
 public:
  enum class Prepend { Always, First, Never };
  MetaspacePreTokenizer(std::string replacement, Prepend prepend, bool split)
      : replacement_(std::move(replacement)), prepend_(prepend), split_(split) {}
  void pre_tokenize(std::vector<NormalizedString>& pieces, bool first_section) const override {
    std::vector<NormalizedString> out;
    for (const auto& p : pieces) {
      NormalizedString q;
      const bool add = prepend_ == Prepend::Always || (prepend_ == Prepend::First && first_section);
      if (add && !p.empty() && p.text.compare(0, replacement_.size(), replacement_) != 0)
        q.append(replacement_, p.start[0], p.start[0]);
      for (std::size_t i = 0; i < p.size(); ++i) {
        if (p.text[i] == ' ')
          q.append(replacement_, p.start[i], p.end[i]);
        else
          q.append_from(p, i, i + 1);
      }
      if (!split_) {
        if (!q.empty()) out.push_back(std::move(q));
        continue;
      }
      Ranges m;
      for (std::size_t k = q.text.find(replacement_); k != std::string::npos; k = q.text.find(replacement_, k + replacement_.size()))
        m.emplace_back(k, k + replacement_.size());
      split_by_matches(q, m, false, Behavior::MergedWithNext, out);
    }
    pieces = std::move(out);
  }

 private:
  std::string replacement_;
  Prepend prepend_;
  bool split_;
};

class SequencePreTokenizer : public PreTokenizer {
 public:
  explicit SequencePreTokenizer(std::vector<std::unique_ptr<PreTokenizer>> parts) : parts_(std::move(parts)) {}
  void pre_tokenize(std::vector<NormalizedString>& pieces, bool first) const override {
    for (const auto& p : parts_) p->pre_tokenize(pieces, first);
  }

 private:
  std::vector<std::unique_ptr<PreTokenizer>> parts_;
};

Behavior parse_behavior(const json& j, const std::string& where) {
  const std::string b = j.value("behavior", std::string("Isolated"));
  if (b == "Removed") return Behavior::Removed;
  if (b == "Isolated") return Behavior::Isolated;
  if (b == "MergedWithPrevious") return Behavior::MergedWithPrevious;
  if (b == "MergedWithNext") return Behavior::MergedWithNext;
  if (b == "Contiguous") return Behavior::Contiguous;
  fail_input("{}: Split pre_tokenizer has unknown behavior \"{}\"", where, b);
}

}  // namespace

std::unique_ptr<PreTokenizer> make_pre_tokenizer(const json& j, const std::string& where) {
  if (j.is_null()) return nullptr;
  if (!j.is_object() || !j.contains("type") || !j["type"].is_string())
    fail_input("{}: \"pre_tokenizer\" must be null or an object with a \"type\"", where);
  const std::string type = j["type"].get<std::string>();
  if (type == "Split") {
    const json& pat = j.value("pattern", json());
    const Behavior behavior = parse_behavior(j, where);
    const bool invert = j.value("invert", false);
    if (pat.is_object() && pat.contains("String") && pat["String"].is_string())
      return std::make_unique<SplitPreTokenizer>(pat["String"].get<std::string>(), nullptr, behavior, invert);
    if (pat.is_object() && pat.contains("Regex") && pat["Regex"].is_string())
      return std::make_unique<SplitPreTokenizer>(
          "", std::make_unique<Regex>(pat["Regex"].get<std::string>(), where + ": Split pre_tokenizer"), behavior,
          invert);
    fail_input("{}: Split pre_tokenizer needs \"pattern\": {{\"String\": ...}} or {{\"Regex\": ...}}", where);
  }
  if (type == "ByteLevel")
    return std::make_unique<ByteLevelPreTokenizer>(j.value("add_prefix_space", true), j.value("use_regex", true), where);
  if (type == "Whitespace")
    return std::make_unique<RegexKeepPreTokenizer>(R"(\w+|[^\w\s]+)", where + ": Whitespace pre_tokenizer");
  if (type == "WhitespaceSplit")
    return std::make_unique<RegexKeepPreTokenizer>(R"(\S+)", where + ": WhitespaceSplit pre_tokenizer");
  if (type == "Metaspace") {
    const std::string replacement = j.value("replacement", std::string("\xE2\x96\x81"));
    MetaspacePreTokenizer::Prepend prepend = MetaspacePreTokenizer::Prepend::Always;
    if (j.contains("prepend_scheme") && j["prepend_scheme"].is_string()) {
      const std::string s = j["prepend_scheme"].get<std::string>();
      if (s == "always") prepend = MetaspacePreTokenizer::Prepend::Always;
      else if (s == "first") prepend = MetaspacePreTokenizer::Prepend::First;
      else if (s == "never") prepend = MetaspacePreTokenizer::Prepend::Never;
      else fail_input("{}: Metaspace pre_tokenizer has unknown prepend_scheme \"{}\"", where, s);
    } else if (j.contains("add_prefix_space") && j["add_prefix_space"].is_boolean() && !j["add_prefix_space"].get<bool>()) {
      prepend = MetaspacePreTokenizer::Prepend::Never;
    }
    return std::make_unique<MetaspacePreTokenizer>(replacement, prepend, j.value("split", true));
  }
  if (type == "Sequence") {
    if (!j.contains("pretokenizers") || !j["pretokenizers"].is_array())
      fail_input("{}: Sequence pre_tokenizer needs a \"pretokenizers\" array", where);
    std::vector<std::unique_ptr<PreTokenizer>> parts;
    for (const auto& p : j["pretokenizers"]) {
      auto t = make_pre_tokenizer(p, where);
      if (t) parts.push_back(std::move(t));
    }
    return std::make_unique<SequencePreTokenizer>(std::move(parts));
  }
  fail_input("{}: unsupported tokenizer feature: pre_tokenizer type \"{}\" (supported: Split, ByteLevel, Whitespace, "
             "WhitespaceSplit, Metaspace, Sequence)",
             where, type);
}

}  // namespace moetrace::tok
