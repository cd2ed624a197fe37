// `moetrace report`: print the paper-style tables of a results file, or export them as JSON / CSV.
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <functional>
#include <iostream>
#include <map>

#include "cli/commands.h"
#include "protocols/localize_report.h"
#include "protocols/report.h"
#include "util/error.h"
#include "util/input_file.h"

namespace moetrace::cli {
namespace {

enum class Format { Text, Json, Csv };

struct ReportOptions {
  std::string path;
  Format format = Format::Text;
  std::string table;  // --table: a tracing or a localize table name, checked once the file kind is known
};

const std::map<std::string, CsvTable> kTracingTables{{"cases", CsvTable::Cases},
                                                     {"layers", CsvTable::Layers},
                                                     {"summaries", CsvTable::Summaries},
                                                     {"experts_by_layer", CsvTable::ExpertsByLayer}};

// Writes the report to standard output and checks that it arrived: a write that failed there (a
// full disk, /dev/full) is exit 2 naming the output, never exit 0 with the report lost. errno is
// taken from the failed write itself (a stream that failed earlier writes nothing more).
void write_to_stdout(const std::function<void(std::ostream&)>& write) {
  errno = 0;
  write(std::cout);
  std::cout.flush();
  const int error = errno;
  if (!std::cout || std::fflush(stdout) != 0 || std::ferror(stdout))
    fail_input("cannot write the report to standard output{}", error ? fmt::format(": {}", std::strerror(error)) : "");
}

// A localize file (`moetrace localize`): its own tables (docs/report.md "Localisation files").
void report_localize(const ReportOptions& o) {
  const LocalizeReportData data = read_localize_report_data(o.path);
  if (o.format == Format::Text) return write_to_stdout([&](std::ostream& out) { print_localize_report(data, out); });
  if (o.format == Format::Json) return write_to_stdout([&](std::ostream& out) { write_localize_report_json(data, out); });
  const auto table = parse_localize_csv_table(o.table.empty() ? "buckets" : o.table);
  if (!table)
    throw CLI::ValidationError("--table", o.table + " is not a table of a localize file (buckets, experts, "
                                          "effects, languages, curve, contrast)");
  write_to_stdout([&](std::ostream& out) { write_localize_report_csv(data, *table, out); });
}

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
      "A file of `moetrace localize` gets the localisation tables instead: bucket sizes per language, the\n"
      "top experts of the router contrast, the deactivation effect (chosen set vs popular and random\n"
      "controls, with intervals and a verdict), accuracy per language, turned-right shares, the effect-vs-N\n"
      "curve and specificity; its CSV tables: buckets (default), experts, effects, languages, curve, contrast.\n\n"
      "Examples:\n  moetrace report results/demo.h5\n  moetrace report results/demo.h5 --format json > demo.json\n"
      "  moetrace report results/demo.h5 --format csv --table summaries > summaries.csv\n\n"
      "Exit 2 for a missing, damaged or non-results file, and when the report cannot be written to\n"
      "standard output (a full disk): the message names the file or the output.");
  cmd->add_option("RESULTS", o->path, "results file (.h5)")->required();
  cmd->add_option("--format", o->format, "text (default), json or csv")
      ->transform(CLI::CheckedTransformer(std::map<std::string, Format>{{"text", Format::Text}, {"json", Format::Json},
                                                                        {"csv", Format::Csv}}));
  cmd->add_option("--table", o->table,
                  "with --format csv: cases (default), layers, summaries or experts_by_layer; for a localize file "
                  "buckets (default), experts, effects, languages, curve or contrast");
  cmd->callback([o, cmd] {
    require_regular_file(o->path, "RESULTS");  // exit 2 naming it, never CLI11's generic code
    if (cmd->count("--table") > 0 && o->format != Format::Csv) throw CLI::ValidationError("--table", "only with --format csv");
    if (is_localize_file(o->path)) return report_localize(*o);
    CsvTable table = CsvTable::Cases;
    if (!o->table.empty()) {
      const auto t = kTracingTables.find(o->table);
      if (t == kTracingTables.end())
        throw CLI::ValidationError("--table", o->table + " is not a table of a tracing file (cases, layers, "
                                              "summaries, experts_by_layer)");
      table = t->second;
    }
    const ReportData data = read_report_data(o->path, o->format != Format::Text);
    write_to_stdout([&](std::ostream& out) {
      switch (o->format) {
        case Format::Text: print_report(data, out); break;
        case Format::Json: write_report_json(data, out); break;
        case Format::Csv: write_report_csv(data, table, out); break;
      }
    });
  });
}

}  // namespace moetrace::cli
