#include "tokenizer/json_reader.h"

#include "util/error.h"
#include "util/json_input.h"

namespace moetrace::tok {
namespace {

using json = nlohmann::json;

class Handler {
 public:
  using number_integer_t = json::number_integer_t;
  using number_unsigned_t = json::number_unsigned_t;
  using number_float_t = json::number_float_t;
  using string_t = json::string_t;
  using binary_t = json::binary_t;

  explicit Handler(TokenizerFile& f) : f_(f), dom_(f.rest, true) {}

  bool null() { return scalar([&] { return dom_.null(); }, "null"); }
  bool boolean(bool v) { return scalar([&] { return dom_.boolean(v); }, v ? "true" : "false"); }
  bool number_integer(number_integer_t v) {
    if (mode_ == Mode::Vocab && depth_ == capture_depth_ + 1) {
      f_.vocab.emplace_back(std::move(pending_key_), v);
      return true;
    }
    return scalar([&] { return dom_.number_integer(v); }, std::to_string(v));
  }
  bool number_unsigned(number_unsigned_t v) {
    if (mode_ == Mode::Vocab && depth_ == capture_depth_ + 1) {
      f_.vocab.emplace_back(std::move(pending_key_), static_cast<std::int64_t>(v));
      return true;
    }
    return scalar([&] { return dom_.number_unsigned(v); }, std::to_string(v));
  }
  bool number_float(number_float_t v, const string_t& s) {
    return scalar([&] { return dom_.number_float(v, s); }, s);
  }
  bool string(string_t& s) {
    if (mode_ == Mode::Merges) {
      if (depth_ == capture_depth_ + 1) {
        f_.merges.emplace_back(std::move(s), std::string());
        f_.merge_is_pair.push_back(false);
      } else if (depth_ == capture_depth_ + 2) {
        if (pair_parts_ == 0) f_.merges.back().first = std::move(s);
        else if (pair_parts_ == 1) f_.merges.back().second = std::move(s);
        ++pair_parts_;
      }
      return true;
    }
    return scalar([&] { return dom_.string(s); }, "\"" + s + "\"");
  }
  bool binary(binary_t& b) { return scalar([&] { return dom_.binary(b); }, "binary"); }

  bool start_object(std::size_t n) {
    enter();
    if (pending_ != Mode::Forward) {
      mode_ = pending_ == Mode::Vocab ? Mode::Vocab : Mode::Skip;
      if (pending_ == Mode::Merges) bad_merges("an object");
      if (pending_ == Mode::Vocab) f_.has_vocab = true;
      pending_ = Mode::Forward;
      capture_depth_ = depth_;
      ++depth_;
      return true;
    }
    ++depth_;
    if (mode_ == Mode::Forward) return dom_.start_object(n);
    if (mode_ == Mode::Merges) bad_merges("an object");
    if (mode_ == Mode::Vocab) f_.vocab_is_object = false;
    return true;
  }
  bool key(string_t& k) {
    if (mode_ == Mode::Vocab && depth_ == capture_depth_ + 1) {
      pending_key_ = std::move(k);
      return true;
    }
    if (mode_ != Mode::Forward) return true;
    if (depth_ == 1) top_key_ = k;
    if (depth_ == 2 && top_key_ == "model" && (k == "vocab" || k == "merges")) {
      pending_ = k == "vocab" ? Mode::Vocab : Mode::Merges;
      return true;
    }
    return dom_.key(k);
  }
  bool end_object() {
    --nesting_;
    --depth_;
    if (mode_ == Mode::Forward) return dom_.end_object();
    if (depth_ == capture_depth_) mode_ = Mode::Forward;
    return true;
  }
  bool start_array(std::size_t n) {
    enter();
    if (pending_ != Mode::Forward) {
      if (pending_ == Mode::Merges) {
        mode_ = Mode::Merges;
        f_.has_merges = true;
      } else {
        mode_ = Mode::Skip;
        f_.has_vocab = true;
        f_.vocab_is_object = false;
      }
      pending_ = Mode::Forward;
      capture_depth_ = depth_;
      ++depth_;
      return true;
    }
    ++depth_;
    if (mode_ == Mode::Forward) return dom_.start_array(n);
    if (mode_ == Mode::Merges) {
      if (depth_ == capture_depth_ + 2) {
        f_.merges.emplace_back();
        f_.merge_is_pair.push_back(true);
        pair_parts_ = 0;
      } else {
        bad_merges("a nested array");
      }
    }
    if (mode_ == Mode::Vocab) f_.vocab_is_object = false;
    return true;
  }
  bool end_array() {
    --nesting_;
    --depth_;
    if (mode_ == Mode::Forward) return dom_.end_array();
    if (mode_ == Mode::Merges && depth_ == capture_depth_ + 1 && pair_parts_ != 2)
      bad_merges("an array of " + std::to_string(pair_parts_) + " strings");
    if (depth_ == capture_depth_) mode_ = Mode::Forward;
    return true;
  }
  bool parse_error(std::size_t pos, const std::string& tok, const nlohmann::detail::exception& e) {
    return dom_.parse_error(pos, tok, e);
  }

 private:
  enum class Mode { Forward, Vocab, Merges, Skip };
  // The components are built recursively (Sequence of Sequence ...): bound the nesting.
  void enter() {
    if (++nesting_ > kMaxJsonDepth) fail_input("JSON nested deeper than {} levels", kMaxJsonDepth);
  }
  template <typename F>
  bool scalar(F&& forward, const std::string& what) {
    if (pending_ != Mode::Forward) {
      // model.vocab / model.merges given as a scalar.
      if (pending_ == Mode::Vocab) {
        f_.has_vocab = true;
        f_.vocab_is_object = false;
      } else {
        f_.has_merges = true;
        bad_merges(what);
      }
      pending_ = Mode::Forward;
      return true;
    }
    if (mode_ == Mode::Forward) return forward();
    if (mode_ == Mode::Vocab) f_.vocab_is_object = false;
    if (mode_ == Mode::Merges) bad_merges(what);
    return true;
  }
  void bad_merges(const std::string& what) {
    if (f_.merges_are_valid) f_.bad_merge = what;
    f_.merges_are_valid = false;
  }

  TokenizerFile& f_;
  nlohmann::detail::json_sax_dom_parser<json> dom_;
  Mode mode_ = Mode::Forward, pending_ = Mode::Forward;
  int depth_ = 0, capture_depth_ = 0, pair_parts_ = 0, nesting_ = 0;
  std::string top_key_, pending_key_;
};

}  // namespace

TokenizerFile parse_tokenizer_json(std::string_view text, const std::string& where) {
  TokenizerFile f;
  Handler h(f);
  try {
    json::sax_parse(text.begin(), text.end(), &h);
  } catch (const json::exception& e) {
    fail_input("{} is not valid JSON: {}", where, e.what());
  } catch (const InputError& e) {
    fail_input("{}: {}", where, e.what());
  }
  return f;
}

}  // namespace moetrace::tok
