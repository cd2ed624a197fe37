#pragma once
// Shared by the fuzz targets: the contract under test is that a parser either accepts its input
// or throws moetrace::InputError. Any other exception escapes LLVMFuzzerTestOneInput and ends the
// process (std::terminate), which libFuzzer reports as a crash, as it does sanitizer findings.
#include <cstddef>
#include <cstdint>
#include <string>

#include "util/error.h"

namespace moetrace::fuzz {

template <typename F>
int expect_input_error_or_success(F&& f) {
  try {
    f();
  } catch (const InputError&) {
  }
  return 0;
}

inline std::string as_string(const std::uint8_t* data, std::size_t size) {
  return std::string(reinterpret_cast<const char*>(data), size);
}

}  // namespace moetrace::fuzz
