// libFuzzer target: a run config (TOML), through parse_run_config as the CLI calls it.
#include "fuzz_common.h"
#include "protocols/run_config.h"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  return moetrace::fuzz::expect_input_error_or_success([&] {
    (void)moetrace::parse_run_config(moetrace::fuzz::as_string(data, size), "/nonexistent/fuzz/run.toml");
  });
}
