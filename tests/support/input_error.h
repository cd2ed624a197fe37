#pragma once
// The message of the InputError that `f` throws; a test error (and "") when it throws anything else
// or nothing. Shared by the model-loading suites.
#include <exception>
#include <functional>
#include <string>

#include <boost/test/unit_test.hpp>

#include "util/error.h"

namespace moetrace::test {

inline std::string input_error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const InputError& e) {
    return e.what();
  } catch (const std::exception& e) {
    BOOST_ERROR("expected an InputError, got another exception: " << e.what());
    return {};
  }
  BOOST_ERROR("expected an InputError, but loading succeeded");
  return {};
}

}  // namespace moetrace::test
