// `moetrace report`: print the paper-style tables of a results file, or export them as JSON / CSV.
#include <iostream>
#include <map>

#include "cli/commands.h"
#include "protocols/report.h"
#include "util/input_file.h"

namespace moetrace::cli {
namespace {

enum class Format { Text, Json, Csv };

struct ReportOptions {
  std::string path;
  Format format = Format::Text;
  CsvTable table = CsvTable::Cases;
};

}  // namespace

void register_report_command(CLI::App& app) {
  auto o = std::make_shared<ReportOptions>();
  CLI::App* cmd = app.add_subcommand("report", "Print the paper-style tables of a results file (or JSON / CSV)");
  cmd->footer("Print the tables of a results file written by `moetrace run`: usable and skipped cases, the layer\n"
      "sweep by layer with the selected layer (tied layers and warnings about flat, zero or near-tied\n"
      "curves), the selected expert and how often it is clean-active, and held-out (validation) means\n"
      "with 95% percentile-bootstrap intervals, fraction positive and two-sided sign-flip p-values for\n"
      "the layer, the expert, its specificity against sampled, gate-matched and equal-norm controls, and\n"
      "the coalitions (measures at numerical-noise level are marked degenerate instead of a p-value);\n"
      "with [experts] mode = \"all_layers\" the best expert of every layer; then any robustness grids.\n\n"
      "--format json writes every table and the per-case rows as one JSON document; --format csv writes\n"
      "one table (--table cases, layers, summaries or experts_by_layer). Fields: docs/report.md.\n\n"
      "Examples:\n  moetrace report results/demo.h5\n  moetrace report results/demo.h5 --format json > demo.json\n"
      "  moetrace report results/demo.h5 --format csv --table summaries > summaries.csv");
  cmd->add_option("RESULTS", o->path, "results file (.h5)")->required();
  cmd->add_option("--format", o->format, "text (default), json or csv")
      ->transform(CLI::CheckedTransformer(std::map<std::string, Format>{{"text", Format::Text}, {"json", Format::Json},
                                                                        {"csv", Format::Csv}}));
  cmd->add_option("--table", o->table, "with --format csv: cases (default), layers, summaries or experts_by_layer")
      ->transform(CLI::CheckedTransformer(std::map<std::string, CsvTable>{{"cases", CsvTable::Cases},
                                                                          {"layers", CsvTable::Layers},
                                                                          {"summaries", CsvTable::Summaries},
                                                                          {"experts_by_layer", CsvTable::ExpertsByLayer}}))
      ;
  cmd->callback([o, cmd] {
    require_regular_file(o->path, "RESULTS");  // exit 2 naming it, never CLI11's generic code
    if (cmd->count("--table") > 0 && o->format != Format::Csv) throw CLI::ValidationError("--table", "only with --format csv");
    const ReportData data = read_report_data(o->path, o->format != Format::Text);
    switch (o->format) {
      case Format::Text: print_report(data, std::cout); break;
      case Format::Json: write_report_json(data, std::cout); break;
      case Format::Csv: write_report_csv(data, o->table, std::cout); break;
    }
  });
}

}  // namespace moetrace::cli
