#pragma once
// The tokenizer.json "model": turns one pre-tokenised piece into token ids.
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace moetrace::tok {

struct ModelToken {
  std::int32_t id;
  std::uint32_t begin, end;  // byte range inside the piece's text
};

class Model {
 public:
  virtual ~Model() = default;
  // Appends the tokens of `piece` (in the model's alphabet: byte-level characters for byte-level
  // BPE, text with U+2581 for SentencePiece BPE) to out.
  virtual void tokenize(std::string_view piece, std::vector<ModelToken>& out) const = 0;
  virtual std::optional<std::int32_t> token_to_id(std::string_view token) const = 0;
  // nullptr when id is not in the model's vocabulary.
  virtual const std::string* id_to_token(std::int32_t id) const = 0;
  // One past the largest id in the vocabulary.
  virtual std::size_t vocab_size() const = 0;
  // The id that stands for text outside the vocabulary (the model's unk_token), if it has one.
  virtual std::optional<std::int32_t> unk_id() const { return std::nullopt; }
};

}  // namespace moetrace::tok
