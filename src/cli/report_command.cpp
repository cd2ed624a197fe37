// `moetrace report`: print the paper-style tables of a results file.
#include <iostream>

#include "cli/commands.h"
#include "protocols/report.h"
#include "util/input_file.h"

namespace moetrace::cli {

void register_report_command(CLI::App& app) {
  auto path = std::make_shared<std::string>();
  CLI::App* cmd = app.add_subcommand("report", "Print the paper-style tables of a results file");
  cmd->footer("Print the tables of a results file written by `moetrace run`: usable and skipped cases, the layer\n"
      "sweep by layer with the selected layer, the selected expert and how often it is clean-active, and\n"
      "held-out (validation) means with 95% percentile-bootstrap intervals, fraction positive and\n"
      "two-sided sign-flip p-values for the layer, the expert, its specificity against sampled,\n"
      "gate-matched and equal-norm controls, and the coalitions; then any robustness grids.\n\n"
      "Example:\n  moetrace report results/demo.h5");
  cmd->add_option("RESULTS", *path, "results file (.h5)")->required();
  cmd->callback([path] {
    require_regular_file(*path, "RESULTS");  // exit 2 naming it, never CLI11's generic code
    print_report(*path, std::cout);
  });
}

}  // namespace moetrace::cli
