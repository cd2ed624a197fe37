#include "support/test_paths.h"

#include <cstdlib>
#include <random>
#include <unistd.h>

#include "util/error.h"

namespace moetrace::test {
namespace {
std::filesystem::path from_env(const char* name) {
  const char* v = std::getenv(name);
  if (!v || !*v)
    throw InputError(fmt::format("environment variable {} is not set; run the tests through ctest", name));
  return v;
}
}  // namespace

std::filesystem::path fixtures_dir() {
  auto p = from_env("MOETRACE_FIXTURES_DIR");
  if (!std::filesystem::exists(p / "mixtral-tiny.golden.h5"))
    throw InputError(fmt::format("fixtures not found in {} (configure with -DMOETRACE_FIXTURES_DIR=...)", p.string()));
  return p;
}
std::filesystem::path source_dir() { return from_env("MOETRACE_SOURCE_DIR"); }
std::filesystem::path moetrace_binary() { return from_env("MOETRACE_BINARY"); }

std::filesystem::path fresh_temp_dir(const std::string& tag) {
  std::random_device rd;
  auto dir = std::filesystem::temp_directory_path() /
             fmt::format("moetrace-{}-{}-{:x}", tag, ::getpid(), rd());
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir);
  return dir;
}

}  // namespace moetrace::test
