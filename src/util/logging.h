#pragma once
// Logging goes through spdlog to stderr so that stdout stays machine-readable (tokenize, report).
#include <spdlog/spdlog.h>

namespace moetrace {

// Sets the global level from a name ("debug", "info", "warn", ...); unknown names are an error.
void configure_logging(const std::string& level);

}  // namespace moetrace
