#include "util/checked.h"

namespace moetrace {

std::optional<std::int64_t> checked_product(std::span<const std::int64_t> dims) {
  std::int64_t n = 1;
  for (std::int64_t d : dims) {
    if (d < 0) return std::nullopt;
    auto r = checked_mul(n, d);
    if (!r) return std::nullopt;
    n = *r;
  }
  return n;
}

}  // namespace moetrace
