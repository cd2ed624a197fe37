// libFuzzer target: tokenizer.json text. An accepted tokenizer also encodes and decodes a few
// fixed strings (ASCII, accents, CJK, an emoji, whitespace runs), so the pipeline it describes runs.
#include <string_view>

#include "fuzz_common.h"
#include "tokenizer/tokenizer.h"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  return moetrace::fuzz::expect_input_error_or_success([&] {
    const moetrace::Tokenizer t =
        moetrace::Tokenizer::from_json_text(moetrace::fuzz::as_string(data, size), "", "tokenizer.json");
    for (std::string_view text : {"The Eiffel Tower is in", " Paris", "caf\xC3\xA9  \xE6\x9D\xB1\xE4\xBA\xAC \xF0\x9F\x99\x82\n\t x"}) {
      const moetrace::Encoding e = t.encode(text, true);
      (void)t.decode(e.ids, false);
    }
  });
}
