// libFuzzer target: config.json text.
#include "fuzz_common.h"
#include "model/model_config.h"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  return moetrace::fuzz::expect_input_error_or_success([&] {
    const moetrace::ModelConfig c = moetrace::parse_model_config(moetrace::fuzz::as_string(data, size), "config.json");
    (void)c.q_width();
    (void)c.kv_width();
  });
}
