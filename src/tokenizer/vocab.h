#pragma once
// Token string <-> id tables shared by the BPE and WordLevel models. Lookups go through a flat
// open-addressing table (ids into the token array), which keeps a 151k-token vocabulary fast to
// build and cache-friendly to query.
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace moetrace::tok {

// How far an id may lie beyond the number of vocabulary entries: a vocabulary may have holes, but
// an id of 2^31-1 in a 100-token vocabulary must not allocate 2^31 strings.
inline constexpr std::int64_t kMaxVocabIdGap = 65536;

struct StringHash {
  using is_transparent = void;
  std::size_t operator()(std::string_view s) const noexcept { return std::hash<std::string_view>{}(s); }
};

class Vocab {
 public:
  // Takes the entries of a {"token": id, ...} object; throws InputError naming `where` on bad ids
  // (negative, or not below the number of entries + kMaxVocabIdGap).
  void load(std::vector<std::pair<std::string, std::int64_t>>&& entries, const std::string& where);
  std::optional<std::int32_t> find(std::string_view token) const {
    if (slots_.empty()) return std::nullopt;
    const std::uint64_t h = StringHash{}(token);
    const auto tag = static_cast<std::uint32_t>(h >> 32);
    for (std::size_t i = h & mask_;; i = (i + 1) & mask_) {
      const Slot& s = slots_[i];
      if (s.id < 0) return std::nullopt;
      if (s.tag == tag && tokens_[s.id] == token) return s.id;
    }
  }
  const std::string* token(std::int32_t id) const {
    if (id < 0 || static_cast<std::size_t>(id) >= tokens_.size() || !present_[id]) return nullptr;
    return &tokens_[id];
  }
  std::size_t size() const { return tokens_.size(); }

 private:
  struct Slot {
    std::int32_t id = -1;
    std::uint32_t tag = 0;
  };
  std::vector<Slot> slots_;
  std::size_t mask_ = 0;
  std::vector<std::string> tokens_;
  std::vector<bool> present_;
};

}  // namespace moetrace::tok
