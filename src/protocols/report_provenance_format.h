#pragma once
// The provenance block of `moetrace report`, one rendering for tracing and localize files alike
// (docs/report.md): the text report's lines under its title line, and the JSON export's
// `provenance` object.
#include <ostream>

#include <nlohmann/json.hpp>

#include "results/report_provenance.h"

namespace moetrace {

// Model, backend, ranks and commit; the config (and the directory the run started in) when the
// file records it; one line per run / --resume of the file; a NOTE when the run has not completed.
void print_report_provenance(const ReportProvenance& p, std::ostream& out);

// {model_path, backend, ranks, git_commit, moetrace_version, created_utc, command_line,
// config_path, working_directory, completed, history: [{kind, command_line, host,
// working_directory, config_path, time_utc, ranks, moetrace_version, git_commit}]}, in that order.
nlohmann::ordered_json report_provenance_json(const ReportProvenance& p);

}  // namespace moetrace
