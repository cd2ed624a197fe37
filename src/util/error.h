#pragma once
// Errors raised by moetrace. Every message says *what* went wrong and *where* (a file, a tensor,
// a config key, a record); the CLI prints it and exits non-zero. Internal invariants that a user
// cannot trigger use MOETRACE_ASSERT, which names the source file and line.
#include <stdexcept>
#include <string>

#include <fmt/format.h>

namespace moetrace {

// A problem with user input (files, configs, command line). Message is shown as is.
class InputError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// A failure of a library call or an internal invariant; message carries file:line.
class InternalError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

template <typename... Args>
[[noreturn]] void fail_input(fmt::format_string<Args...> f, Args&&... args) {
  throw InputError(fmt::format(f, std::forward<Args>(args)...));
}

[[noreturn]] void fail_internal(const char* file, int line, const std::string& what);

}  // namespace moetrace

#define MOETRACE_ASSERT(cond, msg)                                                  \
  do {                                                                              \
    if (!(cond)) ::moetrace::fail_internal(__FILE__, __LINE__,                      \
                                           std::string("assertion failed: ") + #cond + \
                                               ": " + (msg));                       \
  } while (0)
