#pragma once
// Where tests find their inputs. ctest sets these variables (tests/CMakeLists.txt); a test that
// cannot find them fails with a message saying which variable to set, never skips silently.
#include <filesystem>
#include <string>

namespace moetrace::test {

std::filesystem::path fixtures_dir();           // ../shared/fixtures
std::filesystem::path source_dir();             // the repository root
std::filesystem::path moetrace_binary();        // the built CLI
std::filesystem::path fresh_temp_dir(const std::string& tag);  // empty folder under /tmp

}  // namespace moetrace::test
