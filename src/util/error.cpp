#include "util/error.h"

namespace moetrace {

void fail_internal(const char* file, int line, const std::string& what) {
  throw InternalError(fmt::format("{}:{}: {}", file, line, what));
}

}  // namespace moetrace
