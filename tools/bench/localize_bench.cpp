// Router-contrast localisation: (question, language) pairs answered per second by ask_questions
// (src/localize/localize_ask.h), and the share of engine time spent in decoding (the one-token
// continuation steps) against the prompt runs (a benchmark, not a test).
//
// Two models:
//  - demo: the tracing demo (demo/model: Mixtral-style, 4 layers, 8 experts top-2, word-level
//    tokenizer of 713 words); questions from demo/counterfact_demo.json (the fact's prompt with its
//    subject; answer: the true object), asked in 4 "languages": the prompt, its words reversed,
//    rotated by one and by two (all in the demo's vocabulary);
//  - real: a random checkpoint with real layer widths (e.g. Qwen3-30B-A3B widths at 2 layers, bf16,
//    real vocabulary: `tools/peer/cpu_peer.py write --arch qwen3 --layers 2 --out DIR`, or the batch
//    bench's /tmp/moetrace-batch-bench/qwen3-30b-a3b); no tokenizer comes with it, so a WordLevel
//    tokenizer over its ids is synthesised ("w<id>", id 2 EOS, id 10 a line feed) and prompts are
//    --prompt-tokens random words.
// Every pair is decoded to max_new_tokens unless the model says a line feed or EOS (random models
// rarely do: near the worst case for the decoding share).
//
// For each prompts_per_call value and routing capture on (the first ask of a localize run) and off
// (re-asks under deactivation), interleaved within every repeat so that ratios are side by side
// under the same machine load, it reports pairs/s (wall), CPU s per pair (process user + system,
// all threads), and the decoding share of the engine's time (DecodeStats: time inside
// Engine::run of the steps / of all calls; wall and CPU), min and median over --repeat.
//
// Full depth (real model, --full-layers): engine time = heads x t_head + (engine time - heads x
// t_head) x full_layers / layers, where t_head is the measured time of the engine's one-row LM-head
// product and heads = engine calls x ceil(streams per call / 16) (one LM-head product per call, its
// rows padded to 16 by the CPU backend: a call of up to 16 streams costs one one-row product); the rest of
// ask_questions (tokenising, the line-feed scan of the vocabulary, argmax and log-softmax over the
// vocabulary, matching) is taken as measured.
//
//   moetrace_localize_bench [--demo demo/model] [--demo-facts demo/counterfact_demo.json]
//                           [--real DIR] [--full-layers 48] [--questions-demo 64] [--questions-real 16]
//                           [--new-tokens 8] [--per-call 1,16,64] [--repeat 3] [--prompt-tokens 16]
#include <sys/resource.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <memory>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>
#ifdef _OPENMP
#include <omp.h>
#endif

#include "backend/backend.h"
#include "engine/device_model.h"
#include "engine/forward.h"
#include "engine/greedy_decoder.h"
#include "localize/localize_ask.h"
#include "localize/localize_match.h"
#include "model/model_weights.h"
#include "tokenizer/tokenizer.h"
#include "util/error.h"

using namespace moetrace;
using namespace moetrace::localize;
namespace fs = std::filesystem;

namespace {

double cpu_seconds() {
  rusage u{};
  getrusage(RUSAGE_SELF, &u);
  return u.ru_utime.tv_sec + u.ru_stime.tv_sec + 1e-6 * (u.ru_utime.tv_usec + u.ru_stime.tv_usec);
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  const std::size_t n = v.size();
  return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}
double minimum(const std::vector<double>& v) { return *std::min_element(v.begin(), v.end()); }

const std::vector<std::string> kLanguages = {"en", "de", "fr", "es"};

LanguageEntry entry(const std::string& prompt, const std::string& answer, const std::string& lang) {
  LanguageEntry e;
  e.question = e.prompt = prompt;
  e.answers = {answer};
  e.normalised_answers = {normalise_answer(answer, lang)};
  return e;
}

std::vector<std::string> words_of(const std::string& text) {
  std::istringstream in(text);
  std::vector<std::string> w;
  for (std::string x; in >> x;) w.push_back(x);
  return w;
}

std::string join(const std::vector<std::string>& w) {
  std::string s;
  for (const auto& x : w) {
    if (!s.empty()) s += ' ';
    s += x;
  }
  return s;
}

// The language variants of one prompt: as is, reversed, rotated by one and by two words.
std::vector<std::string> variants(const std::string& prompt) {
  std::vector<std::string> w = words_of(prompt), out = {prompt};
  std::vector<std::string> r(w.rbegin(), w.rend());
  out.push_back(join(r));
  for (std::size_t k = 1; k <= 2; ++k) {
    std::vector<std::string> rot = w;
    std::rotate(rot.begin(), rot.begin() + static_cast<std::ptrdiff_t>(k % std::max<std::size_t>(w.size(), 1)), rot.end());
    out.push_back(join(rot));
  }
  return out;
}

QuestionSet demo_questions(const fs::path& facts, std::size_t n) {
  std::ifstream in(facts);
  if (!in) fail_input("{}: cannot open", facts.string());
  const nlohmann::json j = nlohmann::json::parse(in);
  QuestionSet qs;
  qs.languages = kLanguages;
  for (std::size_t i = 0; i < j.size() && qs.questions.size() < n; ++i) {
    const auto& rw = j[i].at("requested_rewrite");
    std::string prompt = rw.at("prompt").get<std::string>();
    prompt.replace(prompt.find("{}"), 2, rw.at("subject").get<std::string>());
    const std::string answer = rw.at("target_true").at("str").get<std::string>();
    Question q;
    q.id = "q" + std::to_string(i);
    const std::vector<std::string> v = variants(prompt);
    for (std::size_t l = 0; l < kLanguages.size(); ++l) q.entries.push_back(entry(v[l], answer, kLanguages[l]));
    qs.questions.push_back(std::move(q));
  }
  return qs;
}

constexpr int kWordEos = 2, kWordNewline = 10;

std::string word(int id) {
  std::string w = "w";
  w += std::to_string(id);
  return w;
}

Tokenizer word_tokenizer(int vocab) {
  nlohmann::json v = nlohmann::json::object();
  for (int i = 0; i < vocab; ++i) v[i == kWordEos ? "</s>" : i == kWordNewline ? "\n" : word(i)] = i;
  auto added = [](int id, const std::string& content, bool special) {
    return nlohmann::json{{"id", id}, {"content", content}, {"special", special}, {"normalized", false},
                          {"lstrip", false}, {"rstrip", false}, {"single_word", false}};
  };
  nlohmann::json j = {{"version", "1.0"}, {"truncation", nullptr}, {"padding", nullptr},
                      {"added_tokens", {added(kWordEos, "</s>", true), added(kWordNewline, "\n", false)}},
                      {"normalizer", nullptr}, {"pre_tokenizer", {{"type", "Whitespace"}}},
                      {"post_processor", nullptr}, {"decoder", nullptr},
                      {"model", {{"type", "WordLevel"}, {"vocab", v}, {"unk_token", "w0"}}}};
  return Tokenizer::from_json_text(j.dump(), "", "synthesised word tokenizer");
}

QuestionSet random_questions(int vocab, std::size_t n, int prompt_tokens) {
  std::mt19937_64 rng(12345);
  std::uniform_int_distribution<int> id(11, vocab - 1);
  QuestionSet qs;
  qs.languages = kLanguages;
  for (std::size_t i = 0; i < n; ++i) {
    std::vector<std::string> w;
    for (int t = 0; t < prompt_tokens; ++t) w.push_back(word(id(rng)));
    const std::string answer = word(id(rng));
    Question q;
    q.id = "q" + std::to_string(i);
    const std::vector<std::string> v = variants(join(w));
    for (std::size_t l = 0; l < kLanguages.size(); ++l) q.entries.push_back(entry(v[l], answer, kLanguages[l]));
    qs.questions.push_back(std::move(q));
  }
  return qs;
}

struct Bench {
  std::string name;
  ModelWeights weights;
  std::unique_ptr<Backend> backend;
  DeviceModel model;
  std::unique_ptr<Engine> engine;
  Tokenizer tok;
  QuestionSet qs;
  Bench(std::string n, const fs::path& dir, Tokenizer t)
      : name(std::move(n)), weights(load_model(dir)), backend(make_cpu_backend()), model(upload_model(weights, *backend)),
        engine(std::make_unique<Engine>(model, *backend)), tok(std::move(t)) {}
};

struct Sample {
  double wall = 0, cpu = 0;
  DecodeStats st;
  std::size_t generated = 0;
};

Sample ask_once(Bench& b, std::size_t per_call, bool routing, int new_tokens) {
  AskOptions o;
  o.max_new_tokens = new_tokens;
  o.prompts_per_call = per_call;
  o.eos_ids = {kWordEos};
  o.add_special_tokens = false;
  o.capture_routing = routing;
  Sample s;
  o.stats = &s.st;
  const double c0 = cpu_seconds();
  const auto w0 = std::chrono::steady_clock::now();
  const std::vector<AskedPair> asked = ask_questions(*b.engine, b.tok, b.qs, {}, o);
  s.wall = std::chrono::duration<double>(std::chrono::steady_clock::now() - w0).count();
  s.cpu = cpu_seconds() - c0;
  for (const AskedPair& p : asked) s.generated += p.generated.size();
  return s;
}

// Wall and CPU seconds of the engine's one-row LM-head product (what the read-out does per stream).
std::pair<double, double> lm_head_row_seconds(Bench& b) {
  const int H = b.weights.config.hidden_size;
  std::vector<float> row(static_cast<std::size_t>(H), 0.01f);
  TensorPtr x = b.backend->upload(row.data(), 1, H);
  (void)b.backend->linear(*x, *b.model.lm_head);  // warm-up
  const int n = 20;
  const double c0 = cpu_seconds();
  const auto w0 = std::chrono::steady_clock::now();
  for (int i = 0; i < n; ++i) (void)b.backend->linear(*x, *b.model.lm_head);
  const double wall = std::chrono::duration<double>(std::chrono::steady_clock::now() - w0).count() / n;
  return {wall, (cpu_seconds() - c0) / n};
}

void run(Bench& b, const std::vector<std::size_t>& per_call, int repeat, int new_tokens, int full_layers) {
  const ModelConfig& c = b.weights.config;
  const std::size_t pairs = b.qs.questions.size() * b.qs.languages.size();
  std::printf("\n### %s: %d layers, hidden %d, %d experts top-%d, vocab %d; %zu pairs (%zu questions x %zu languages), "
              "max_new_tokens %d\n",
              b.name.c_str(), c.num_layers, c.hidden_size, c.num_experts, c.top_k, c.vocab_size, pairs,
              b.qs.questions.size(), b.qs.languages.size(), new_tokens);
  (void)ask_once(b, per_call.back(), false, 2);  // warm-up (page cache, allocator, oneDNN primitives)
  struct Row {
    std::size_t per_call;
    bool routing;
    std::vector<Sample> samples;
  };
  std::vector<Row> rows;
  for (std::size_t pc : per_call)
    for (bool routing : {true, false}) rows.push_back({pc, routing, {}});
  for (int r = 0; r < repeat; ++r)
    for (Row& row : rows) {
      row.samples.push_back(ask_once(b, row.per_call, row.routing, new_tokens));
      std::fprintf(stderr, "  %s repeat %d per_call %zu routing %d: %.2f s\n", b.name.c_str(), r, row.per_call,
                   row.routing, row.samples.back().wall);
    }
  std::pair<double, double> head{0, 0};
  const bool scale = full_layers > c.num_layers;
  if (scale) head = lm_head_row_seconds(b);

  std::printf("\n| prompts/call | routing | pairs/s wall (min-time / median) | CPU s/pair (min / median) | "
              "decode share of engine wall (min / median) | decode share of engine CPU | engine calls/pair | "
              "generated tokens/pair |%s\n",
              scale ? " full depth: pairs/s wall (min-time / median) | full depth: decode share (median) |" : "");
  std::printf("|---:|:---:|---:|---:|---:|---:|---:|---:|%s\n", scale ? "---:|---:|" : "");
  for (const Row& row : rows) {
    std::vector<double> wall, cpu, share_w, share_c, full_wall, full_share;
    for (const Sample& s : row.samples) {
      wall.push_back(s.wall);
      cpu.push_back(s.cpu / pairs);
      const double ew = s.st.prompt_wall_s + s.st.step_wall_s, ec = s.st.prompt_cpu_s + s.st.step_cpu_s;
      share_w.push_back(s.st.step_wall_s / ew);
      share_c.push_back(ec > 0 ? s.st.step_cpu_s / ec : 0);
      if (scale) {
        const double f = static_cast<double>(full_layers) / c.num_layers;
        // One LM-head product per call; the CPU backend pads its rows to 16 (row independence), so a
        // call of n streams costs about ceil(n / 16) one-row products.
        auto deep = [&](double t, std::uint64_t calls, std::uint64_t streams) {
          const double per_call = calls ? std::ceil(static_cast<double>(streams) / calls / 16.0) : 0.0;
          const double h = static_cast<double>(calls) * per_call * head.first;
          return h + std::max(0.0, t - h) * f;
        };
        const double prompt = deep(s.st.prompt_wall_s, s.st.prompt_calls, s.st.prompt_streams),
                     step = deep(s.st.step_wall_s, s.st.step_calls, s.st.step_streams);
        full_wall.push_back(s.wall - ew + prompt + step);
        full_share.push_back(step / (prompt + step));
      }
    }
    const Sample& s0 = row.samples.front();
    std::printf("| %zu | %s | %.2f / %.2f | %.4f / %.4f | %.3f / %.3f | %.3f | %.3f | %.2f |", row.per_call,
                row.routing ? "on" : "off", pairs / minimum(wall), pairs / median(wall), minimum(cpu), median(cpu),
                minimum(share_w), median(share_w), median(share_c),
                static_cast<double>(s0.st.prompt_calls + s0.st.step_calls) / pairs,
                static_cast<double>(s0.generated) / pairs);
    if (scale) std::printf(" %.3f / %.3f | %.3f |", pairs / minimum(full_wall), pairs / median(full_wall), median(full_share));
    std::printf("\n");
    std::fflush(stdout);
  }
  if (scale)
    std::printf("\nFull depth: %d of %d layers measured (x%.1f for the layers); one-row LM-head product %.4f s wall, "
                "%.4f s CPU (%d rows of %d).\n",
                c.num_layers, full_layers, static_cast<double>(full_layers) / c.num_layers, head.first, head.second,
                c.vocab_size, c.hidden_size);
}

std::vector<std::size_t> parse_list(const std::string& text) {
  std::vector<std::size_t> out;
  std::stringstream in(text);
  for (std::string x; std::getline(in, x, ',');)
    if (!x.empty()) out.push_back(static_cast<std::size_t>(std::stoul(x)));
  return out;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"pairs/s of ask_questions and the decoding share of engine time"};
  std::string demo = "demo/model", facts = "demo/counterfact_demo.json", real, per_call_text = "1,16,64";
  int full_layers = 48, new_tokens = 8, repeat = 3, prompt_tokens = 16;
  std::size_t q_demo = 64, q_real = 16;
  app.add_option("--demo", demo, "demo model folder ('' to skip)");
  app.add_option("--demo-facts", facts, "the demo's CounterFact-style facts");
  app.add_option("--real", real, "random real-width checkpoint folder ('' to skip)");
  app.add_option("--full-layers", full_layers, "the real model's depth, for the full-depth columns");
  app.add_option("--questions-demo", q_demo);
  app.add_option("--questions-real", q_real);
  app.add_option("--new-tokens", new_tokens, "max_new_tokens");
  app.add_option("--per-call", per_call_text, "prompts_per_call values");
  app.add_option("--repeat", repeat);
  app.add_option("--prompt-tokens", prompt_tokens, "prompt length of the real model's random prompts");
  CLI11_PARSE(app, argc, argv);
  const std::vector<std::size_t> per_call = parse_list(per_call_text);
  if (per_call.empty() || repeat < 1 || new_tokens < 1) {
    std::fprintf(stderr, "bad options\n");
    return 2;
  }
  int threads = 1;
#ifdef _OPENMP
  threads = omp_get_max_threads();
#endif
  std::printf("moetrace_localize_bench: %d OpenMP thread(s), %d repeat(s), prompts_per_call %s\n", threads, repeat,
              per_call_text.c_str());
  try {
    if (!demo.empty()) {
      auto b = std::make_unique<Bench>("demo", demo, Tokenizer::from_path(demo));
      b->qs = demo_questions(facts, q_demo);
      run(*b, per_call, repeat, new_tokens, 0);
    }
    if (!real.empty()) {
      const ModelConfig c = load_model_config(real);
      auto b = std::make_unique<Bench>("real widths (" + real + ")", real, word_tokenizer(c.vocab_size));
      b->qs = random_questions(c.vocab_size, q_real, prompt_tokens);
      run(*b, per_call, repeat, new_tokens, full_layers);
    }
  } catch (const InputError& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return 2;
  }
  return 0;
}
