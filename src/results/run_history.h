#pragma once
// The history of a results file: one record for the run that created it and one for each
// `--resume` of it, in order (/provenance/history/<k>, docs/results.md), so that the file tells
// who ran what, where and when.
#include <cstdint>
#include <string>
#include <vector>

#include "results/results_file.h"

namespace moetrace {

struct RunRecord {
  std::string kind;  // "run" (created the file) or "resume"
  std::string command_line, host, working_directory, config_path, time_utc, moetrace_version, git_commit;
  std::int64_t ranks = 1;
};

// Appends `r` as the next record of the file's history.
void append_run_record(ResultsFile& f, const RunRecord& r);
// The records in the order they were appended (none for files written before histories existed).
std::vector<RunRecord> read_run_history(ResultsFile& f);

}  // namespace moetrace
