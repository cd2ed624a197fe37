// `moetrace report` on results files made by real runs of the demo model and of a planted copy of
// it: text, JSON and CSV agree with the HDF5 values; flat, zero and tied layer curves are warned
// about; expert tracing at a layer with no rescue is refused unless the config asks; degenerate
// measures carry no p-value; the per-layer expert table (all_layers); decoded token texts for heat
// maps; the run history (absolute config path, one record per --resume); the plotting script.
#define BOOST_TEST_MODULE report
#include <boost/test/unit_test.hpp>

#include <algorithm>
#include <cmath>
#include <fstream>
#include <sstream>

#include <nlohmann/json.hpp>

#include "results/h5_file.h"
#include "results/results_file.h"
#include "support/cli_runner.h"
#include "support/safetensors_writer.h"
#include "support/test_paths.h"

namespace fs = std::filesystem;
using namespace moetrace;
using namespace moetrace::test;
using nlohmann::json;

namespace {

bool has(const std::string& s, const std::string& part) { return s.find(part) != std::string::npos; }

// The demo protocol (no robustness grids) plus `extra` TOML lines, with the model at `model`.
fs::path write_config(const fs::path& dir, const std::string& name, const fs::path& model, const std::string& extra) {
  const fs::path src = source_dir();
  std::ofstream(dir / name) << "[model]\npath = \"" << model.string() << "\"\n"
                            << "[data]\ncounterfact = \"" << (src / "demo/counterfact_demo.json").string()
                            << "\"\nobject_rule = \"leading_space\"\n"
                            << "[run]\ncheckpoint_every_s = 0\nprogress_every_s = 1\n"
                            << extra;
  return dir / name;
}

struct Run {
  fs::path dir, config, results, log;
  int rc = -1;
};

Run run(const std::string& tag, const fs::path& model, const std::string& extra) {
  Run r;
  r.dir = fresh_temp_dir(tag);
  r.config = write_config(r.dir, "run.toml", model, extra);
  r.results = r.dir / "r.h5";
  r.log = r.dir / "run.log";
  // A relative config path: the file must store it absolute.
  const fs::path relative = fs::relative(r.config, fs::current_path());
  r.rc = run_to_end(moetrace_command({"run", relative.string(), "--out", r.results.string()}), r.log);
  return r;
}

std::string report(const Run& r, const std::vector<std::string>& args, int expect_rc = 0) {
  static int k = 0;
  const fs::path log = r.dir / ("report" + std::to_string(k++) + ".out");
  std::vector<std::string> argv{"report", r.results.string()};
  argv.insert(argv.end(), args.begin(), args.end());
  const int rc = run_to_end(moetrace_command(argv), log);
  BOOST_TEST(rc == expect_rc, slurp(log));
  return slurp(log);
}

// The demo in mode all_layers with heat maps: the file most report tests read.
const Run& demo() {
  static Run r = [] {
    Run x = run("report-demo", source_dir() / "demo/model", "[experts]\nmode = \"all_layers\"\n[heatmap]\ncases = 2\n");
    BOOST_TEST_REQUIRE(x.rc == 0, slurp(x.log));
    return x;
  }();
  return r;
}

// A planted copy of the demo model whose experts output nothing (down projections zero): the MoE
// output is 0 clean and noised, so restoring it rescues nothing at any layer.
fs::path silent_experts_model() {
  static fs::path dir = [] {
    ModelFolder m = ModelFolder::read(source_dir() / "demo/model");
    for (StTensor& t : m.tensors)
      if (has(t.name, "block_sparse_moe.experts.") && has(t.name, ".w2.weight"))
        t = StTensor::from_float(t.name, t.dtype, t.shape, std::vector<float>(t.numel(), 0.0f));
    const fs::path out = fresh_temp_dir("silent-experts") / "model";
    m.write(out);
    for (const char* f : {"tokenizer.json", "tokenizer_config.json"})
      fs::copy_file(source_dir() / "demo/model" / f, out / f);
    return out;
  }();
  return dir;
}

}  // namespace

BOOST_AUTO_TEST_CASE(json_export_matches_the_hdf5_values) {
  const Run& r = demo();
  const std::string out = report(r, {"--format", "json"});
  const json j = json::parse(out);  // the whole output is one JSON document
  h5::File f(r.results.string(), h5::File::Mode::ReadOnly);
  BOOST_TEST(j["format"] == "moetrace-report/1");
  BOOST_TEST(j["selection"]["layer"].get<std::int64_t>() == f.attr_int("/layer_sweep", "selected_layer"));
  BOOST_TEST(j["selection"]["expert"].get<std::int64_t>() == f.attr_int("/experts", "selected_expert"));
  // Every validation and discovery summary, field by field, exactly (JSON numbers round-trip).
  for (const char* split : {"validation", "discovery"}) {
    BOOST_TEST_REQUIRE(j[split].size() >= 6u);
    for (const json& s : j[split]) {
      const std::string g = std::string("/") + split + "/" + s["name"].get<std::string>();
      BOOST_TEST(s["n"].get<std::int64_t>() == f.attr_int(g, "n"), g);
      BOOST_TEST(s["mean"].get<double>() == f.attr_double(g, "mean"), g);
      BOOST_TEST(s["ci_low"].get<double>() == f.attr_double(g, "ci_low"), g);
      BOOST_TEST(s["ci_high"].get<double>() == f.attr_double(g, "ci_high"), g);
      BOOST_TEST(s["p_sign_flip"].get<double>() == f.attr_double(g, "p_sign_flip"), g);
      BOOST_TEST(s["degenerate"].is_null(), g);
    }
  }
  // The layer curve and the per-case rows.
  const auto means = f.read_double("/layer_sweep/discovery_mean").data;
  BOOST_TEST_REQUIRE(j["layer_sweep"]["discovery_mean"].size() == means.size());
  for (std::size_t l = 0; l < means.size(); ++l) BOOST_TEST(j["layer_sweep"]["discovery_mean"][l].get<double>() == means[l]);
  const auto ids = f.read_int("/cases/case_id").data;
  const auto sweep = f.read_double("/layer_sweep/rescue");
  const auto lstar = static_cast<std::size_t>(f.attr_int("/layer_sweep", "selected_layer"));
  BOOST_TEST_REQUIRE(j["case_rows"].size() == ids.size());
  for (std::size_t i = 0; i < ids.size(); ++i) {
    BOOST_TEST(j["case_rows"][i]["case_id"].get<std::int64_t>() == ids[i]);
    BOOST_TEST(j["case_rows"][i]["layer_rescue"].get<double>() == sweep.data[i * sweep.shape[1] + lstar]);
  }
  // all_layers: one row per layer with the stored best expert.
  BOOST_TEST_REQUIRE(j["experts_by_layer"].size() == means.size());
  for (const json& row : j["experts_by_layer"]) {
    const std::string g = "/experts/layer_" + std::to_string(row["layer"].get<int>()) + "/validation";
    BOOST_TEST(row["best_expert"].get<std::int64_t>() == f.attr_int(g, "best_expert"));
    BOOST_TEST(row["specificity"]["mean"].get<double>() == f.attr_double(g + "/specificity", "mean"));
  }
}

BOOST_AUTO_TEST_CASE(csv_tables_have_a_header_and_one_row_per_item) {
  const Run& r = demo();
  h5::File f(r.results.string(), h5::File::Mode::ReadOnly);
  const std::size_t n = f.read_int("/cases/case_id").data.size();
  auto lines = [](const std::string& s) {
    std::vector<std::string> v;
    std::istringstream in(s);
    for (std::string l; std::getline(in, l);) v.push_back(l);
    return v;
  };
  const auto cases = lines(report(r, {"--format", "csv"}));
  BOOST_TEST_REQUIRE(cases.size() == n + 1);
  BOOST_TEST(cases[0].rfind("case_id,split,relation_id,subject", 0) == 0u, cases[0]);
  const auto summaries = lines(report(r, {"--format", "csv", "--table", "summaries"}));
  BOOST_TEST(summaries.size() == 1 + f.children("/validation").size() + f.children("/discovery").size());
  const auto layers = lines(report(r, {"--format", "csv", "--table", "layers"}));
  BOOST_TEST(layers.size() == 1 + f.read_double("/layer_sweep/discovery_mean").data.size());
  const auto by_layer = lines(report(r, {"--format", "csv", "--table", "experts_by_layer"}));
  BOOST_TEST(by_layer.size() == layers.size());
  // --table belongs to csv: bad input.
  const std::string msg = report(r, {"--table", "layers"}, 2);
  BOOST_TEST(has(msg, "--table"), msg);
}

BOOST_AUTO_TEST_CASE(the_text_report_shows_the_per_layer_expert_table_and_the_history) {
  const Run& r = demo();
  const std::string text = report(r, {});
  BOOST_TEST(has(text, "Experts by layer"), text);
  BOOST_TEST(has(text, "<- selected layer"), text);
  BOOST_TEST(has(text, "tie rule:"), text);
  BOOST_TEST(!has(text, "WARNING"), text);   // the demo's curve has a clear maximum
  BOOST_TEST(!has(text, "degenerate"), text);
  BOOST_TEST(has(text, "config " + r.config.string()), text);  // absolute, though given relative
  BOOST_TEST(has(text, "(run in " + fs::current_path().string() + ")"), text);
}

BOOST_AUTO_TEST_CASE(a_resume_appends_its_own_record_to_the_history) {
  const Run& first = demo();
  Run r = first;
  r.results = r.dir / "resumed.h5";
  fs::copy_file(first.results, r.results);
  const fs::path log = r.dir / "resume.log";
  BOOST_TEST_REQUIRE(run_to_end(moetrace_command({"run", r.config.string(), "--out", r.results.string(), "--resume"}), log) == 0,
                     slurp(log));
  const json j = json::parse(report(r, {"--format", "json"}));
  const json& h = j["provenance"]["history"];
  BOOST_TEST_REQUIRE(h.size() == 2u);
  BOOST_TEST(h[0]["kind"] == "run");
  BOOST_TEST(h[1]["kind"] == "resume");
  BOOST_TEST(has(h[1]["command_line"].get<std::string>(), "--resume"));
  BOOST_TEST(!has(h[0]["command_line"].get<std::string>(), "--resume"));
  BOOST_TEST(h[1]["ranks"] == 1);
  BOOST_TEST(!h[1]["host"].get<std::string>().empty());
  BOOST_TEST(h[0]["config_path"] == r.config.string());
  BOOST_TEST(j["provenance"]["config_path"] == r.config.string());
  BOOST_TEST(j["provenance"]["working_directory"] == fs::current_path().string());
}

BOOST_AUTO_TEST_CASE(heat_maps_store_decoded_token_texts_beside_the_ids) {
  const Run& r = demo();
  ResultsFile f(r.results.string(), ResultsFile::Mode::Read);
  h5::File& h = f.h5();
  const auto texts = h.read_strings("/heatmap/token_text");
  const auto width = static_cast<std::size_t>(h.attr_int("/heatmap/token_text", "tokens"));
  const auto rows = h.read_int("/heatmap/case_index").data;
  BOOST_TEST_REQUIRE(texts.size() == rows.size() * width);
  const CaseTable cases = f.read_cases("/cases");
  const auto num_tokens = h.read_int("/cases/num_tokens").data;
  for (std::size_t k = 0; k < rows.size(); ++k) {
    const auto i = static_cast<std::size_t>(rows[k]);
    std::string joined;
    for (std::int64_t t = 0; t < num_tokens[i]; ++t) joined += texts[k * width + t];
    // The decoded tokens spell the prompt (the demo tokenizer adds no special tokens; its word-level
    // tokens carry no spaces, so spaces are not compared).
    auto no_spaces = [](std::string s) {
      s.erase(std::remove(s.begin(), s.end(), ' '), s.end());
      return s;
    };
    BOOST_TEST(no_spaces(joined) == no_spaces(cases.prompt[i]));
    BOOST_TEST(has(joined, no_spaces(cases.subject[i])));
    const auto ids = h.read_int("/cases/token_ids");
    BOOST_TEST(texts[k * width] != std::to_string(ids.data[i * ids.shape[1]]));  // text, not the id
  }
  BOOST_TEST(h.exists("/cases/token_ids"));  // the ids stay
}

BOOST_AUTO_TEST_CASE(the_plotting_script_draws_the_layer_by_expert_map_without_overlapping_text) {
  const Run& r = demo();
  const fs::path plots = r.dir / "plots", log = r.dir / "plots.log";
  // The script fails when any two texts of a figure overlap (e.g. the title and the n= labels).
  const int rc = run_to_end({"/usr/bin/python3", (source_dir() / "tools/plot_results.py").string(), r.results.string(),
                             "--out-dir", plots.string()},
                            log);
  BOOST_TEST_REQUIRE(rc == 0, slurp(log));
  for (const char* figure : {"layer_sweep", "experts", "expert_layers", "heatmap"}) {
    const fs::path png = plots / (std::string("r.") + figure + ".png");
    BOOST_TEST((fs::exists(png) && fs::file_size(png) > 10000), png << " missing or empty");
  }
}

BOOST_AUTO_TEST_CASE(a_flat_layer_curve_is_warned_about_and_every_tied_layer_reported) {
  // Restoring the hidden state of a window that covers every layer restores the last layer's
  // output for every l: the same rescue at every layer.
  const Run r = run("report-flat", source_dir() / "demo/model", "[layer_sweep]\nsite = \"hidden\"\nwindow = 8\n");
  BOOST_TEST_REQUIRE(r.rc == 0, slurp(r.log));
  BOOST_TEST(has(slurp(r.log), "the layer curve is flat"), slurp(r.log));
  const json j = json::parse(report(r, {"--format", "json"}));
  BOOST_TEST(j["layer_sweep"]["flat"] == true);
  BOOST_TEST(j["layer_sweep"]["tied_layers"] == json({0, 1, 2, 3}));
  BOOST_TEST(j["layer_sweep"]["selected_layer"] == 0);
  const std::string text = report(r, {});
  BOOST_TEST(has(text, "WARNING: the layer curve is flat"), text);
  BOOST_TEST(has(text, "(tied)"), text);
}

BOOST_AUTO_TEST_CASE(expert_tracing_at_a_layer_with_no_rescue_is_refused_unless_asked_for) {
  const fs::path model = silent_experts_model();
  const Run refused = run("report-zero", model, "");
  BOOST_TEST_REQUIRE(refused.rc == 2, slurp(refused.log));
  const std::string log = slurp(refused.log);
  BOOST_TEST(has(log, "the layer curve is zero"), log);
  BOOST_TEST(has(log, "trace_without_rescue"), log);
  // The layer sweep is saved and the report says why nothing follows.
  const std::string text = report(refused, {});
  BOOST_TEST(has(text, "WARNING: the layer curve is zero"), text);
  BOOST_TEST(has(text, "no expert traced yet"), text);

  // Asked for: the run goes on, and measures at noise level carry no p-value.
  const Run asked = run("report-zero-asked", model, "[experts]\ntrace_without_rescue = true\n");
  BOOST_TEST_REQUIRE(asked.rc == 0, slurp(asked.log));
  const json j = json::parse(report(asked, {"--format", "json"}));
  BOOST_TEST(j["layer_sweep"]["zero"] == true);
  int degenerate = 0;
  for (const json& s : j["validation"]) {
    if (s["degenerate"].is_null()) continue;
    ++degenerate;
    BOOST_TEST(s["p_sign_flip"].is_null(), s.dump());
  }
  BOOST_TEST(degenerate >= 1);
  const std::string text2 = report(asked, {});
  BOOST_TEST(has(text2, "degenerate:"), text2);
}
