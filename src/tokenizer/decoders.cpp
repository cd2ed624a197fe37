#include "tokenizer/decoders.h"

#include <nlohmann/json.hpp>

#include "tokenizer/byte_level.h"
#include "tokenizer/regex.h"
#include "tokenizer/utf8.h"
#include "util/error.h"
#include "util/json_input.h"

namespace moetrace::tok {
namespace {

using json = nlohmann::json;

// Byte-level tokens back to bytes; a token with characters outside the byte table (an added token
// such as "<|im_end|>" written in plain text) contributes its own UTF-8 bytes. The concatenated
// bytes are decoded as UTF-8 with U+FFFD for invalid sequences.
class ByteLevelDecoder : public Decoder {
 public:
  void decode_chain(std::vector<std::string>& tokens) const override {
    std::string bytes;
    for (const auto& t : tokens)
      if (!byte_level_decode(t, bytes)) bytes += t;
    tokens.assign(1, utf8_lossy(bytes));
  }
};

class ReplaceDecoder : public Decoder {
 public:
  ReplaceDecoder(std::string literal, std::unique_ptr<Regex> re, std::string content)
      : literal_(std::move(literal)), re_(std::move(re)), content_(std::move(content)) {}
  void decode_chain(std::vector<std::string>& tokens) const override {
    for (auto& t : tokens) {
      std::string out;
      std::size_t pos = 0;
      if (re_) {
        for (auto [b, e] : re_->find_all(t)) {
          out.append(t, pos, b - pos);
          out += content_;
          pos = e;
        }
      } else if (!literal_.empty()) {
        for (std::size_t p = t.find(literal_); p != std::string::npos; p = t.find(literal_, pos)) {
          out.append(t, pos, p - pos);
          out += content_;
          pos = p + literal_.size();
        }
      }
      out.append(t, pos, std::string::npos);
      t = std::move(out);
    }
  }

 private:
  std::string literal_;
  std::unique_ptr<Regex> re_;
  std::string content_;
};

// Runs of <0xXX> tokens become the UTF-8 text they spell; when the bytes are not valid UTF-8 each
// byte becomes U+FFFD (Hugging Face tokenizers' convention).
class ByteFallbackDecoder : public Decoder {
 public:
  void decode_chain(std::vector<std::string>& tokens) const override {
    std::vector<std::string> out;
    std::string run;
    std::size_t run_len = 0;
    auto flush = [&] {
      if (run_len == 0) return;
      if (find_invalid_utf8(run) == std::string::npos) {
        out.push_back(run);
      } else {
        for (std::size_t k = 0; k < run_len; ++k) out.emplace_back("\xEF\xBF\xBD");
      }
      run.clear();
      run_len = 0;
    };
    for (auto& t : tokens) {
      int byte = -1;
      if (t.size() == 6 && t.compare(0, 3, "<0x") == 0 && t[5] == '>') {
        auto hex = [](char c) {
          return c >= '0' && c <= '9' ? c - '0' : c >= 'A' && c <= 'F' ? c - 'A' + 10 : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
        };
        const int hi = hex(t[3]), lo = hex(t[4]);
        if (hi >= 0 && lo >= 0) byte = hi * 16 + lo;
      }
      if (byte >= 0) {
        run.push_back(static_cast<char>(byte));
        ++run_len;
      } else {
        flush();
        out.push_back(std::move(t));
      }
    }
    flush();
    tokens = std::move(out);
  }
};

class FuseDecoder : public Decoder {
 public:
  void decode_chain(std::vector<std::string>& tokens) const override {
    std::string all;
    for (const auto& t : tokens) all += t;
    tokens.assign(1, std::move(all));
  }
};

// Removes up to `start` leading and `stop` trailing copies of one character from every token.
class StripDecoder : public Decoder {
 public:
  StripDecoder(std::string content, std::size_t start, std::size_t stop)
      : content_(std::move(content)), start_(start), stop_(stop) {}
  void decode_chain(std::vector<std::string>& tokens) const override {
    for (auto& t : tokens) {
      std::size_t b = 0, e = t.size();
      for (std::size_t k = 0; k < start_ && b < e && t.compare(b, content_.size(), content_) == 0; ++k) b += content_.size();
      for (std::size_t k = 0; k < stop_ && e >= b + content_.size() &&
                              t.compare(e - content_.size(), content_.size(), content_) == 0;
           ++k)
        e -= content_.size();
      t = t.substr(b, e - b);
    }
  }

 private:
  std::string content_;
  std::size_t start_, stop_;
};

class MetaspaceDecoder : public Decoder {
 public:
  MetaspaceDecoder(std::string replacement, bool strip_first) : replacement_(std::move(replacement)), strip_first_(strip_first) {}
  void decode_chain(std::vector<std::string>& tokens) const override {
    for (std::size_t i = 0; i < tokens.size(); ++i) {
      std::string out;
      const std::string& t = tokens[i];
      std::size_t pos = 0;
      for (std::size_t p = t.find(replacement_); p != std::string::npos; p = t.find(replacement_, pos)) {
        out.append(t, pos, p - pos);
        out += ' ';
        pos = p + replacement_.size();
      }
      out.append(t, pos, std::string::npos);
      if (i == 0 && strip_first_ && !out.empty() && out[0] == ' ') out.erase(0, 1);
      tokens[i] = std::move(out);
    }
  }

 private:
  std::string replacement_;
  bool strip_first_;
};

class SequenceDecoder : public Decoder {
 public:
  explicit SequenceDecoder(std::vector<std::unique_ptr<Decoder>> parts) : parts_(std::move(parts)) {}
  void decode_chain(std::vector<std::string>& tokens) const override {
    for (const auto& p : parts_) p->decode_chain(tokens);
  }

 private:
  std::vector<std::unique_ptr<Decoder>> parts_;
};

}  // namespace

std::unique_ptr<Decoder> make_decoder(const json& j, const std::string& where) {
  if (j.is_null()) return nullptr;
  if (!j.is_object() || !j.contains("type") || !j["type"].is_string())
    fail_input("{}: \"decoder\" must be null or an object with a \"type\"", where);
  const std::string type = j["type"].get<std::string>();
  if (type == "ByteLevel") return std::make_unique<ByteLevelDecoder>();
  if (type == "ByteFallback") return std::make_unique<ByteFallbackDecoder>();
  if (type == "Fuse") return std::make_unique<FuseDecoder>();
  if (type == "Strip") {
    const std::string content = j.contains("content") ? json_string(j["content"], where, "decoder.content") : " ";
    if (content.empty()) fail_input("{}: Strip decoder needs a non-empty \"content\"", where);
    const auto count = [&](const char* key) {
      return j.contains(key) ? static_cast<std::size_t>(json_integer(j[key], 0, INT32_MAX, where, std::string("decoder.") + key))
                             : std::size_t{0};
    };
    return std::make_unique<StripDecoder>(content, count("start"), count("stop"));
  }
  if (type == "Replace") {
    const json& pat = j.value("pattern", json());
    const std::string content = j.value("content", std::string());
    if (pat.is_object() && pat.contains("String") && pat["String"].is_string())
      return std::make_unique<ReplaceDecoder>(pat["String"].get<std::string>(), nullptr, content);
    if (pat.is_object() && pat.contains("Regex") && pat["Regex"].is_string())
      return std::make_unique<ReplaceDecoder>(
          "", std::make_unique<Regex>(pat["Regex"].get<std::string>(), where + ": Replace decoder"), content);
    fail_input("{}: Replace decoder needs \"pattern\": {{\"String\": ...}} or {{\"Regex\": ...}}", where);
  }
  if (type == "Metaspace") {
    bool strip = true;
    if (j.contains("prepend_scheme") && j["prepend_scheme"].is_string())
      strip = j["prepend_scheme"].get<std::string>() != "never";
    else if (j.contains("add_prefix_space") && j["add_prefix_space"].is_boolean())
      strip = j["add_prefix_space"].get<bool>();
    return std::make_unique<MetaspaceDecoder>(j.value("replacement", std::string("\xE2\x96\x81")), strip);
  }
  if (type == "Sequence") {
    if (!j.contains("decoders") || !j["decoders"].is_array())
      fail_input("{}: Sequence decoder needs a \"decoders\" array", where);
    std::vector<std::unique_ptr<Decoder>> parts;
    for (const auto& d : j["decoders"]) {
      auto p = make_decoder(d, where);
      if (p) parts.push_back(std::move(p));
    }
    return std::make_unique<SequenceDecoder>(std::move(parts));
  }
  fail_input("{}: unsupported tokenizer feature: decoder type \"{}\" (supported: ByteLevel, ByteFallback, Fuse, "
             "Strip, Replace, Metaspace, Sequence)",
             where, type);
}

}  // namespace moetrace::tok
