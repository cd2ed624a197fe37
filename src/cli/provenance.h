#pragma once
// What every results file records about how it was made.
#include <string>

#include "model/checkpoint.h"
#include "results/results_file.h"

namespace moetrace::cli {

// The command line as typed (quoted where needed), set by main().
void set_command_line(int argc, char** argv);
const std::string& command_line();

Provenance collect_provenance(const std::string& config_path, const std::string& config_text,
                              const Checkpoint& checkpoint, const std::string& backend, int ranks);

std::string library_versions_json();

// Appends this process's record (command line, host, working directory, absolute config path, time,
// rank count) to the file's history: the creating run's (`resume` false, which also stores the
// working directory beside the config path) or a --resume's, next to the earlier ones.
void record_run(ResultsFile& f, bool resume, const std::string& config_path, int ranks);

}  // namespace moetrace::cli
