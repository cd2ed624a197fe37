#pragma once
// The provenance every results file records (/provenance and /provenance/history, docs/results.md),
// as `moetrace report` shows it for both file kinds: a tracing file of `moetrace run` and a file of
// `moetrace localize` carry the same group, read here once (only src/results knows the layout).
#include <cstdint>
#include <string>
#include <vector>

#include "results/results_file.h"
#include "results/run_history.h"

namespace moetrace {

struct ReportProvenance {
  // Attributes of /provenance; a string the file lacks is empty (absent), not an error.
  std::string model_path, backend, git_commit, moetrace_version, created_utc, command_line, config_path,
      working_directory;
  std::int64_t ranks = 1;  // required: opening the file for reading checks it is there
  bool completed = false;  // the attribute `completed` is there (written once every stage finished)
  std::vector<RunRecord> history;  // /provenance/history, in order; empty in files written before it
};

// The provenance of an open results file. A `ranks` below 1, or a damaged attribute or history
// record, is an InputError (exit 2) naming the file and the attribute.
ReportProvenance read_report_provenance(ResultsFile& f);

}  // namespace moetrace
