// Hostile localize inputs that passed the loaders and then aborted a run (issue 25, item 3), through
// the real CLI on the multilingual demo model (demo/localize: 4 layers of 16 experts, top-2, 64
// positions, 1051 token ids): questions of Unicode white space only, prompts longer than the
// model's positions, top_n / curve_n beyond what the model can deactivate, eos_ids beyond its
// vocabulary, an unknown backend. Each ends in exit 2 naming the file and the key or record, before
// any stage runs, or (lenient question files, clipped counts) exit 0 with the skip counted or the
// clipped value logged and used.
#define BOOST_TEST_MODULE localize_hostile
#include <boost/test/unit_test.hpp>

#include <algorithm>
#include <fstream>
#include <map>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "results/h5_file.h"
#include "support/cli_runner.h"
#include "support/test_paths.h"

namespace fs = std::filesystem;
using namespace moetrace;
using namespace moetrace::test;

namespace {

// The demo's first 16 questions, three languages: a run of a few seconds.
struct Workspace {
  fs::path dir;
  std::vector<std::string> records;  // the question file's lines after the header
  std::string header;
  Workspace() {
    dir = fresh_temp_dir("localize-hostile");
    std::ifstream in(source_dir() / "demo/localize/questions.jsonl");
    std::getline(in, header);
    for (std::string line; records.size() < 16 && std::getline(in, line);) records.push_back(line);
  }
  fs::path write(const std::string& name, const std::string& text) const {
    std::ofstream(dir / name) << text;
    return dir / name;
  }
  // A question file whose record `index` has `question` in language `language`.
  fs::path questions(const std::string& name, const std::map<std::pair<int, std::string>, std::string>& changes) const {
    std::vector<std::string> lines = records;
    for (const auto& [at, question] : changes) {
      nlohmann::json j = nlohmann::json::parse(lines.at(static_cast<std::size_t>(at.first)));
      j["languages"][at.second]["question"] = question;
      lines[static_cast<std::size_t>(at.first)] = j.dump();
    }
    std::string text = header + "\n";
    for (const std::string& l : lines) text += l + "\n";
    return write(name, text);
  }
  fs::path config(const std::string& name, const fs::path& questions, const std::string& model_extra = "",
                  const std::string& tail = "", const std::string& contrast = "top_n = 2",
                  const std::string& curve = "curve_n = [1, 2]") const {
    return write(name, fmt::format("[model]\npath = \"{}\"\n{}\n[data]\nquestions = \"{}\"\nlanguages = [\"qaa\", \"qab\", \"qac\"]\n"
                                   "{}\n[ask]\nmax_new_tokens = 3\n[contrast]\n{}\nsign_flips = 100\n"
                                   "[deactivation]\ncontrol_draws = 2\n{}\nbootstrap = 100\n"
                                   "[run]\ncheckpoint_every_s = 0\nprogress_every_s = 60\n",
                                   (source_dir() / "demo/localize/model").string(), model_extra, questions.string(), tail,
                                   contrast, curve));
  }
  int run(const fs::path& config, const fs::path& out, std::string& log_text) const {
    const fs::path log = dir / (out.stem().string() + ".log");
    const int rc = run_to_end(moetrace_command({"localize", config.string(), "--out", out.string()}), log);
    log_text = slurp(log);
    return rc;
  }
};

Workspace& ws() {
  static Workspace w;
  return w;
}

void expect_exit_2(const fs::path& config, const std::vector<std::string>& needles) {
  const fs::path out = ws().dir / (config.stem().string() + ".h5");
  std::string text;
  const int rc = ws().run(config, out, text);
  BOOST_TEST(rc == 2, config.filename() << ": exit " << rc << ": " << text);
  for (const std::string& n : needles) BOOST_TEST(text.find(n) != std::string::npos, "'" << n << "' not in: " << text);
  BOOST_TEST(!fs::exists(out), "exit 2 before any stage, yet " << out << " was written");
}

// Runs to exit 0 and returns the results file.
fs::path expect_exit_0(const fs::path& config, std::string& log_text) {
  const fs::path out = ws().dir / (config.stem().string() + ".h5");
  const int rc = ws().run(config, out, log_text);
  BOOST_TEST_REQUIRE(rc == 0, config.filename() << ": exit " << rc << ": " << log_text);
  return out;
}

// The most experts of one layer in a condition's (layer, expert) pairs.
int most_per_layer(const h5::File& f, const std::string& condition) {
  const auto pairs = f.read_int("/localize/conditions/" + condition + "/experts").data;
  std::map<std::int64_t, int> per_layer;
  for (std::size_t i = 0; i + 1 < pairs.size(); i += 2) ++per_layer[pairs[i]];
  int most = 0;
  for (const auto& [l, n] : per_layer) most = std::max(most, n);
  return most;
}

}  // namespace

BOOST_AUTO_TEST_CASE(questions_of_unicode_white_space_are_bad_records) {
  const Workspace& w = ws();
  // U+3000 (ideographic space), U+00A0 (no-break space), U+2028 (line separator).
  const fs::path q = w.questions("white.jsonl", {{{1, "qab"}, "\u3000\u3000"}, {{4, "qaa"}, "\u00a0\u2028 \t"}});
  const std::string id1 = nlohmann::json::parse(w.records[1])["id"], id4 = nlohmann::json::parse(w.records[4])["id"];
  expect_exit_2(w.config("white_strict.toml", q, "", "strict = true"),
                {"white.jsonl", "line 3", id1, "language 'qab'", "white space"});
  std::string log;
  const fs::path out = expect_exit_0(w.config("white_lenient.toml", q), log);
  BOOST_TEST(log.find("2 questions skipped: 2 empty question") != std::string::npos, log);
  h5::File f(out.string(), h5::File::Mode::ReadOnly);
  BOOST_TEST(f.attr_int("/localize/skipped", "empty question") == 2);
  BOOST_TEST(f.attr_int("/localize/skipped", "total") == 2);
  BOOST_TEST((f.read_strings("/localize/skipped/id") == std::vector<std::string>{id1, id4}));
  BOOST_TEST(f.read_strings("/localize/questions/id").size() == 14u);
}

BOOST_AUTO_TEST_CASE(prompts_longer_than_the_model_positions_are_caught_before_any_stage) {
  const Workspace& w = ws();
  std::string long_question;
  for (int i = 0; i < 70; ++i) long_question += "wuth ";
  const fs::path q = w.questions("long.jsonl", {{{2, "qac"}, long_question + "cust"}});
  const std::string id = nlohmann::json::parse(w.records[2])["id"];
  // Strict: the file, line, id and the numbers (tokens, max_new_tokens, positions).
  expect_exit_2(w.config("long_strict.toml", q, "", "strict = true"),
                {"long.jsonl", "line 4", id, "language 'qac'", "max_new_tokens = 3", "64 positions"});
  // Lenient: skipped and counted, in the log and the results file.
  std::string log;
  const fs::path out = expect_exit_0(w.config("long_lenient.toml", q), log);
  BOOST_TEST(log.find("1 question skipped: 1 too long") != std::string::npos, log);
  h5::File f(out.string(), h5::File::Mode::ReadOnly);
  BOOST_TEST(f.attr_int("/localize/skipped", "too long") == 1);
  BOOST_TEST((f.read_strings("/localize/skipped/id") == std::vector<std::string>{id}));
  // Config values no question can fit: the config file and key.
  const fs::path plain = w.questions("plain.jsonl", {});
  std::string tpl;
  for (int i = 0; i < 70; ++i) tpl += "wuth ";
  expect_exit_2(w.config("tpl.toml", plain, "", "[templates]\nqab = \"" + tpl + "{question}\""),
                {"tpl.toml", "[templates] qab", "64 positions"});
  std::string text = slurp(w.config("mnt.toml", plain));
  text.replace(text.find("max_new_tokens = 3"), 18, "max_new_tokens = 64");
  expect_exit_2(w.write("mnt.toml", text), {"mnt.toml", "[ask] max_new_tokens = 64", "64 positions"});
  // Room for a short prompt but for none of the demo's: the question file and the config key.
  text.replace(text.find("max_new_tokens = 64"), 19, "max_new_tokens = 60");
  expect_exit_2(w.write("mnt60.toml", text), {"plain.jsonl", "no question this model can ask", "mnt60.toml", "[ask] max_new_tokens = 60"});
}

BOOST_AUTO_TEST_CASE(top_n_and_curve_n_are_fitted_to_the_model_before_any_stage) {
  const Workspace& w = ws();
  const fs::path q = w.questions("plain.jsonl", {});
  // Per layer: at most min(16 / 2, 16 - 2) = 8, named with the allowed range.
  expect_exit_2(w.config("pl.toml", q, "", "", "top_n = 9\nselection = \"per_layer\""),
                {"pl.toml", "[contrast] top_n = 9", "[1, 8]"});
  // Global: top_n clipped to 4 layers x 8, curve_n to 4 layers x (16 - 2), logged; no layer of a set
  // holds more than its cap.
  std::string log;
  const fs::path out = expect_exit_0(w.config("clip.toml", q, "", "", "top_n = 40", "curve_n = [1, 64]"), log);
  BOOST_TEST(log.find("[contrast] top_n = 40 clipped to 32") != std::string::npos, log);
  BOOST_TEST(log.find("[deactivation] curve_n elements above 56 clipped") != std::string::npos, log);
  h5::File f(out.string(), h5::File::Mode::ReadOnly);
  BOOST_TEST(f.attr_int("/localize/contrast/top_per_layer", "top_n") == 32);
  BOOST_TEST(f.read_int("/localize/conditions/chosen/experts").data.size() == 64u);
  BOOST_TEST(most_per_layer(f, "chosen") <= 8);
  BOOST_TEST(most_per_layer(f, "random_0") <= 8);
  BOOST_TEST(most_per_layer(f, "popular") <= 14);
  BOOST_TEST(f.exists("/localize/conditions/curve_56/experts"));
  BOOST_TEST(!f.exists("/localize/conditions/curve_64"));
  BOOST_TEST(f.read_int("/localize/conditions/curve_56/experts").data.size() == 112u);
  BOOST_TEST(most_per_layer(f, "curve_56") <= 14);
  BOOST_TEST(f.read_int("/localize/contrast/top_global").data.size() == 56u);
}

BOOST_AUTO_TEST_CASE(eos_ids_beyond_the_vocabulary_and_unknown_backends_name_the_key) {
  const Workspace& w = ws();
  const fs::path q = w.questions("plain.jsonl", {});
  expect_exit_2(w.config("eos.toml", q, "eos_ids = [2147483647]"), {"eos.toml", "[model] eos_ids", "2147483647", "1051"});
  expect_exit_2(w.config("tpu.toml", q, "backend = \"tpu\""), {"tpu.toml", "[model] backend", "tpu", "cpu, cpu-bf16"});
  expect_exit_2(w.config("dev.toml", q, "backend = \"cuda:x\""), {"dev.toml", "[model] backend", "cuda:x"});
  // `run` shares the key.
  const fs::path run = w.write("run_tpu.toml", fmt::format("[model]\npath = \"{}\"\nbackend = \"tpu\"\n[data]\ncounterfact = \"{}\"\n",
                                                            (source_dir() / "demo/model").string(),
                                                            (source_dir() / "demo/counterfact_demo.json").string()));
  const fs::path log = w.dir / "run_tpu.log";
  const int rc = run_to_end(moetrace_command({"run", run.string(), "--out", (w.dir / "run_tpu.h5").string()}), log);
  const std::string text = slurp(log);
  BOOST_TEST(rc == 2, text);
  for (const char* n : {"run_tpu.toml", "[model] backend", "tpu"}) BOOST_TEST(text.find(n) != std::string::npos, n << " not in " << text);
}
