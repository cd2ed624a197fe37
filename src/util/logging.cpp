#include "util/logging.h"

#include <spdlog/sinks/stdout_color_sinks.h>

#include "util/error.h"

namespace moetrace {

void configure_logging(const std::string& level) {
  auto parsed = spdlog::level::from_str(level);
  if (parsed == spdlog::level::off && level != "off")
    fail_input("unknown log level '{}' (use trace, debug, info, warn, error or off)", level);
  auto logger = spdlog::stderr_color_mt("moetrace");
  logger->set_pattern("[%H:%M:%S.%e] [%^%l%$] %v");
  spdlog::set_default_logger(logger);
  spdlog::set_level(parsed);
}

}  // namespace moetrace
