#pragma once
// Checked arithmetic for every size computed from input (tensor shapes, config dimensions, byte
// counts): one place that says what overflow means. The `_or_fail` forms throw an InputError
// naming `what` (the file and the tensor or field the numbers came from).
#include <concepts>
#include <cstdint>
#include <limits>
#include <optional>
#include <span>
#include <string_view>

#include "util/error.h"

namespace moetrace {

template <std::integral T>
std::optional<T> checked_mul(T a, T b) {
  T r;
  if (__builtin_mul_overflow(a, b, &r)) return std::nullopt;
  return r;
}

template <std::integral T>
T mul_or_fail(T a, T b, std::string_view what) {
  if (auto r = checked_mul(a, b)) return *r;
  fail_input("{}: {} x {} overflows", what, a, b);
}

// The product of non-negative dimensions (1 for none), or nullopt when one is negative or the
// product does not fit in an int64.
std::optional<std::int64_t> checked_product(std::span<const std::int64_t> dims);

}  // namespace moetrace
