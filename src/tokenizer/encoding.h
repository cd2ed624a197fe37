#pragma once
// The result of encoding one string.
#include <cstddef>
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

namespace moetrace {

struct Encoding {
  std::vector<std::int32_t> ids;
  std::vector<std::string> tokens;  // vocabulary strings (byte-level characters for byte-level BPE)
  // Per token, the half-open range of BYTES of the original UTF-8 input that produced it.
  // Special tokens inserted by the post-processor (e.g. BOS) have the empty range {0, 0}.
  std::vector<std::pair<std::size_t, std::size_t>> offsets;
  std::vector<std::uint8_t> special;  // 1 for tokens inserted by the post-processor

  std::size_t size() const { return ids.size(); }
};

}  // namespace moetrace
